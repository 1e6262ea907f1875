//go:build linux

package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/interop"
)

// A first check of goipsec's IKEv2 against strongSwan 5.9 (kernel-libipsec)
// with the internal/interop harness: goipsec runs in-process in the Left
// namespace (netstack mode), charon in Right. The full interop suite lives
// with the harness; these tests skip without strongSwan.

// swCase is one goipsec-strongSwan pairing.
type swCase struct {
	name             string
	ikeGo, ikeSW     string
	espGo, espSW     string
	pskSW            string // "" for the right one
	goInitiates, nat bool
	// swBehindNAT swaps the hosts: charon in Left behind the NAT, goipsec
	// in Right (the NAT is then in front of strongSwan, not goipsec).
	swBehindNAT bool
	// wantGoLog and wantSWL are what goipsec and charon log in the
	// negative cases (charon abbreviates notifications).
	wantGoLog, wantSWL string
	// swIKERekey and swChildRekey are charon's rekey times (0: its
	// defaults); goChildRekey and goIKERekey goipsec's ("" unset).
	swIKERekey, swChildRekey time.Duration
	goChildRekey, goIKERekey string
}

const swPSK = "interop secret"

// swPair starts charon in Right and a goipsec daemon in Left (or the other
// way round with swCase.swBehindNAT).
type swPair struct {
	tp *interop.Topology
	// goNS and swNS are the hosts of goipsec and charon; goInner and
	// swInner their tunnelled addresses.
	goNS, swNS       *interop.Netns
	goInner, swInner netip.Addr
	sw               *interop.StrongSwan
	d                *Daemon
	logs             *observer.ObservedLogs
	mu               sync.Mutex
	keys             []ike.KeyMaterial
}

func startSWPair(t *testing.T, tc swCase) *swPair {
	t.Helper()
	interop.RequireStrongSwan(t)
	p := &swPair{tp: interop.NewTopology(t, interop.TopologyOptions{NAT: tc.nat, ForwardIKE: tc.nat})}
	tp := p.tp
	// Addresses: the side behind the NAT (Left) reaches Right at RightAddr;
	// Right reaches Left at LeftPublic (forwarded by the router).
	goAddr, swAddr, goSeesSW, swSeesGo := tp.LeftAddr, tp.RightAddr, tp.RightAddr, tp.LeftPublic
	p.goNS, p.swNS, p.goInner, p.swInner = tp.Left, tp.Right, tp.LeftInner, tp.RightInner
	if tc.swBehindNAT {
		goAddr, swAddr, goSeesSW, swSeesGo = tp.RightAddr, tp.LeftAddr, tp.LeftPublic, tp.RightAddr
		p.goNS, p.swNS, p.goInner, p.swInner = tp.Right, tp.Left, tp.RightInner, tp.LeftInner
	}
	p.sw = interop.StartStrongSwan(t, p.swNS, "sw", nil)
	start := "none"
	if tc.goInitiates {
		start = "start"
	}
	y := fmt.Sprintf(`connections:
  link:
    local_addrs: [%s]
    remote_addrs: [%s]
    proposals: [%s]
    local: {auth: psk, id: left.example}
    remote: {auth: psk, id: right.example}
    children:
      net:
        local_ts: [%s/32]
        remote_ts: [%s/32]
        esp_proposals: [%s]
        start_action: %s
%ssecrets:
  s: {id: [left.example, right.example], secret: %q}
tun: {mode: netstack, addresses: [%s/24]}
control: {socket: "-"}
`, goAddr, goSeesSW, tc.ikeGo, p.goInner, p.swInner, tc.espGo, start, rekeyYAML(tc), swPSK, p.goInner)
	p.d, p.logs = newObservedDaemon(t, y)
	p.d.SetIKEKeyHook(func(k ike.KeyMaterial) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.keys = append(p.keys, k)
	})
	psk := tc.pskSW
	if psk == "" {
		psk = swPSK
	}
	remote := swSeesGo.String()
	if tc.goInitiates {
		remote = "%any"
	}
	p.sw.Load(t, &interop.SwanctlConfig{
		PSKs: []interop.PSK{{IDs: []string{"left.example", "right.example"}, Secret: psk}},
		Connections: []interop.Connection{{Name: "ike", Version: 2, LocalAddrs: []string{swAddr.String()}, RemoteAddrs: []string{remote},
			Proposals: []string{tc.ikeSW}, KeyingTries: 1, RekeyTime: tc.swIKERekey, OverTime: tc.swIKERekey / 2, RandTime: tc.swIKERekey / 10,
			Local: interop.Auth{Auth: "psk", ID: "right.example"}, Remote: interop.Auth{Auth: "psk", ID: "left.example"},
			Children: []interop.Child{{Name: "net", LocalTS: []string{p.swInner.String() + "/32"}, RemoteTS: []string{p.goInner.String() + "/32"},
				ESPProposals: []string{tc.espSW}, Mode: "tunnel", RekeyTime: tc.swChildRekey, LifeTime: 2 * tc.swChildRekey, RandTime: tc.swChildRekey / 10}}}}})
	serveIn(t, p.goNS, p.d)
	if !tc.goInitiates {
		p.sw.Initiate("net")
	}
	return p
}

