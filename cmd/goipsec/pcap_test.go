package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/goipsec/goipsec/internal/xform"
)

// pcapRun executes the goipsec command line in-process and returns its stdout,
// stderr and exit status, as main would.
func pcapRun(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetIn(bytes.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	code := 0
	if err := root.Execute(); err != nil {
		errb.WriteString("goipsec: " + err.Error() + "\n")
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

const (
	pcapGCM = "spi=0x1234,proto=esp,enc=aes128gcm16,key=0x0102030405060708090a0b0c0d0e0f1011121314"
	pcapCBC = "spi=0x5678,proto=esp,enc=aes256,key=0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f,integ=sha256,authkey=0x" +
		"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
)

// pcapIPv4 is a small IPv4 UDP packet with a valid header checksum (which
// transport mode recomputes) and no UDP checksum.
func pcapIPv4(id uint16, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	p[8], p[9] = 64, 17
	copy(p[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(p[20:], 1000)
	binary.BigEndian.PutUint16(p[22:], 2000)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	return p
}

func pcapIPv6(payload string) []byte {
	p := make([]byte, 48+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(8+len(payload)))
	p[6], p[7] = 17, 64
	p[23], p[39] = 1, 2
	binary.BigEndian.PutUint16(p[40:], 1000)
	binary.BigEndian.PutUint16(p[42:], 2000)
	binary.BigEndian.PutUint16(p[44:], uint16(8+len(payload)))
	copy(p[48:], payload)
	return p
}

func pcapWrite(t *testing.T, dir, name string, link layers.LinkType, pkts ...[]byte) string {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	for i, p := range pkts {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Second), CaptureLength: len(p), Length: len(p)}, p); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pcapRead(t *testing.T, path string) (layers.LinkType, [][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for {
		d, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkts = append(pkts, d)
	}
	return r.LinkType(), pkts
}

// TestPcapRoundTrip runs encrypt then decrypt through the command line.
func TestPcapRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pkts := [][]byte{pcapIPv4(1, "one"), pcapIPv6("two"), pcapIPv4(3, "three")}
	in := pcapWrite(t, dir, "in.pcap", layers.LinkTypeRaw, pkts...)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"tunnel", []string{"--sa", pcapGCM, "--mode", "tunnel", "--tunnel-src", "192.0.2.1", "--tunnel-dst", "192.0.2.2"}},
		{"tunnel6-udp", []string{"--sa", pcapCBC + ",esn", "--mode", "tunnel", "--tunnel-src", "2001:db8::1", "--tunnel-dst", "2001:db8::2", "--udp-encap", "4500:4500"}},
		{"transport-udp", []string{"--sa", pcapCBC, "--mode", "transport", "--udp-encap", "40000:4500"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := filepath.Join(dir, tc.name+".enc.pcap")
			dec := filepath.Join(dir, tc.name+".dec.pcap")
			_, stderr, code := pcapRun(t, nil, append(append([]string{"pcap", "encrypt"}, tc.args...), in, enc)...)
			if code != 0 || stderr != "pcap encrypt: 3 packets read: 3 encrypted, 0 failed, 0 non-IP passed through; 3 written\n" {
				t.Fatalf("encrypt: status %d, stderr %q", code, stderr)
			}
			sa := tc.args[1]
			_, stderr, code = pcapRun(t, nil, "pcap", "decrypt", "--sa", "spi=0x9999,proto=esp,enc=null,integ=sha1,authkey=0x0000000000000000000000000000000000000000", "--sa", sa, enc, dec)
			if code != 0 || !strings.HasPrefix(stderr, "pcap decrypt: 3 packets read: 3 IPsec (3 decrypted, 0 AH verified, 0 rejected") {
				t.Fatalf("decrypt: status %d, stderr %q", code, stderr)
			}
			link, got := pcapRead(t, dec)
			if link != layers.LinkTypeRaw || len(got) != len(pkts) {
				t.Fatalf("link %v, %d packets", link, len(got))
			}
			for i := range pkts {
				if !bytes.Equal(got[i], pkts[i]) {
					t.Errorf("packet %d differs", i+1)
				}
			}
		})
	}
}

// TestPcapRejections checks the per-packet report, the summary and exit
// status 1 when IPsec packets are rejected.
func TestPcapRejections(t *testing.T) {
	dir := t.TempDir()
	in := pcapWrite(t, dir, "in.pcap", layers.LinkTypeEthernet,
		pcapEth(pcapIPv4(1, "one")), pcapEth(pcapIPv4(2, "two")), pcapEth(pcapIPv4(3, "three")))
	enc := filepath.Join(dir, "enc.pcap")
	if _, stderr, code := pcapRun(t, nil, "pcap", "encrypt", "--sa", pcapGCM, "--mode", "transport", in, enc); code != 0 {
		t.Fatal(stderr)
	}
	_, recs := pcapRead(t, enc)
	tampered := append([]byte(nil), recs[1]...)
	tampered[len(tampered)-5] ^= 0x40
	bad := pcapWrite(t, dir, "bad.pcap", layers.LinkTypeEthernet, recs[0], tampered, recs[1], recs[1], recs[2], pcapEth(pcapIPv4(9, "clear")))

	dec := filepath.Join(dir, "dec.pcap")
	_, stderr, code := pcapRun(t, nil, "pcap", "decrypt", "--sa", pcapGCM, bad, dec)
	want := "packet 2: spi 0x1234 seq 2: bad ICV\n" +
		"packet 4: spi 0x1234 seq 2: replay (sequence number already received)\n" +
		"pcap decrypt: 6 packets read: 5 IPsec (3 decrypted, 0 AH verified, 2 rejected, 0 dummy), 0 IKE, 0 NAT-T keepalives, 1 other passed through; 4 written\n" +
		"goipsec: 2 of 5 IPsec packets rejected\n"
	if code != 1 || stderr != want {
		t.Errorf("status %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
	}
	if _, got := pcapRead(t, dec); len(got) != 4 || !bytes.Equal(got[3], pcapEth(pcapIPv4(9, "clear"))) {
		t.Errorf("output: %d packets", len(got))
	}

	// Unknown SPI.
	_, stderr, code = pcapRun(t, nil, "pcap", "decrypt", "--sa", pcapCBC, enc, dec)
	if code != 1 || !strings.HasPrefix(stderr, "packet 1: spi 0x1234 seq 1: unknown SPI\npacket 2: spi 0x1234 seq 2: unknown SPI\n") {
		t.Errorf("status %d, stderr %q", code, stderr)
	}

	// Key material never shows up in the output.
	if strings.Contains(stderr, "0102030405060708") {
		t.Error("stderr shows key material")
	}
}

func pcapEth(ip []byte) []byte {
	h := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0}
	if ip[0]>>4 == 6 {
		h[12], h[13] = 0x86, 0xdd
	}
	return append(h, ip...)
}

// TestPcapStdio reads stdin and writes stdout with "-".
func TestPcapStdio(t *testing.T) {
	pcapStdioRoundTrip(t, layers.LinkTypeIPv4, pcapIPv4(1, "x"), pcapGCM)
}

// pcapStdioRoundTrip protects a capture of pkt with sa from stdin to
// stdout (transport mode) and back: the packet and its link type return.
func pcapStdioRoundTrip(t *testing.T, link layers.LinkType, pkt []byte, sa string) {
	t.Helper()
	dir := t.TempDir()
	in, err := os.ReadFile(pcapWrite(t, dir, "in.pcap", link, pkt))
	if err != nil {
		t.Fatal(err)
	}
	enc, stderr, code := pcapRun(t, in, "pcap", "encrypt", "--sa", sa, "--mode", "transport", "-", "-")
	if code != 0 {
		t.Fatal(stderr)
	}
	dec, stderr, code := pcapRun(t, []byte(enc), "pcap", "decrypt", "--sa", sa, "-", "-")
	if code != 0 {
		t.Fatalf("status %d, %q", code, stderr)
	}
	path := filepath.Join(dir, "dec.pcap")
	if err := os.WriteFile(path, []byte(dec), 0o600); err != nil {
		t.Fatal(err)
	}
	got, pkts := pcapRead(t, path)
	if got != link || len(pkts) != 1 || !bytes.Equal(pkts[0], pkt) {
		t.Fatalf("round trip through stdin and stdout: link %v, packets %x", got, pkts)
	}
}

// TestPcapUsage checks that usage errors exit with status 2 and say what
// is wrong, and that I/O errors exit with 1.
func TestPcapUsage(t *testing.T) {
	dir := t.TempDir()
	in := pcapWrite(t, dir, "in.pcap", layers.LinkTypeRaw, pcapIPv4(1, "x"))
	out := filepath.Join(dir, "out.pcap")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pcap", "decrypt", in, out}, 2, "no --sa given"},
		{[]string{"pcap", "decrpyt", in, out}, 2, `unknown command "decrpyt" for "goipsec pcap"`},
		{[]string{"pcap", "decrypt", "--sa", pcapGCM, in}, 2, "want the input and output files (IN OUT), got 1 arguments"},
		{[]string{"pcap", "decrypt", "--sa", "spi=0x1234,proto=esp,enc=aes128gcm16,key=0x00", in, out}, 2,
			"--sa #1: sa spec: key: enc=aes128gcm16 wants 20 bytes (16-byte key + 4-byte salt, 0x and 40 hex digits), got 1 bytes"},
		{[]string{"pcap", "decrypt", "--sa", pcapGCM, "--sa", pcapGCM, in, out}, 2, "--sa #2: spi 0x1234 given twice"},
		{[]string{"pcap", "decrypt", "--sa", pcapGCM, "--udp-port", "0", in, out}, 2, "--udp-port 0: want 1 to 65535"},
		{[]string{"pcap", "decrypt", "--sa", pcapGCM, "--bogus", in, out}, 2, "unknown flag: --bogus"},
		{[]string{"pcap", "decrypt", "--sa", pcapGCM, in, in}, 2, "is the input file"},
		{[]string{"pcap", "decrypt", "--sa", pcapGCM, filepath.Join(dir, "missing.pcap"), out}, 1, "no such file or directory"},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, in, out}, 2, "--mode is required: tunnel or transport"},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--mode", "tunel", in, out}, 2, `--mode: want tunnel or transport, got "tunel"`},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--mode", "tunnel", in, out}, 2, "tunnel mode needs the outer addresses (--tunnel-src and --tunnel-dst)"},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--mode", "tunnel", "--tunnel-src", "192.0.2.1", "--tunnel-dst", "2001:db8::1", in, out}, 2,
			"tunnel addresses 192.0.2.1 and 2001:db8::1 are of different IP versions"},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--mode", "tunnel", "--tunnel-src", "192.0.2.300", "--tunnel-dst", "192.0.2.1", in, out}, 2,
			`--tunnel-src: want an IPv4 or IPv6 address, got "192.0.2.300"`},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--mode", "transport", "--tunnel-dst", "192.0.2.1", in, out}, 2,
			"tunnel addresses (--tunnel-src, --tunnel-dst) are for tunnel mode only"},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--mode", "transport", "--udp-encap", "4500", in, out}, 2, `--udp-encap: want SPORT:DPORT, got "4500"`},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--mode", "transport", "--udp-encap", "4500:70000", in, out}, 2,
			`--udp-encap: want SPORT:DPORT with ports from 1 to 65535, got "4500:70000"`},
		{[]string{"pcap", "encrypt", "--sa", pcapGCM, "--sa", pcapCBC, "--mode", "transport", in, out}, 2, "want exactly one --sa, got 2"},
		{[]string{"pcap", "encrypt", "--sa", "spi=0x1234,proto=ah,integ=sha1,authkey=0x0000000000000000000000000000000000000000", "--mode", "transport", "--udp-encap", "4500:4500", in, out}, 2,
			"UDP encapsulation (--udp-encap, RFC 3948) is for ESP only; SA spi 0x1234 is proto=ah"},
		{[]string{"pcap", "encrypt", "--sa", "spi=0x1234,proto=ah,integ=sha256,authkey=0x00", "--mode", "transport", in, out}, 2,
			"--sa #1: sa spec: authkey: integ=sha256 wants 32 bytes (0x and 64 hex digits), got 1 bytes"},
		{[]string{"pcap", "decrypt", "--sa", pcapGCM, "--sa", "spi=0x1234,proto=ah,integ=sha1,authkey=0x0000000000000000000000000000000000000000", in, out}, 2,
			"--sa #2: spi 0x1234 given twice"},
	}
	for _, tt := range tests {
		_, stderr, code := pcapRun(t, nil, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("goipsec %s:\nstatus %d, stderr %q\nwant %d and %q", strings.Join(tt.args, " "), code, stderr, tt.code, tt.want)
		}
		if code == 2 && !strings.Contains(stderr, "--help") {
			t.Errorf("goipsec %s: usage error %q does not point at --help", strings.Join(tt.args, " "), stderr)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run left an output file")
	}

	// A file that is not a capture: status 1, and no output left behind.
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("definitely not a pcap file"), 0o600)
	_, stderr, code := pcapRun(t, nil, "pcap", "decrypt", "--sa", pcapGCM, junk, out)
	if code != 1 || !strings.Contains(stderr, "want a pcap or pcapng file") {
		t.Errorf("junk input: status %d, %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run left an output file")
	}
}

