//go:build linux

package interop

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The parser tests read what TestWriteTestdata captured from a live run;
// they need neither root nor strongSwan.

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keyLog(t *testing.T, name string) *KeyLog {
	t.Helper()
	kl, err := ParseKeyLog(strings.NewReader(readTestdata(t, name)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return kl
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseKeyLog: the initial IKE SA (AES-CBC, HMAC-SHA-384, left
// initiates), a Child SA rekey with PFS started by the responder (right),
// an IKE SA rekey started by the initiator (left): two IKE SAs and two
// Child SAs in each log, the same keys on both sides.
func TestParseKeyLog(t *testing.T) {
	l, r := keyLog(t, "charon-left.log"), keyLog(t, "charon-right.log")
	if len(l.IKE) != 2 || len(r.IKE) != 2 || len(l.Child) != 2 || len(r.Child) != 2 {
		t.Fatalf("want 2 IKE and 2 Child SAs in each log: left %d/%d right %d/%d", len(l.IKE), len(l.Child), len(r.IKE), len(r.Child))
	}
	// The values as the log prints them.
	if want := unhex(t, "88 75 14 27 14 D4 FB 65 13 1B 10 EA 84 E7 E8 20 A3 5C D2 CC EF 4D 94 6C AC C7 9E 43 9B C0 7A C0"); !bytes.Equal(l.IKE[0].SKei, want) {
		t.Errorf("left SK_ei %x, want %x", l.IKE[0].SKei, want)
	}
	if want := unhex(t, "AC FF 7F 31 4A D4 5B B9 A1 45 1E 8F B4 BC D1 4F"); !bytes.Equal(r.Child[0].EncrI, want) {
		t.Errorf("right's first encryption initiator key %x, want %x", r.Child[0].EncrI, want)
	}
	for i := range l.IKE {
		li, ri := l.IKE[i], r.IKE[i]
		if li.UniqueID != i+1 || ri.UniqueID != i+1 || li.Name != "ike" || ri.Name != "ike" {
			t.Errorf("IKE SA %d: left %s[%d], right %s[%d]", i, li.Name, li.UniqueID, ri.Name, ri.UniqueID)
		}
		if !li.Initiator || ri.Initiator {
			t.Errorf("IKE SA %d: left initiator=%v, right initiator=%v", i, li.Initiator, ri.Initiator)
		}
		if li.SPIi == 0 || li.SPIr == 0 || li.SPIi != ri.SPIi || li.SPIr != ri.SPIr {
			t.Errorf("IKE SA %d: SPIs left %x/%x right %x/%x", i, li.SPIi, li.SPIr, ri.SPIi, ri.SPIr)
		}
		for _, k := range []struct {
			name string
			a, b []byte
			n    int
		}{
			{"DH", li.DHSecret, ri.DHSecret, 32}, {"SKEYSEED", li.SKEYSEED, ri.SKEYSEED, 48}, {"SK_d", li.SKd, ri.SKd, 48},
			{"SK_ai", li.SKai, ri.SKai, 48}, {"SK_ar", li.SKar, ri.SKar, 48}, {"SK_ei", li.SKei, ri.SKei, 32},
			{"SK_er", li.SKer, ri.SKer, 32}, {"SK_pi", li.SKpi, ri.SKpi, 48}, {"SK_pr", li.SKpr, ri.SKpr, 48},
		} {
			if len(k.a) != k.n || !bytes.Equal(k.a, k.b) {
				t.Errorf("IKE SA %d: %s left %x right %x, want equal, %d bytes", i, k.name, k.a, k.b, k.n)
			}
		}
	}
	if bytes.Equal(l.IKE[0].SKd, l.IKE[1].SKd) {
		t.Errorf("the rekeyed IKE SA has the old SK_d")
	}
	if l.IKEByID(2) != &l.IKE[1] || l.IKEBySPI(l.IKE[1].SPIi) != &l.IKE[1] || l.IKEBySPI(1) != nil {
		t.Errorf("IKEByID/IKEBySPI")
	}
	for i := range l.Child {
		lc, rc := &l.Child[i], &r.Child[i]
		// The first Child SA came with IKE_AUTH (left initiated), the
		// second with right's rekey, with PFS (x25519).
		if lc.Initiator != (i == 0) || rc.Initiator != (i == 1) {
			t.Errorf("Child SA %d: left initiator=%v right initiator=%v", i, lc.Initiator, rc.Initiator)
		}
		if (len(lc.DHSecret) == 32) != (i == 1) || !bytes.Equal(lc.DHSecret, rc.DHSecret) || !bytes.Equal(lc.Seed, rc.Seed) {
			t.Errorf("Child SA %d: DH %x/%x seed %x/%x", i, lc.DHSecret, rc.DHSecret, lc.Seed, rc.Seed)
		}
		if lc.Name != "net" || lc.UniqueID != i+1 || lc.IKEName != "ike" || lc.IKEUniqueID != 1 || lc.Protocol != "ESP" ||
			lc.EncrAlg != "AES_CBC" || lc.IntegAlg != "HMAC_SHA2_256_128" {
			t.Errorf("Child SA %d: %+v", i, lc)
		}
		if lc.SPIIn != rc.SPIOut || lc.SPIOut != rc.SPIIn || lc.SPIIn == 0 || lc.SPIOut == 0 {
			t.Errorf("Child SA %d: SPIs left %08x/%08x right %08x/%08x", i, lc.SPIIn, lc.SPIOut, rc.SPIIn, rc.SPIOut)
		}
		if len(lc.EncrI) != 16 || len(lc.IntegI) != 32 || !bytes.Equal(lc.EncrI, rc.EncrI) || !bytes.Equal(lc.EncrR, rc.EncrR) ||
			!bytes.Equal(lc.IntegI, rc.IntegI) || !bytes.Equal(lc.IntegR, rc.IntegR) {
			t.Errorf("Child SA %d: keys differ: %+v %+v", i, lc, rc)
		}
		if !bytes.Equal(lc.EncrOut(), rc.EncrIn()) || !bytes.Equal(lc.IntegIn(), rc.IntegOut()) || bytes.Equal(lc.EncrOut(), lc.EncrIn()) {
			t.Errorf("Child SA %d: in/out keys do not pair up", i)
		}
		if l.ChildBySPI(lc.SPIIn) != lc || l.ChildBySPI(lc.SPIOut) != lc {
			t.Errorf("ChildBySPI")
		}
	}
}

// TestParseKeyLogInterleaved: lines of other threads between a header and
// its dump, and between the lines of a dump, go to their own threads.
func TestParseKeyLogInterleaved(t *testing.T) {
	log := `00:00:00.000 05[IKE] <c|7> initiating IKE_SA c[7] to 192.0.2.2
00:00:00.001 06[IKE] <c|7> SKEYSEED => 20 bytes @ 0x7f00
00:00:00.001 09[IKE] <d|8> SKEYSEED => 4 bytes @ 0x7f01
00:00:00.001 06[IKE] <c|7>    0: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................
00:00:00.001 09[IKE] <d|8>    0: AA BB CC DD                                      ....
00:00:00.002 06[IKE] <c|7>   16: 10 11 12 13                                      ....
00:00:00.002 06[IKE] <c|7> Sk_d secret => 2 bytes @ 0x7f02
00:00:00.002 09[IKE] <d|8> Sk_d secret => 1 bytes @ 0x7f03
00:00:00.002 06[IKE] <c|7>    0: 0F 0E                                            ..
00:00:00.002 09[IKE] <d|8>    0: 41                                               A
00:00:00.003 06[MGR] <c|7> checkin IKEv2 SA c[7] with SPIs 0102030405060708_i 1112131415161718_r
`
	kl, err := ParseKeyLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(kl.IKE) != 2 {
		t.Fatalf("%+v", kl.IKE)
	}
	c, d := *kl.IKEByID(7), *kl.IKEByID(8)
	if c.Name != "c" || c.UniqueID != 7 || !c.Initiator || c.SPIi != 0x0102030405060708 || c.SPIr != 0x1112131415161718 ||
		!bytes.Equal(c.SKEYSEED, unhex(t, "000102030405060708090a0b0c0d0e0f10111213")) || !bytes.Equal(c.SKd, []byte{0x0f, 0x0e}) {
		t.Errorf("c: %+v", c)
	}
	if d.Name != "d" || d.UniqueID != 8 || d.Initiator || !bytes.Equal(d.SKEYSEED, unhex(t, "aabbccdd")) || !bytes.Equal(d.SKd, []byte{0x41}) {
		t.Errorf("d: %+v", d)
	}
	// A dump cut short is an error, not silently short keys.
	if _, err := ParseKeyLog(strings.NewReader(strings.Join(strings.Split(log, "\n")[:4], "\n"))); err == nil {
		t.Errorf("a truncated dump parsed without error")
	}
}

// TestParseListSAs: what list-sas shows on the rekey initiator after the
// rekeys: the new IKE SA, the old Child SA (DELETED, kept for
// delete_rekeyed_delay) and the new one.
func TestParseListSAs(t *testing.T) {
	sas, err := ParseListSAs(readTestdata(t, "list-sas-left.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 {
		t.Fatalf("%d IKE SAs", len(sas))
	}
	sa := sas[0]
	want := IKESA{Name: "ike", UniqueID: 2, Version: 2, State: "ESTABLISHED", LocalHost: "192.0.2.1", LocalPort: 4500,
		LocalID: "left.example", RemoteHost: "192.0.2.2", RemotePort: 4500, RemoteID: "right.example", Initiator: true,
		InitiatorSPI: 0x5fb2eec6d8785eda, ResponderSPI: 0x078be643b635b6ec, NATRemote: true, NATAny: true,
		EncrAlg: "AES_CBC", EncrKeySize: 256, IntegAlg: "HMAC_SHA2_384_192", PRFAlg: "PRF_HMAC_SHA2_384", DHGroup: "ECP_256",
		RekeyTime: 13880 * time.Second}
	got := sa
	got.Children, got.Fields = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IKE SA\n got %+v\nwant %+v", got, want)
	}
	if len(sa.Children) != 2 {
		t.Fatalf("%d Child SAs", len(sa.Children))
	}
	old, cur := sa.Children[0], sa.Children[1]
	if old.State != "DELETED" || cur.State != "INSTALLED" || cur.UniqueID != 2 || cur.ReqID != 1 || cur.Name != "net" ||
		cur.Mode != "TUNNEL" || cur.Protocol != "ESP" || !cur.Encap || cur.SPIIn != 0xff73962a || cur.SPIOut != 0xeff34df4 ||
		cur.EncrAlg != "AES_CBC" || cur.EncrKeySize != 128 || cur.IntegAlg != "HMAC_SHA2_256_128" || cur.DHGroup != "CURVE_25519" ||
		cur.BytesIn != 168 || cur.PacketsIn != 2 || cur.BytesOut != 168 || cur.PacketsOut != 2 || cur.LifeTime != 3959*time.Second ||
		strings.Join(cur.LocalTS, ",") != "10.1.0.1/32" || strings.Join(cur.RemoteTS, ",") != "10.2.0.1/32" || old.DHGroup != "" {
		t.Errorf("Child SAs: %+v\n%+v", old, cur)
	}
	if FindIKE(sas, "ike") != &sas[0] || FindChild(sas, "net") != &sas[0].Children[0] || FindIKE(sas, "x") != nil {
		t.Errorf("FindIKE/FindChild")
	}
	// The keys of the SAs list-sas shows are in the log.
	kl := keyLog(t, "charon-left.log")
	if k := kl.IKEBySPI(sa.InitiatorSPI); k == nil || k.UniqueID != sa.UniqueID {
		t.Errorf("IKE SA %x not in the log", sa.InitiatorSPI)
	}
	if k := kl.ChildBySPI(cur.SPIIn); k == nil || k.SPIOut != cur.SPIOut || k.UniqueID != cur.UniqueID {
		t.Errorf("Child SA %08x not in the log: %+v", cur.SPIIn, k)
	}

	if sas, err := ParseListSAs("list-sas reply {\n}\n"); err != nil || len(sas) != 0 {
		t.Errorf("no SAs: %v %v", sas, err)
	}
	if _, err := ParseListSAs("list-sa event {\n  ike {\n    uniqueid = 1\n"); err == nil {
		t.Errorf("truncated output parsed")
	}
}

// TestRender checks the swanctl.conf written for a configuration with
// every kind of value.
func TestRender(t *testing.T) {
	yes := true
	cfg := &SwanctlConfig{
		Connections: []Connection{{
			Name: "gw", Version: 2, LocalAddrs: []string{"192.0.2.1"}, RemoteAddrs: []string{"%any"},
			Proposals: []string{"aes128gcm16-prfsha256-x25519", "aes256-sha384-ecp384"}, Encap: true, Mobike: &yes,
			KeyingTries: 1, RekeyTime: 90 * time.Second, DPDDelay: 1500 * time.Millisecond,
			Local:  Auth{Auth: "pubkey", ID: "C=CH, O=goipsec test, CN=gw", Certs: []string{"/tmp/x/gw.cert.pem"}},
			Remote: Auth{Auth: "pubkey", ID: "peer.example", CACerts: []string{"/tmp/x/ca.cert.pem"}, Extra: map[string]string{"revocation": "relaxed"}},
			Children: []Child{{Name: "net", LocalTS: []string{"10.1.0.0/16", "fd01::/64"}, RemoteTS: []string{"dynamic"},
				ESPProposals: []string{"aes128gcm16"}, Mode: "tunnel", StartAction: "trap", RekeyTime: 5 * time.Second, RekeyBytes: 1 << 20}},
			Extra: map[string]string{"unique": "never"},
		}},
		PSKs:        []PSK{{IDs: []string{"a.example", "b.example"}, Secret: `it's "quoted" \ and spaced`}},
		PrivateKeys: []string{"/tmp/x/gw.key.pem"},
	}
	want := `connections {
  gw {
    version = 2
    local_addrs = 192.0.2.1
    remote_addrs = %any
    proposals = aes128gcm16-prfsha256-x25519, aes256-sha384-ecp384
    encap = yes
    mobike = yes
    keyingtries = 1
    rekey_time = 90s
    dpd_delay = 2s
    unique = never
    local {
      auth = pubkey
      id = "C=CH, O=goipsec test, CN=gw"
      certs = /tmp/x/gw.cert.pem
    }
    remote {
      auth = pubkey
      id = peer.example
      cacerts = /tmp/x/ca.cert.pem
      revocation = relaxed
    }
    children {
      net {
        local_ts = 10.1.0.0/16, fd01::/64
        remote_ts = dynamic
        esp_proposals = aes128gcm16
        mode = tunnel
        start_action = trap
        rekey_time = 5s
        rekey_bytes = 1048576
      }
    }
  }
}
secrets {
  ike-1 {
    id-1 = a.example
    id-2 = b.example
    secret = "it's \"quoted\" \\ and spaced"
  }
}
`
	if got := cfg.Render(); got != want {
		t.Errorf("Render:\n%s\nwant:\n%s", got, want)
	}
}

// TestStrongswanConf checks the parts of strongswan.conf the harness
// relies on.
func TestStrongswanConf(t *testing.T) {
	s := &StrongSwan{Name: "x", LogPath: "/tmp/d/charon.log", VICIPath: "/tmp/d/run/charon.vici"}
	conf := s.strongswanConf(&StrongSwanOptions{LogLevels: map[string]int{"net": 3}, Charon: "make_before_break = yes"})
	load := ""
	for _, line := range strings.Split(conf, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "load = aesni") {
			load = line
		}
	}
	if load == "" || strings.Index(load, "kernel-libipsec") > strings.Index(load, "kernel-netlink") {
		t.Errorf("charon.load must start with aesni and list kernel-libipsec before kernel-netlink: %q", load)
	}
	for _, want := range []string{
		"path = /tmp/d/charon.log", "ike = 4", "chd = 4", "mgr = 2", "net = 3", "socket = unix:///tmp/d/run/charon.vici",
		"fwmark = 0x4242", "fwmark = !0x4242", "allow_peer_ts = yes", "make_before_break = yes", "retransmit_tries = 3",
	} {
		if !strings.Contains(conf, "  "+want+"\n") {
			t.Errorf("strongswan.conf lacks %q:\n%s", want, conf)
		}
	}
	conf = s.strongswanConf(&StrongSwanOptions{Fwmark: -1, NoAllowPeerTS: true})
	if strings.Contains(conf, "fwmark") || !strings.Contains(conf, "allow_peer_ts = no") {
		t.Errorf("Fwmark -1 / NoAllowPeerTS:\n%s", conf)
	}
}