// goLogged reports whether goipsec logged s.
func (p *swPair) goLogged(s string) bool { return logged(p.logs, s) }

// checkNothingKept waits until neither charon nor d holds an IKE SA, and
// checks that d's SAD is empty.
func checkNothingKept(t *testing.T, d *Daemon, sw *interop.StrongSwan) {
	t.Helper()
	sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 0 })
	deadline := time.Now().Add(5 * time.Second)
	for len(d.IKE().IKESAs()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("goipsec keeps %+v", d.IKE().IKESAs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if in, out := d.SAD.Len(); in+out != 0 {
		t.Errorf("goipsec keeps %d SAs", in+out)
	}
}

// newObservedDaemon makes a daemon of the YAML configuration y (named
// left) whose logs, from level info, go to the test's log and to the
// returned observer.
func newObservedDaemon(t *testing.T, y string) (*Daemon, *observer.ObservedLogs) {
	t.Helper()
	cfg, err := config.Parse("left", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	d, err := New(cfg, zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core())))
	if err != nil {
		t.Fatal(err)
	}
	return d, logs
}

// serveIn starts d with its sockets in ns (its goroutines need not run
// there: netstack mode) and serves it until the test ends.
func serveIn(t *testing.T, ns *interop.Netns, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := ns.Do(func() error { return d.Start(ctx) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	go d.Serve(ctx)
}

// logged reports whether an observed log entry, message and fields,
// contains s.
func logged(logs *observer.ObservedLogs, s string) bool {
	for _, e := range logs.All() {
		line := e.Message
		for _, f := range e.Context {
			line += " " + f.String + fmt.Sprint(f.Interface)
		}
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// checkKeys compares goipsec's keys with those charon logged.
// echoConn is [dialEcho] to strongSwan's inner address.
func (p *swPair) echoConn(t *testing.T) net.Conn { return dialEcho(t, p.swNS, p.swInner, p.d, p.sw) }

// dialEcho starts a TCP echo server on addr, port 7777, in ns and
// connects to it from d's netstack, through the tunnel to sw. Listener
// and connection are closed when the test ends.
func dialEcho(t *testing.T, ns *interop.Netns, addr netip.Addr, d *Daemon, sw *interop.StrongSwan) net.Conn {
	t.Helper()
	ln, err := ns.Listen("tcp", addr.String()+":7777")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.Net.DialContext(ctx, "tcp", addr.String()+":7777")
	if err != nil {
		t.Fatalf("dial through the tunnel: %v\n%s", err, sw.LogSummary(60))
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (p *swPair) checkKeys(t *testing.T) {
	t.Helper()
	kl := p.sw.MustKeys(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	var nIKE, nChild int
	for _, k := range p.keys {
		if k.IKE != nil {
			sk := kl.IKEBySPI(k.SPIi)
			if sk == nil {
				t.Fatalf("charon logged no keys for IKE SA %016x", k.SPIi)
			}
			for _, pair := range [][2][]byte{{k.SKEYSEED, sk.SKEYSEED}, {k.IKE.D, sk.SKd}, {k.IKE.Ai, sk.SKai}, {k.IKE.Ar, sk.SKar},
				{k.IKE.Ei, sk.SKei}, {k.IKE.Er, sk.SKer}, {k.IKE.Pi, sk.SKpi}, {k.IKE.Pr, sk.SKpr}} {
				if !bytes.Equal(pair[0], pair[1]) {
					t.Error("an IKE SA key differs from charon's")
				}
			}
			nIKE++
		}
		if k.ChildKeys != nil {
			for _, c := range kl.Child {
				if c.SPIIn == k.SPIOut && c.SPIOut == k.SPIIn {
					nChild++
					if !bytes.Equal(c.EncrI, k.ChildKeys.EncI) || !bytes.Equal(c.EncrR, k.ChildKeys.EncR) ||
						!bytes.Equal(c.IntegI, k.ChildKeys.IntegI) || !bytes.Equal(c.IntegR, k.ChildKeys.IntegR) {
						t.Error("Child SA keys differ from charon's")
					}
				}
			}
		}
	}
	if nIKE != 1 || nChild != 1 {
		t.Errorf("compared %d IKE and %d Child SA key sets, want 1 each", nIKE, nChild)
	}
}

func TestIKEStrongSwan(t *testing.T) {
	for _, tc := range []swCase{
		{name: "goipsec-initiates-aesgcm-x25519", ikeGo: "aes128gcm16-prfsha256-x25519", espGo: "aes128gcm16", goInitiates: true},
		{name: "strongswan-initiates-aescbc-ecp384", ikeGo: "aes256-sha384-ecp384", espGo: "aes256-sha256"},
		{name: "goipsec-initiates-chacha-modp2048-nat", ikeGo: "chacha20poly1305-prfsha256-modp2048", espGo: "chacha20poly1305", goInitiates: true, nat: true},
		{name: "strongswan-initiates-aescbc-ecp256-nat", ikeGo: "aes128-sha256-ecp256", espGo: "aes128gcm16", nat: true},
		{name: "goipsec-initiates-aesgcm-x25519-strongswan-behind-nat", ikeGo: "aes256gcm16-prfsha384-x25519", espGo: "aes256gcm16", goInitiates: true, nat: true, swBehindNAT: true},
		{name: "strongswan-behind-nat-initiates-aescbc-modp2048", ikeGo: "aes256-sha256-modp2048", espGo: "aes128-sha256", nat: true, swBehindNAT: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ikeSW, tc.espSW = tc.ikeGo, tc.espGo
			p := startSWPair(t, tc)
			waitChild(t, p.d, true)
			p.sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 1 && len(s[0].Children) == 1 })
			// TCP through the tunnel, echoed by Right.
			c := p.echoConn(t)
			data := bytes.Repeat([]byte("goipsec<->strongSwan "), 10000)
			go c.Write(data)
			got := make([]byte, len(data))
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echo through the tunnel: %v", err)
			}
			c.Close()
			sas := p.sw.MustListSAs(t)
			ch := sas[0].Children[0]
			if sas[0].State != "ESTABLISHED" || ch.State != "INSTALLED" || !ch.Encap || ch.PacketsIn < 5 || ch.PacketsOut < 5 || sas[0].LocalPort != 4500 {
				t.Errorf("charon's SAs: %+v", sas[0])
			}
			p.checkKeys(t)
			// goipsec deletes; charon follows.
			if _, err := p.d.ikeTerminate("link"); err != nil {
				t.Fatal(err)
			}
			p.sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 0 })
		})
	}
}

func TestIKEStrongSwanNegative(t *testing.T) {
	gcm := "aes128gcm16-prfsha256-x25519"
	for _, tc := range []swCase{
		{name: "wrong-psk-goipsec-initiates", ikeGo: gcm, ikeSW: gcm, espGo: "aes128gcm16", espSW: "aes128gcm16", pskSW: "wrong", goInitiates: true, wantGoLog: "AUTHENTICATION_FAILED", wantSWL: "AUTH_FAILED"},
		{name: "wrong-psk-strongswan-initiates", ikeGo: gcm, ikeSW: gcm, espGo: "aes128gcm16", espSW: "aes128gcm16", pskSW: "wrong", wantGoLog: "AUTHENTICATION_FAILED", wantSWL: "AUTH_FAILED"},
		{name: "no-ike-proposal-goipsec-initiates", ikeGo: gcm, ikeSW: "aes256-sha384-ecp384", espGo: "aes128gcm16", espSW: "aes128gcm16", goInitiates: true, wantGoLog: "NO_PROPOSAL_CHOSEN", wantSWL: "NO_PROP"},
		{name: "no-ike-proposal-strongswan-initiates", ikeGo: gcm, ikeSW: "aes256-sha384-ecp384", espGo: "aes128gcm16", espSW: "aes128gcm16", wantGoLog: "NO_PROPOSAL_CHOSEN", wantSWL: "NO_PROP"},
		{name: "no-esp-proposal-goipsec-initiates", ikeGo: gcm, ikeSW: gcm, espGo: "aes128gcm16", espSW: "aes256-sha256", goInitiates: true, wantGoLog: "NO_PROPOSAL_CHOSEN", wantSWL: "NO_PROP"},
		{name: "no-esp-proposal-strongswan-initiates", ikeGo: gcm, ikeSW: gcm, espGo: "aes128gcm16", espSW: "aes256-sha256", wantGoLog: "NO_PROPOSAL_CHOSEN", wantSWL: "NO_PROP"},
		{name: "invalid-ke-goipsec-initiates", ikeGo: "aes128gcm16-prfsha256-x25519-ecp256", ikeSW: "aes128gcm16-prfsha256-ecp256", espGo: "aes128gcm16", espSW: "aes128gcm16", goInitiates: true, wantGoLog: "CHILD_SA established", wantSWL: "CHILD_SA net{1} established"},
		{name: "invalid-ke-strongswan-initiates", ikeGo: "aes128gcm16-prfsha256-ecp256", ikeSW: "aes128gcm16-prfsha256-x25519-ecp256", espGo: "aes128gcm16", espSW: "aes128gcm16", wantGoLog: "CHILD_SA established", wantSWL: "CHILD_SA net{1} established"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startSWPair(t, tc)
			p.sw.WaitLog(t, tc.wantSWL, 10*time.Second)
			deadline := time.Now().Add(10 * time.Second)
			for !p.goLogged(tc.wantGoLog) {
				if time.Now().After(deadline) {
					t.Fatalf("goipsec never logged %q", tc.wantGoLog)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if strings.Contains(tc.wantGoLog, "established") {
				return // INVALID_KE_PAYLOAD and a retry: up
			}
			// Neither end keeps anything.
			checkNothingKept(t, p.d, p.sw)
		})
	}
}

// rekeyYAML is the goipsec child's rekey_time line (the connection's goes
// in through the child's indentation being YAML too: see startSWPair),
// with a life_time of twice that, as charon's in these tests, so that a
// slow answer of charon's does not let the Child SA expire.
func rekeyYAML(tc swCase) string {
	if tc.goChildRekey == "" {
		return ""
	}
	d, err := time.ParseDuration(tc.goChildRekey)
	if err != nil {
		panic(err)
	}
	return "        rekey_time: " + tc.goChildRekey + "\n        life_time: " + (2 * d).String() + "\n"
}

// TestIKEStrongSwanRekey runs an echoed TCP transfer through the tunnel
// while Child SAs and IKE SAs are rekeyed every few seconds, by charon or
// by goipsec, and checks that the transfer completes without a stall.
func TestIKEStrongSwanRekey(t *testing.T) {
	gcm := "aes128gcm16-prfsha256-x25519"
	for _, tc := range []swCase{
		{name: "strongswan-rekeys-pfs", ikeGo: gcm, espGo: "aes128gcm16-x25519", swChildRekey: 3 * time.Second, swIKERekey: 7 * time.Second},
		{name: "strongswan-rekeys-nopfs-goipsec-initiated", ikeGo: gcm, espGo: "aes128gcm16", goInitiates: true, swChildRekey: 3 * time.Second, swIKERekey: 7 * time.Second},
		{name: "goipsec-rekeys-pfs", ikeGo: gcm, espGo: "aes128gcm16-x25519", goChildRekey: "3s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.ikeSW, tc.espSW = tc.ikeGo, tc.espGo
			p := startSWPair(t, tc)
			waitChild(t, p.d, true)
			p.sw.WaitSAs(t, 10*time.Second, func(s []interop.IKESA) bool { return len(s) == 1 && len(s[0].Children) == 1 })
			c := p.echoConn(t)
			chunk := bytes.Repeat([]byte("rekey while traffic flows "), 400)
			got := make([]byte, len(chunk))
			end := time.Now().Add(12 * time.Second)
			n := 0
			for time.Now().Before(end) {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(chunk); err != nil {
					t.Fatalf("write after %d chunks: %v\n%s", n, err, p.sw.LogSummary(80))
				}
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, chunk) {
					t.Fatalf("echo stalled after %d chunks: %v\n%s", n, err, p.sw.LogSummary(80))
				}
				n++
				time.Sleep(20 * time.Millisecond)
			}
			if !p.goLogged("CHILD_SA rekeyed") {
				t.Errorf("no Child SA rekey happened\n%s", p.sw.LogSummary(2000))
			}
			if tc.swIKERekey != 0 && !p.goLogged("IKE SA rekeyed") {
				t.Errorf("no IKE SA rekey happened\n%s", p.sw.LogSummary(80))
			}
			// charon lists rekeyed Child SAs a while longer; one is in use.
			sas := p.sw.MustListSAs(t)
			installed := 0
			for _, s := range sas {
				for _, ch := range s.Children {
					if ch.State == "INSTALLED" {
						installed++
					}
				}
			}
			if len(sas) != 1 || installed != 1 {
				t.Errorf("charon's SAs after the rekeys: %+v", sas)
			}
			if g := p.d.IKE().IKESAs(); len(g) != 1 || len(g[0].Children) != 1 {
				t.Errorf("goipsec's SAs after the rekeys: %+v", g)
			}
			t.Logf("%d chunks echoed", n)
		})
	}
}
