package pcaptool

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/saspec"
)

// python returns the interpreter that has scapy ($GOIPSEC_PYTHON, else
// Debian's /usr/bin/python3), or skips the test.
func python(t *testing.T) string {
	t.Helper()
	py := os.Getenv("GOIPSEC_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if _, err := exec.LookPath(py); err != nil {
		t.Skipf("skipping scapy cross-check: %s not found (set GOIPSEC_PYTHON; apt-get install python3-scapy)", py)
	}
	if out, err := exec.Command(py, "-c", "import scapy.layers.ipsec").CombinedOutput(); err != nil {
		t.Skipf("skipping scapy cross-check: %s cannot import scapy (apt-get install python3-scapy): %v %s", py, err, out)
	}
	return py
}

func tshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("skipping Wireshark cross-check: tshark not installed (apt-get install tshark)")
	}
	return p
}

// Scapy's names for our transforms; "" where scapy 2.5 has none.
var scapyEnc = map[string]string{
	"aes128gcm16": "AES-GCM", "aes192gcm16": "AES-GCM", "aes256gcm16": "AES-GCM",
	"chacha20poly1305": "CHACHA20-POLY1305",
	"aes128":           "AES-CBC", "aes192": "AES-CBC", "aes256": "AES-CBC",
	"3des": "3DES", "null": "NULL",
}

var scapyInteg = map[string]string{
	"sha256": "SHA2-256-128", "sha384": "SHA2-384-192", "sha512": "SHA2-512-256",
	"sha1": "HMAC-SHA1-96", "md5": "HMAC-MD5-96",
}

type scapyJob struct {
	SPI         uint32 `json:"spi"`
	Seq         uint64 `json:"seq"`
	Crypt       string `json:"crypt"`
	CKey        string `json:"ckey"`
	Auth        string `json:"auth"`
	AKey        string `json:"akey"`
	ESN         bool   `json:"esn"`
	TSrc        string `json:"tsrc"`
	TDst        string `json:"tdst"`
	SPort       uint16 `json:"sport"`
	DPort       uint16 `json:"dport"`
	Op          string `json:"op"`
	In          string `json:"in"`
	Out         string `json:"out"`
	name        string
	spec, dspec string
	mc          modeCase
	udp         bool
}

// scapyPackets are the test packets for scapy: IPv4 and IPv6, one with the
// extension headers scapy's transport mode knows (no Fragment header).
func scapyPackets() [][]byte {
	ext := v6Ext()
	ext = []extHdr{ext[0], ext[1], ext[2], ext[4]}
	return [][]byte{
		udp4(v4a, v4b, 1234, 40001, []byte("hello, scapy")),
		icmp4(v4b, v4a, 31),
		udp6(v6a, v6b, 5000, 6000, bytes.Repeat([]byte{0xa5}, 77)),
		udp6(v6b, v6a, 7, 9, []byte("ext"), ext...),
	}
}

// TestScapy checks the wire format against scapy's ESP implementation in
// both directions: scapy encrypts and goipsec decrypts, goipsec encrypts
// and scapy decrypts, for every transform scapy has, in tunnel (IPv4 and
// IPv6 outer) and transport mode, with and without NAT-T and ESN.
func TestScapy(t *testing.T) {
	py := python(t)
	if testing.Short() {
		t.Skip("skipping scapy cross-check in short mode")
	}
	dir := t.TempDir()
	pkts := scapyPackets()
	in := filepath.Join(dir, "in.pcap")
	if err := os.WriteFile(in, writePcap(t, LinkRaw, records(LinkRaw, pkts)), 0o600); err != nil {
		t.Fatal(err)
	}

	var jobs []*scapyJob
	spi := uint32(0x1000)
	for _, tr := range allTransforms() {
		crypt := scapyEnc[tr.enc]
		if crypt == "" {
			continue // GMAC: not in scapy 2.5
		}
		for _, mc := range modeCases {
			for _, udp := range []bool{false, true} {
				for _, esn := range []bool{false, true} {
					for _, op := range []string{"encrypt", "decrypt"} {
						spi++
						extra, seq := "", uint64(1)
						dspec := ""
						if esn {
							// High-order bits 5: the receiver needs seq= to know them.
							extra, seq = ",esn,seq=0x500000010", 0x500000010
							dspec = tr.spec(spi, ",esn,seq=0x500000001")
						} else {
							dspec = tr.spec(spi, "")
						}
						sp := mustSpec(t, tr.spec(spi, extra))
						j := &scapyJob{SPI: spi, Seq: seq, Crypt: crypt, ESN: esn, Op: op,
							In:   in,
							Out:  filepath.Join(dir, fmt.Sprintf("%x.pcap", spi)),
							name: fmt.Sprintf("%s/%s/udp=%v/esn=%v/scapy-%s", tr, mc.name, udp, esn, op),
							spec: tr.spec(spi, extra), dspec: dspec, mc: mc, udp: udp}
						j.CKey = hex.EncodeToString(sp.Key)
						if tr.integ != "" {
							j.Auth, j.AKey = scapyInteg[tr.integ], hex.EncodeToString(sp.AuthKey)
						}
						if mc.mode == esp.Tunnel {
							j.TSrc, j.TDst = mc.src.String(), mc.dst.String()
						}
						if udp {
							j.SPort, j.DPort = 4500, 4500
						}
						if op == "decrypt" {
							// goipsec encrypts first; scapy decrypts that.
							opts := &EncryptOptions{SA: sp, Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst}
							if udp {
								opts.UDP = &esp.UDPPorts{Src: 4500, Dst: 4500}
							}
							enc, st, log := encrypt(t, writePcap(t, LinkRaw, records(LinkRaw, pkts)), opts)
							if st.Encrypted != len(pkts) {
								t.Fatalf("%s: %s %s", j.name, st, log)
							}
							j.In = filepath.Join(dir, fmt.Sprintf("%x-in.pcap", spi))
							if err := os.WriteFile(j.In, enc, 0o600); err != nil {
								t.Fatal(err)
							}
						}
						jobs = append(jobs, j)
					}
				}
			}
		}
	}
	runScapy(t, py, "testdata/scapy_esp.py", jobs)

	for _, j := range jobs {
		t.Run(j.name, func(t *testing.T) {
			out := scapyOutput(t, j.Out, j.Op)
			if j.Op == "decrypt" {
				checkPackets(t, "scapy decrypted", out, pkts)
				return
			}
			dec, st, log := decrypt(t, out, mustSpec(t, j.dspec))
			if st.Decrypted != len(pkts) || log != "" {
				t.Fatalf("decrypting scapy's packets: %s\n%s", st, log)
			}
			checkPackets(t, "decrypted", dec, pkts)
		})
	}
}