// pcapIPv4Opts is pcapIPv4 with IP options: Router Alert (immutable for
// AH), Record Route (mutable), NOP and End of Options List.
func pcapIPv4Opts(id uint16, payload string) []byte {
	opts := []byte{0x94, 4, 0, 0, 0x07, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	p := pcapIPv4(id, payload)
	q := make([]byte, 0, len(p)+len(opts))
	q = append(q, p[:20]...)
	q = append(q, opts...)
	q = append(q, p[20:]...)
	q[0] = 0x40 | byte(len(q[:20+len(opts)])/4)
	binary.BigEndian.PutUint16(q[2:], uint16(len(q)))
	pcapFixSum(q)
	return q
}

func pcapFixSum(p []byte) {
	p[10], p[11] = 0, 0
	var sum uint32
	for i := 0; i < int(p[0]&0xf)*4; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
}

// pcapIPv6Ext is pcapIPv6 with extension headers: Hop-by-Hop (Router
// Alert, and an option whose data may change en route), Destination
// Options, a type 0 Routing header with no segments left, and Destination
// Options again (which transport-mode AH goes in front of).
func pcapIPv6Ext(payload string) []byte {
	p := pcapIPv6(payload)
	ext := []byte{
		60, 1, 0x05, 2, 0, 0, 0x3e, 4, 0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 0, 0, // Hop-by-Hop
		43, 0, 0x1e, 2, 1, 2, 1, 0, // Destination Options
		60, 0, 0, 0, 0, 0, 0, 0, // Routing, type 0, segments left 0
		17, 0, 1, 4, 0, 0, 0, 0, // Destination Options
	}
	q := append(append(append([]byte(nil), p[:40]...), ext...), p[40:]...)
	q[6] = 0 // Hop-by-Hop
	binary.BigEndian.PutUint16(q[4:], uint16(len(q)-40))
	return q
}

// pcapAHSpec returns an AH SA spec for the integrity algorithm alg.
func pcapAHSpec(t *testing.T, alg string, spi uint32, extra string) string {
	t.Helper()
	ig, err := xform.LookupInteg(alg)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, ig.KeyLen)
	for i := range key {
		key[i] = byte(0xc0 + i)
	}
	return fmt.Sprintf("spi=%#x,proto=ah,integ=%s,authkey=0x%x%s", spi, alg, key, extra)
}

