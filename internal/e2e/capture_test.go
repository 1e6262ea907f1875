//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// capture is dumpcap writing what crosses one interface to a file.
type capture struct {
	file string
	p    *proc
}

// segmentOnWire makes the kernel cut UDP GSO super-packets into their
// datagrams when they leave through the veth pair of link l. goipsec sends
// runs of ESP datagrams to a peer as one segmented send, which a veth
// passes on whole to the peer's socket (and its GRO): a capture on the
// veth would show one frame of up to 64 KB per run, which tshark cannot
// take apart into its ESP packets. With at most one segment per packet on
// both devices, the datagrams are cut out before the capture point, as a
// NIC without UDP segmentation offload would send them.
func segmentOnWire(t *testing.T, l *link) {
	t.Helper()
	l.a.ip(t, "link", "set", l.devA, "gso_max_segs", "1")
	l.b.ip(t, "link", "set", l.devB, "gso_max_segs", "1")
}

// startCapture captures on dev inside ns until count packets (0: until
// stopped); it returns once dumpcap is capturing.
func startCapture(t *testing.T, ns *netns, dev string, count int) *capture {
	t.Helper()
	c := &capture{file: filepath.Join(t.TempDir(), dev+".pcapng")}
	argv := []string{"dumpcap", "-q", "-B", "64", "-i", dev, "-w", c.file}
	if count > 0 {
		argv = append(argv, "-c", strconv.Itoa(count))
	}
	c.p = start(t, "dumpcap "+dev, ns.cmdline(argv...)...)
	c.p.waitFor(t, "Capturing on", 10*time.Second)
	// dumpcap says so just before its capture loop starts.
	time.Sleep(200 * time.Millisecond)
	return c
}

// stop ends the capture (if its count has not ended it already) and
// returns the file's bytes.
func (c *capture) stop(t *testing.T) []byte {
	t.Helper()
	c.p.stop(syscall.SIGINT, 10*time.Second)
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, c.p.out.String())
	}
	return b
}

// tshark runs tshark -r on the capture with args and returns its lines.
func (c *capture) tshark(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("tshark", append([]string{"-n", "-r", c.file}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// wireStats counts what a capture holds by kind.
type wireStats struct {
	frames, esp, keepalive, arp, nd int
}

func (w wireStats) String() string {
	return fmt.Sprintf("%d frames: %d ESP in UDP, %d NAT keepalives, %d ARP, %d IPv6 ND/MLD", w.frames, w.esp, w.keepalive, w.arp, w.nd)
}

// checkOnlyESP checks that every frame of the capture is ESP in UDP between
// the given ports, a NAT keepalive on them, ARP or IPv6 neighbour discovery
// (and MLD): no cleartext protocol of the inner traffic. It reports every
// other frame as an error.
func checkOnlyESP(t *testing.T, c *capture, ports ...int) wireStats {
	t.Helper()
	okPort := map[string]bool{}
	for _, p := range ports {
		okPort[strconv.Itoa(p)] = true
	}
	lines := c.tshark(t, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.number", "-e", "frame.protocols", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "icmpv6.type",
		"-e", "ip.dst", "-e", "ipv6.dst")
	var st wireStats
	bad := 0
	for _, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != 7 {
			t.Fatalf("tshark line %q", line)
		}
		st.frames++
		protos := f[1]
		udp := okPort[f[2]] && okPort[f[3]] && !strings.Contains(f[2], ",")
		switch {
		case protos == "eth:ethertype:arp":
			st.arp++
			continue
		case udp && (protos == "eth:ethertype:ip:udp:udpencap:esp" || protos == "eth:ethertype:ipv6:udp:udpencap:esp"):
			st.esp++
			continue
		case udp && (protos == "eth:ethertype:ip:udp:udpencap" || protos == "eth:ethertype:ipv6:udp:udpencap"):
			st.keepalive++
			continue
		case strings.HasPrefix(protos, "eth:ethertype:ipv6:") && strings.HasSuffix(protos, ":icmpv6") && isND(f[4]):
			st.nd++
			continue
		}
		bad++
		if bad <= 20 {
			t.Errorf("capture frame %s is not ESP in UDP %v, ARP or ND: %s ports %s>%s icmpv6 %q dst %s%s", f[0], ports, protos, f[2], f[3], f[4], f[5], f[6])
		}
	}
	if bad > 20 {
		t.Errorf("... and %d more frames that are not ESP, ARP or ND", bad-20)
	}
	return st
}

// isND reports whether ICMPv6 type field v is neighbour or router
// discovery, redirect, or an MLD report (the only ICMPv6 allowed in clear).
func isND(v string) bool {
	switch v {
	case "133", "134", "135", "136", "137", "143":
		return true
	}
	return false
}

// decrypted is what tshark saw inside the ESP of a capture, decrypting it
// with the keys.
type decrypted struct {
	echoes   int // ICMP or ICMPv6 echo requests and replies
	segments int // TCP segments with payload to the server port, checked
	bytes    int // their payload bytes
	synSeen  bool
	marker   bool // the first segment started with the stream's marker
}

// checkDecrypted has tshark decrypt the capture with the SAs and checks
// that the TCP payload sent to serverPort is, byte for byte, the stream at
// the segment's offset (from the SYN's sequence number).
func checkDecrypted(t *testing.T, c *capture, s *stream, serverPort int, sas ...sa) decrypted {
	t.Helper()
	args := append(wiresharkSAs(sas...), "-T", "fields", "-E", "separator=|", "-E", "occurrence=l",
		"-e", "frame.number", "-e", "esp.spi", "-e", "icmp.type", "-e", "icmpv6.type",
		"-e", "tcp.dstport", "-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "tcp.seq_raw", "-e", "tcp.payload",
		"-Y", "esp")
	lines := c.tshark(t, args...)
	var d decrypted
	var isn uint32
	want := s.prefix(16 << 20)
	bad := 0
	for _, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != 9 {
			t.Fatalf("tshark line %q", line)
		}
		if f[2] == "8" || f[2] == "0" || f[3] == "128" || f[3] == "129" {
			d.echoes++
		}
		if f[4] != strconv.Itoa(serverPort) {
			continue
		}
		seq, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			t.Fatalf("frame %s: tcp.seq_raw %q", f[0], f[7])
		}
		if f[5] == "1" && f[6] == "0" {
			d.synSeen, isn = true, uint32(seq)
			continue
		}
		if f[8] == "" || !d.synSeen {
			continue
		}
		payload, err := hex.DecodeString(strings.ReplaceAll(f[8], ":", ""))
		if err != nil {
			t.Fatalf("frame %s: tcp.payload %q", f[0], f[8])
		}
		off := int(uint32(seq) - isn - 1)
		if off+len(payload) > len(want) {
			continue
		}
		if !bytes.Equal(payload, want[off:off+len(payload)]) {
			bad++
			if bad <= 5 {
				t.Errorf("frame %s: decrypted TCP payload at stream offset %d (%d bytes) is not the stream's bytes", f[0], off, len(payload))
			}
			continue
		}
		if off == 0 && bytes.HasPrefix(payload, s.marker) {
			d.marker = true
		}
		d.segments++
		d.bytes += len(payload)
	}
	if !d.synSeen {
		t.Errorf("tshark found no decryptable TCP SYN to port %d in the capture (%d ESP frames)", serverPort, len(lines))
	}
	if !d.marker {
		t.Errorf("tshark did not decrypt the stream's first segment with the marker %q", s.marker)
	}
	return d
}