// runScapy runs the scapy script with jobs as JSON on its standard input;
// the script writes each job's output (or an error) next to job.Out.
func runScapy(t *testing.T, py, script string, jobs any) {
	t.Helper()
	js, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-B", script) // -B: no __pycache__ in the tree
	cmd.Stdin = bytes.NewReader(js)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scapy: %v\n%s", err, out)
	}
}

// scapyOutput is the capture scapy wrote to out for a job of operation op;
// it fails the test if scapy reported an error instead (in out.err).
func scapyOutput(t *testing.T, out, op string) []byte {
	t.Helper()
	if e, err := os.ReadFile(out + ".err"); err == nil {
		t.Fatalf("scapy %s failed: %s", op, e)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkPackets checks that the capture holds pkts, in order.
func checkPackets(t *testing.T, what string, capture []byte, pkts [][]byte) {
	t.Helper()
	_, recs := readPcap(t, capture)
	if len(recs) != len(pkts) {
		t.Fatalf("%s: %d packets, want %d", what, len(recs), len(pkts))
	}
	for i, r := range recs {
		if !bytes.Equal(r.data, pkts[i]) {
			t.Errorf("packet %d: %s\n %x\nwant %x", i+1, what, r.data, pkts[i])
		}
	}
}

// tsharkFields runs tshark with args (which end in -T fields -E
// separator=| and the fields) and returns each packet's n fields; it fails
// the test unless there are want packets.
func tsharkFields(t *testing.T, ts string, args []string, want, n int) [][]string {
	t.Helper()
	cmd := exec.Command(ts, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != want {
		t.Fatalf("tshark printed %d lines for %d packets:\n%s\n%s", len(lines), want, out, stderr.String())
	}
	fields := make([][]string, len(lines))
	for i, line := range lines {
		if fields[i] = strings.Split(line, "|"); len(fields[i]) != n {
			t.Fatalf("tshark line %q: %d fields, want %d", line, len(fields[i]), n)
		}
	}
	return fields
}

// Wireshark 4.0's ESP SA table (uat "esp_sa") names; transforms it lacks
// (ChaCha20-Poly1305, ENCR_NULL_AUTH_AES_GMAC, ESN) are left out.
var wiresharkEnc = map[string]string{
	"aes128gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
	"aes192gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
	"aes256gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
	"aes128":      "AES-CBC [RFC3602]", "aes192": "AES-CBC [RFC3602]", "aes256": "AES-CBC [RFC3602]",
	"3des": "TripleDES-CBC [RFC2451]",
	"null": "NULL",
}

var wiresharkInteg = map[string]string{
	"":       "NULL",
	"sha256": "HMAC-SHA-256-128 [RFC4868]",
	"sha384": "HMAC-SHA-384-192 [RFC4868]",
	"sha512": "HMAC-SHA-512-256 [RFC4868]",
	"sha1":   "HMAC-SHA-1-96 [RFC2404]",
	"md5":    "HMAC-MD5-96 [RFC2403]",
}

// wiresharkSA returns the tshark options that add sp to the ESP SA table,
// for outer IPv4 and IPv6: -o uat:esp_sa:"Protocol","Src IP","Dest IP",
// "SPI","Encryption","Encryption Key","Authentication","Authentication Key".
func wiresharkSA(sp *saspec.Spec) []string {
	integ := ""
	if sp.Integ != nil {
		integ = sp.Integ.Name
	}
	key := func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		return "0x" + hex.EncodeToString(b)
	}
	var o []string
	for _, proto := range []string{"IPv4", "IPv6"} {
		o = append(o, "-o", fmt.Sprintf(`uat:esp_sa:"%s","*","*","0x%08x","%s","%s","%s","%s"`,
			proto, sp.SPI, wiresharkEnc[sp.Enc.Name], key(sp.Key), wiresharkInteg[integ], key(sp.AuthKey)))
	}
	return o
}

// TestWireshark has tshark decrypt what goipsec encrypted, with every
// transform Wireshark 4.0 can decrypt, in tunnel (IPv4 and IPv6 outer) and
// transport mode, with and without UDP encapsulation, and checks that the
// ICV verifies and the inner packets decode with the right payloads. One
// capture holds every case, each under its own SPI.
func TestWireshark(t *testing.T) {
	ts := tshark(t)
	type expect struct {
		name    string
		payload []byte
		inner   netip.Addr
	}
	var (
		recs []record
		want []expect
		args = []string{"-n", "-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"}
	)
	spi := uint32(0x2000)
	for _, tr := range allTransforms() {
		if wiresharkEnc[tr.enc] == "" {
			t.Logf("%s: not decryptable by Wireshark 4.0, skipped", tr)
			continue
		}
		for _, mc := range modeCases {
			for _, udp := range []bool{false, true} {
				spi++
				name := fmt.Sprintf("%s/%s/udp=%v", tr, mc.name, udp)
				// Payloads no dissector claims, unique per case.
				p4 := []byte(fmt.Sprintf("goipsec %s v4", name))
				p6 := []byte(fmt.Sprintf("goipsec %s v6", name))
				pkts := [][]byte{udp4(v4a, v4b, 40000, 40001, p4), udp6(v6a, v6b, 40000, 40001, p6, v6Ext()...)}
				sp := mustSpec(t, tr.spec(spi, ""))
				opts := &EncryptOptions{SA: sp, Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst}
				if udp {
					opts.UDP = &esp.UDPPorts{Src: 4500, Dst: 4500}
				}
				enc, st, log := encrypt(t, writePcap(t, LinkEthernet, records(LinkEthernet, pkts)), opts)
				if st.Encrypted != 2 {
					t.Fatalf("%s: %s\n%s", name, st, log)
				}
				_, r := readPcap(t, enc)
				recs = append(recs, r...)
				want = append(want, expect{name, p4, v4a}, expect{name, p6, v6a})
				args = append(args, wiresharkSA(sp)...)
			}
		}
	}
	file := writeFile(t, "wireshark.pcap", writePcap(t, LinkEthernet, recs))
	args = append([]string{"-r", file}, args...)
	args = append(args, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.number", "-e", "esp.spi", "-e", "esp.icv_good", "-e", "esp.icv_bad",
		"-e", "ip.src", "-e", "ipv6.src", "-e", "udp.dstport", "-e", "data.data", "-e", "_ws.malformed")
	for i, f := range tsharkFields(t, ts, args, len(want), 9) {
		w := want[i]
		if f[2] != "1" || f[3] != "0" {
			t.Errorf("packet %d (%s): Wireshark ICV good=%q bad=%q", i+1, w.name, f[2], f[3])
		}
		addrs := f[4] + "," + f[5]
		if !strings.Contains(addrs, w.inner.String()) {
			t.Errorf("packet %d (%s): addresses %q lack the inner source %s", i+1, w.name, addrs, w.inner)
		}
		if !strings.HasSuffix(f[6], "40001") {
			t.Errorf("packet %d (%s): UDP ports %q: inner packet not decoded", i+1, w.name, f[6])
		}
		if f[7] != hex.EncodeToString(w.payload) {
			t.Errorf("packet %d (%s): Wireshark decrypted payload %q, want %q", i+1, w.name, f[7], hex.EncodeToString(w.payload))
		}
		if f[8] != "" {
			t.Errorf("packet %d (%s): malformed", i+1, w.name)
		}
	}
}

// TestWiresharkSeesTampering makes sure the Wireshark check above can fail:
// a flipped ICV bit shows as a bad ICV.
func TestWiresharkSeesTampering(t *testing.T) {
	ts := tshark(t)
	for _, tr := range []transform{{enc: "aes128gcm16"}, {"aes256", "sha512"}} {
		sp := mustSpec(t, tr.spec(0x3001, ""))
		enc, _, _ := encrypt(t, writePcap(t, LinkRaw, records(LinkRaw, [][]byte{udp4(v4a, v4b, 40000, 40001, []byte("x"))})),
			&EncryptOptions{SA: sp, Mode: esp.Transport})
		_, recs := readPcap(t, enc)
		recs[0].data[len(recs[0].data)-1] ^= 1
		file := writeFile(t, "bad.pcap", writePcap(t, LinkRaw, recs))
		args := append([]string{"-r", file, "-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"}, wiresharkSA(sp)...)
		args = append(args, "-T", "fields", "-e", "esp.icv_good", "-e", "esp.icv_bad")
		out, err := exec.Command(ts, args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "0\t1" {
			t.Errorf("%s: tshark says icv good/bad %q, want 0 and 1", tr, got)
		}
	}
}