// TestPcapAHRoundTrip runs encrypt then decrypt with AH SAs through the
// command line, for every integrity algorithm, tunnel mode over IPv4 and
// IPv6 and transport mode, with and without ESN, on IPv4 (with and
// without options) and IPv6 (with and without extension headers) packets,
// and checks that the packets come back byte for byte.
func TestPcapAHRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pkts := [][]byte{pcapIPv4(1, "one"), pcapIPv4Opts(2, "two, with options"), pcapIPv6("three"), pcapIPv6Ext("four, with extension headers")}
	in := pcapWrite(t, dir, "in.pcap", layers.LinkTypeRaw, pkts...)
	modes := []struct {
		name string
		args []string
	}{
		{"tunnel4", []string{"--mode", "tunnel", "--tunnel-src", "192.0.2.1", "--tunnel-dst", "192.0.2.2"}},
		{"tunnel6", []string{"--mode", "tunnel", "--tunnel-src", "2001:db8::1", "--tunnel-dst", "2001:db8::2"}},
		{"transport", []string{"--mode", "transport"}},
	}
	for _, ig := range xform.Integs() {
		for _, m := range modes {
			for _, esn := range []string{"", ",esn,seq=4294967294"} {
				name := fmt.Sprintf("%s/%s/esn=%v", ig.Name, m.name, esn != "")
				t.Run(name, func(t *testing.T) {
					sa := pcapAHSpec(t, ig.Name, 0xa000, esn)
					enc := filepath.Join(t.TempDir(), "enc.pcap")
					dec := filepath.Join(t.TempDir(), "dec.pcap")
					args := append(append([]string{"pcap", "encrypt", "--sa", sa}, m.args...), in, enc)
					_, stderr, code := pcapRun(t, nil, args...)
					if code != 0 || stderr != "pcap encrypt: 4 packets read: 4 encrypted, 0 failed, 0 non-IP passed through; 4 written\n" {
						t.Fatalf("encrypt: status %d, stderr %q", code, stderr)
					}
					_, recs := pcapRead(t, enc)
					for i, r := range recs {
						if proto := pcapProto(r); proto != 51 {
							t.Errorf("packet %d: protocol %d, want AH (51)", i+1, proto)
						}
					}
					_, stderr, code = pcapRun(t, nil, "pcap", "decrypt", "--sa", pcapGCM, "--sa", sa, enc, dec)
					if code != 0 || stderr != "pcap decrypt: 4 packets read: 4 IPsec (0 decrypted, 4 AH verified, 0 rejected, 0 dummy), 0 IKE, 0 NAT-T keepalives, 0 other passed through; 4 written\n" {
						t.Fatalf("decrypt: status %d, stderr %q", code, stderr)
					}
					link, got := pcapRead(t, dec)
					if link != layers.LinkTypeRaw || len(got) != len(pkts) {
						t.Fatalf("link %v, %d packets", link, len(got))
					}
					for i := range pkts {
						if !bytes.Equal(got[i], pkts[i]) {
							t.Errorf("packet %d:\n got %x\nwant %x", i+1, got[i], pkts[i])
						}
					}
				})
			}
		}
	}
}

