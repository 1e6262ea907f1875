//go:build linux

package e2e

import (
	"bytes"
	"net"
	"strconv"
	"testing"
	"time"
)

// transferSize is the TCP transfer of each link test.
const transferSize = 100 << 20

// capturePackets is how many frames each link test captures on the veth.
const capturePackets = 4000

// serverPort is the TCP port of the test server behind the link.
const serverPort = 5201

// linkCase is one way of running a host-to-host link over a veth pair.
type linkCase struct {
	name      string
	mode      string // tunnel | transport
	underlay6 bool   // the hosts' addresses (the ESP endpoints) are IPv6
	inner6    bool   // tunnel mode: the protected addresses are IPv6
}

// underlay returns the hosts' underlay addresses (a, b) and their on-link
// prefix length.
func (c linkCase) underlay() (a, b, bits string) {
	if c.underlay6 {
		return "fd77::1", "fd77::2", "64"
	}
	return "192.168.77.1", "192.168.77.2", "24"
}

// inner returns the protected addresses of a and b and, for tunnel mode,
// the TUN prefix length (transport mode protects the underlay addresses).
func (c linkCase) inner() (a, b, bits string) {
	switch {
	case c.mode == "transport":
		a, b, _ = c.underlay()
		return a, b, ""
	case c.inner6:
		return "fd00:8::1", "fd00:8::2", "64"
	default:
		return "10.8.0.1", "10.8.0.2", "24"
	}
}

// link is two namespaces a and b joined by a veth pair, each running
// goipsec with static keys for the case.
type link struct {
	c          linkCase
	a, b       *netns
	devA, devB string
	// innerA and innerB are the protected addresses; abSA protects a to b,
	// baSA b to a.
	innerA, innerB string
	abSA, baSA     sa
	daemonA        *proc
	daemonB        *proc
}

// linkOptions vary a link from the normal.
type linkOptions struct {
	// bIn, if set, replaces the SA b expects from a (wrong keys, or an
	// SPI it does not know); likewise aIn for what a expects from b.
	bIn, aIn *sa
}

func newLink(t *testing.T, c linkCase, o linkOptions) *link {
	t.Helper()
	return newLinkOpts(t, c, func(sa, sa) linkOptions { return o })
}

// newLinkOpts is newLink with options made from the link's SAs: ab
// protects a to b, ba b to a.
func newLinkOpts(t *testing.T, c linkCase, opts func(ab, ba sa) linkOptions) *link {
	t.Helper()
	l := &link{c: c, a: newNetns(t, "a"), b: newNetns(t, "b")}
	l.devA, l.devB = "gv"+runID+l.a.name[len(l.a.name)-2:], "gv"+runID+l.b.name[len(l.b.name)-2:]
	ua, ub, ubits := c.underlay()
	veth(t, l.a, l.devA, []string{ua + "/" + ubits}, l.b, l.devB, []string{ub + "/" + ubits})
	ia, ib, ibits := c.inner()
	l.innerA, l.innerB = ia, ib
	l.abSA, l.baSA = newSA(0x1000+uint32(nsCounter.Load())), newSA(0x2000+uint32(nsCounter.Load()))
	pa := peer{local: ua, remote: ub, mode: c.mode, localTS: []string{ia}, remoteTS: []string{ib},
		in: l.baSA, out: l.abSA, tunName: "gt" + runID}
	pb := peer{local: ub, remote: ua, mode: c.mode, localTS: []string{ib}, remoteTS: []string{ia},
		in: l.abSA, out: l.baSA, tunName: "gt" + runID}
	if ibits != "" {
		pa.tunAddrs = []string{ia + "/" + ibits}
		pb.tunAddrs = []string{ib + "/" + ibits}
	}
	o := opts(l.abSA, l.baSA)
	if o.bIn != nil {
		pb.in = *o.bIn
	}
	if o.aIn != nil {
		pa.in = *o.aIn
	}
	l.daemonA = daemon(t, "goipsec-a", l.a, pa.yaml())
	l.daemonB = daemon(t, "goipsec-b", l.b, pb.yaml())
	return l
}

// serverAddr is the test server's address on b.
func (l *link) serverAddr() string { return net.JoinHostPort(l.innerB, strconv.Itoa(serverPort)) }

// TestLink runs two hosts in namespaces, joined by a veth pair, each
// running goipsec run with static keys, in tunnel mode (IPv4 and IPv6
// inner, IPv4 and IPv6 underlay) and in transport mode between the hosts'
// own addresses (IPv4 and IPv6). Each case pings, moves 100 MiB over TCP
// with a SHA-256 check, and captures a few thousand frames on the veth
// during the transfer: the capture holds nothing but ESP in UDP 4500 (and
// ARP/ND), no cleartext, and tshark, given the keys, decrypts it back to
// the very bytes sent.
func TestLink(t *testing.T) {
	needRoot(t, "ping", "dumpcap", "tshark")
	for _, c := range []linkCase{
		{name: "tunnel/inner4/underlay4", mode: "tunnel"},
		{name: "tunnel/inner6/underlay4", mode: "tunnel", inner6: true},
		{name: "tunnel/inner4/underlay6", mode: "tunnel", underlay6: true},
		{name: "transport/ipv4", mode: "transport"},
		{name: "transport/ipv6", mode: "transport", underlay6: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLink(t, c, linkOptions{})
			segmentOnWire(t, l) // so that tshark sees each ESP packet
			capt := startCapture(t, l.a, l.devA, capturePackets)
			// Four pings: dumpcap may start its loop a moment after it
			// says so, so the first request can precede the capture.
			if out, ok := l.a.ping(l.innerB, 4); !ok {
				t.Fatalf("ping %s through the link failed:\n%s", l.innerB, out)
			}
			s := newStream()
			res := transfer(t, l.a, l.b, l.serverAddr(), s, transferSize, 0)
			t.Logf("TCP %s -> %s: %v, SHA-256 verified", l.innerA, l.serverAddr(), res)
			if c := l.daemonB.counters(t); c != nil {
				t.Logf("b: received %d datagrams, delivered %d, dropped by SA %d, unknown SPI %d", c["received_packets"], c["delivered"], c["inbound_sa"], c["unknown_spi"])
			}
			pcap := capt.stop(t)
			if bytes.Contains(pcap, s.marker) {
				t.Errorf("the stream's marker %q is in the capture in clear", s.marker)
			}
			st := checkOnlyESP(t, capt, 4500)
			t.Logf("capture on %s: %v", l.devA, st)
			if st.esp < capturePackets/2 {
				t.Errorf("only %d ESP frames captured", st.esp)
			}
			d := checkDecrypted(t, capt, s, serverPort, l.abSA, l.baSA)
			t.Logf("tshark decrypted %d echo messages and %d TCP segments (%d bytes) equal to the stream sent", d.echoes, d.segments, d.bytes)
			if d.echoes < 6 {
				t.Errorf("tshark decrypted %d ICMP echo messages, want at least 3 of the 4 pings and their replies", d.echoes)
			}
			if d.segments < capturePackets/4 {
				t.Errorf("tshark decrypted only %d TCP segments of the stream", d.segments)
			}
		})
	}
}

// waitTimeout is how long a test waits for a silence to mean failure.
const waitTimeout = 3 * time.Second
