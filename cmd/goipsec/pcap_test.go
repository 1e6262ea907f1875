package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
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
			if code != 0 || !strings.HasPrefix(stderr, "pcap decrypt: 3 packets read: 3 IPsec (3 decrypted, 0 rejected") {
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
		"pcap decrypt: 6 packets read: 5 IPsec (3 decrypted, 2 rejected, 0 dummy), 0 IKE, 0 NAT-T keepalives, 1 other passed through; 4 written\n" +
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
	dir := t.TempDir()
	in, err := os.ReadFile(pcapWrite(t, dir, "in.pcap", layers.LinkTypeIPv4, pcapIPv4(1, "x")))
	if err != nil {
		t.Fatal(err)
	}
	enc, stderr, code := pcapRun(t, in, "pcap", "encrypt", "--sa", pcapGCM, "--mode", "transport", "-", "-")
	if code != 0 {
		t.Fatal(stderr)
	}
	dec, stderr, code := pcapRun(t, []byte(enc), "pcap", "decrypt", "--sa", pcapGCM, "-", "-")
	if code != 0 {
		t.Fatalf("status %d, %q", code, stderr)
	}
	path := filepath.Join(dir, "dec.pcap")
	if err := os.WriteFile(path, []byte(dec), 0o600); err != nil {
		t.Fatal(err)
	}
	link, pkts := pcapRead(t, path)
	if link != layers.LinkTypeIPv4 || len(pkts) != 1 || !bytes.Equal(pkts[0], pcapIPv4(1, "x")) {
		t.Fatalf("round trip through stdin and stdout: link %v, packets %x", link, pkts)
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
		{[]string{"pcap", "encrypt", "--sa", "spi=0x1234,proto=ah,integ=sha1,authkey=0x0000000000000000000000000000000000000000", "--mode", "transport", in, out}, 2,
			"SA spi 0x1234 is proto=ah; encrypt supports proto=esp"},
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