// pcapProto returns the protocol after the IP header of the raw IP packet
// p (for IPv6: after the Hop-by-Hop, Destination Options and Routing
// headers).
func pcapProto(p []byte) uint8 {
	if p[0]>>4 == 4 {
		return p[9]
	}
	nh, off := p[6], 40
	for nh == 0 || nh == 43 || nh == 60 {
		nh, off = p[off], off+(int(p[off+1])+1)*8
	}
	return nh
}

// TestPcapAHRejections checks the report and exit status of decrypt for AH
// packets: an immutable byte changed (bad ICV), a replay and an unknown
// SPI fail with status 1; a packet whose TTL changed on the way verifies.
func TestPcapAHRejections(t *testing.T) {
	dir := t.TempDir()
	sa := pcapAHSpec(t, "sha256", 0x4321, "")
	pkts := [][]byte{pcapIPv4Opts(1, "one"), pcapIPv4(2, "two"), pcapIPv4(3, "three")}
	var frames [][]byte
	for _, p := range pkts {
		frames = append(frames, pcapEth(p))
	}
	in := pcapWrite(t, dir, "in.pcap", layers.LinkTypeEthernet, frames...)
	enc := filepath.Join(dir, "enc.pcap")
	if _, stderr, code := pcapRun(t, nil, "pcap", "encrypt", "--sa", sa, "--mode", "transport", in, enc); code != 0 {
		t.Fatal(stderr)
	}
	other := filepath.Join(dir, "other.pcap")
	if _, stderr, code := pcapRun(t, nil, "pcap", "encrypt", "--sa", pcapAHSpec(t, "sha1", 0x9999, ""), "--mode", "transport", in, other); code != 0 {
		t.Fatal(stderr)
	}
	_, recs := pcapRead(t, enc)
	_, others := pcapRead(t, other)
	// The TTL (a mutable field) drops by 5, the checksum fixed as a router would.
	ttl := append([]byte(nil), recs[0]...)
	ttl[14+8] -= 5
	pcapFixSum(ttl[14:])
	// The last payload byte (immutable) changes.
	tampered := append([]byte(nil), recs[1]...)
	tampered[len(tampered)-1] ^= 0x01
	bad := pcapWrite(t, dir, "bad.pcap", layers.LinkTypeEthernet, ttl, tampered, recs[1], recs[1], others[2], recs[2], pcapEth(pcapIPv4(9, "clear")))

	dec := filepath.Join(dir, "dec.pcap")
	_, stderr, code := pcapRun(t, nil, "pcap", "decrypt", "--sa", sa, bad, dec)
	want := "packet 2: spi 0x4321 seq 2: bad ICV\n" +
		"packet 4: spi 0x4321 seq 2: replay (sequence number already received)\n" +
		"packet 5: spi 0x9999 seq 3: unknown SPI\n" +
		"pcap decrypt: 7 packets read: 6 IPsec (0 decrypted, 3 AH verified, 3 rejected, 0 dummy), 0 IKE, 0 NAT-T keepalives, 1 other passed through; 4 written\n" +
		"goipsec: 3 of 6 IPsec packets rejected\n"
	if code != 1 || stderr != want {
		t.Errorf("status %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
	}
	wantTTL := append([]byte(nil), pkts[0]...)
	wantTTL[8] -= 5
	pcapFixSum(wantTTL)
	_, got := pcapRead(t, dec)
	wantOut := [][]byte{pcapEth(wantTTL), pcapEth(pkts[1]), pcapEth(pkts[2]), pcapEth(pcapIPv4(9, "clear"))}
	if len(got) != len(wantOut) {
		t.Fatalf("%d packets written, want %d", len(got), len(wantOut))
	}
	for i := range wantOut {
		if !bytes.Equal(got[i], wantOut[i]) {
			t.Errorf("packet %d:\n got %x\nwant %x", i+1, got[i], wantOut[i])
		}
	}

	// Only mutable fields changed: every packet verifies, status 0.
	ok := pcapWrite(t, dir, "ok.pcap", layers.LinkTypeEthernet, ttl, recs[1], recs[2])
	if _, stderr, code := pcapRun(t, nil, "pcap", "decrypt", "--sa", sa, ok, dec); code != 0 ||
		!strings.HasPrefix(stderr, "pcap decrypt: 3 packets read: 3 IPsec (0 decrypted, 3 AH verified, 0 rejected") {
		t.Errorf("status %d, stderr %q", code, stderr)
	}

	// The AH packets under an ESP SA with their SPI.
	_, stderr, code = pcapRun(t, nil, "pcap", "decrypt", "--sa", strings.Replace(pcapGCM, "0x1234", "0x4321", 1), enc, dec)
	if code != 1 || !strings.HasPrefix(stderr, "packet 1: spi 0x4321 seq 1: AH packet for an ESP SA\n") {
		t.Errorf("status %d, stderr %q", code, stderr)
	}
	if strings.Contains(stderr, "c0c1c2c3") {
		t.Error("stderr shows key material")
	}
}

// TestPcapMixed decrypts a capture with ESP and AH packets of several SAs
// at once.
func TestPcapMixed(t *testing.T) {
	dir := t.TempDir()
	pkts := [][]byte{pcapIPv4(1, "one"), pcapIPv6Ext("two"), pcapIPv4Opts(3, "three"), pcapIPv6("four"), pcapIPv4(5, "five"), pcapIPv4(6, "six")}
	in := pcapWrite(t, dir, "in.pcap", layers.LinkTypeRaw, pkts...)
	ah1 := pcapAHSpec(t, "aes256gmac", 0x3001, ",esn")
	ah2 := pcapAHSpec(t, "sha512", 0x3002, "")
	runs := [][]string{
		{"--sa", pcapGCM, "--mode", "tunnel", "--tunnel-src", "192.0.2.1", "--tunnel-dst", "192.0.2.2", "--udp-encap", "4500:4500"},
		{"--sa", ah1, "--mode", "transport"},
		{"--sa", pcapCBC, "--mode", "transport"},
		{"--sa", ah2, "--mode", "tunnel", "--tunnel-src", "2001:db8::1", "--tunnel-dst", "2001:db8::2"},
	}
	var encs [][][]byte
	for i, r := range runs {
		enc := filepath.Join(dir, fmt.Sprintf("enc%d.pcap", i))
		if _, stderr, code := pcapRun(t, nil, append(append([]string{"pcap", "encrypt"}, r...), in, enc)...); code != 0 {
			t.Fatal(stderr)
		}
		_, recs := pcapRead(t, enc)
		encs = append(encs, recs)
	}
	// Packet i through run i%4, the last one in clear.
	var mixed [][]byte
	for i := range pkts {
		if i == len(pkts)-1 {
			mixed = append(mixed, pkts[i])
		} else {
			mixed = append(mixed, encs[i%4][i])
		}
	}
	mixedPath := pcapWrite(t, dir, "mixed.pcap", layers.LinkTypeRaw, mixed...)
	dec := filepath.Join(dir, "dec.pcap")
	_, stderr, code := pcapRun(t, nil, "pcap", "decrypt", "--sa", ah2, "--sa", pcapCBC, "--sa", pcapGCM, "--sa", ah1, mixedPath, dec)
	if code != 0 || stderr != "pcap decrypt: 6 packets read: 5 IPsec (3 decrypted, 2 AH verified, 0 rejected, 0 dummy), 0 IKE, 0 NAT-T keepalives, 1 other passed through; 6 written\n" {
		t.Fatalf("status %d, stderr %q", code, stderr)
	}
	_, got := pcapRead(t, dec)
	if len(got) != len(pkts) {
		t.Fatalf("%d packets", len(got))
	}
	for i := range pkts {
		if !bytes.Equal(got[i], pkts[i]) {
			t.Errorf("packet %d differs", i+1)
		}
	}
}

// TestPcapAHStdio protects with AH from stdin to stdout and back.
func TestPcapAHStdio(t *testing.T) {
	pcapStdioRoundTrip(t, layers.LinkTypeIPv6, pcapIPv6Ext("x"), pcapAHSpec(t, "sha384", 0x2222, ""))
}
