//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	be "encoding/binary"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lcPeer is one end of an IKE link between two namespaces, with the
// lifetime and dead peer settings the lifecycle tests vary.
type lcPeer struct {
	local, remote     string // underlay addresses
	id, peerID        string
	inner, peerInner  string // protected (TUN) addresses
	start             string
	ikeRekey, ikeRand string // IKE SA rekey_time, rand_time ("": unset)
	ikeReauth         string
	childRekey        string
	childRand         string
	childLife         string
	dpd, dpdAction    string
	metrics           int // metrics port (0: none)
}

func (p lcPeer) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:\n  link:\n    local_addrs: [%s]\n    remote_addrs: [%s]\n", p.local, p.remote)
	fmt.Fprintf(&b, "    local_port: 4500\n    remote_port: 4500\n    proposals: [aes128gcm16-prfsha256-x25519]\n")
	opt := func(indent, key, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s%s: %s\n", indent, key, v)
		}
	}
	opt("    ", "rekey_time", p.ikeRekey)
	opt("    ", "rand_time", p.ikeRand)
	opt("    ", "reauth_time", p.ikeReauth)
	if p.ikeRekey != "" {
		b.WriteString("    over_time: 30s\n")
	}
	opt("    ", "dpd_delay", p.dpd)
	fmt.Fprintf(&b, "    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n", p.id, p.peerID)
	fmt.Fprintf(&b, "    children:\n      net:\n        mode: tunnel\n        local_ts: [%s/32]\n        remote_ts: [%s/32]\n", p.inner, p.peerInner)
	// With a key exchange: every Child SA rekey has PFS.
	fmt.Fprintf(&b, "        esp_proposals: [aes128gcm16-x25519]\n        start_action: %s\n", p.start)
	opt("        ", "rekey_time", p.childRekey)
	opt("        ", "rand_time", p.childRand)
	opt("        ", "life_time", p.childLife)
	opt("        ", "dpd_action", p.dpdAction)
	fmt.Fprintf(&b, "secrets:\n  link: {id: [%s, %s], secret: \"lifecycle test key\"}\n", p.id, p.peerID)
	fmt.Fprintf(&b, "tun:\n  mode: kernel\n  name: gt%s\n  addresses: [%s/24]\n", runID, p.inner)
	b.WriteString("ike: {retransmit_timeout: 1s, retransmit_tries: 2}\n")
	if p.metrics != 0 {
		fmt.Fprintf(&b, "control:\n  metrics: 127.0.0.1:%d\n", p.metrics)
	}
	return b.String()
}

// lcLink is two namespaces joined by a veth pair, for goipsec daemons that
// negotiate with IKE.
type lcLink struct {
	a, b       *netns
	devA, devB string
	pa, pb     lcPeer
}

func newLCLink(t *testing.T) *lcLink {
	t.Helper()
	l := &lcLink{a: newNetns(t, "a"), b: newNetns(t, "b")}
	l.devA, l.devB = "gv"+runID+l.a.name[len(l.a.name)-2:], "gv"+runID+l.b.name[len(l.b.name)-2:]
	veth(t, l.a, l.devA, []string{"192.168.79.1/24"}, l.b, l.devB, []string{"192.168.79.2/24"})
	// One ESP datagram per frame on the wire (see segmentOnWire).
	l.a.ip(t, "link", "set", l.devA, "gso_max_segs", "1")
	l.b.ip(t, "link", "set", l.devB, "gso_max_segs", "1")
	l.pa = lcPeer{local: "192.168.79.1", remote: "192.168.79.2", id: "a.example.org", peerID: "b.example.org",
		inner: "10.79.0.1", peerInner: "10.79.0.2", start: "start", metrics: 9669}
	l.pb = lcPeer{local: "192.168.79.2", remote: "192.168.79.1", id: "b.example.org", peerID: "a.example.org",
		inner: "10.79.0.2", peerInner: "10.79.0.1", start: "none", metrics: 9669}
	return l
}

// udpStream sends sequence-numbered datagrams at a steady rate from one
// namespace to a listener in another and records what arrives.
type udpStream struct {
	marker []byte
	sent   int
	seen   []int
	done   chan struct{}
	stop   chan struct{}
}

// streamMax bounds the datagrams of one stream.
const streamMax = 1 << 17

// startUDPStream sends from `from` to dst (an address of `to`) every gap
// until stopped.
func startUDPStream(t *testing.T, from, to *netns, dst string, gap time.Duration) *udpStream {
	t.Helper()
	s := &udpStream{marker: []byte("GOIPSEC-LC-" + randHex(8)), seen: make([]int, streamMax), done: make(chan struct{}), stop: make(chan struct{})}
	var pc net.PacketConn
	check(t, "listen in "+to.name, to.do(func() (err error) {
		pc, err = net.ListenPacket("udp4", dst)
		return err
	}))
	c, err := from.dial("udp4", dst, 5*time.Second)
	check(t, "dial from "+from.name, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256)
		for {
			pc.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				select {
				case <-s.stop:
					return
				default:
					continue
				}
			}
			if n == len(s.marker)+4 && bytes.HasPrefix(buf, s.marker) {
				if seq := be.BigEndian.Uint32(buf[len(s.marker):]); seq < streamMax {
					s.seen[seq]++
				}
			}
		}
	}()
	go func() {
		defer close(s.done)
		defer pc.Close()
		defer c.Close()
		msg := make([]byte, len(s.marker)+4)
		copy(msg, s.marker)
		tick := time.NewTicker(gap)
		defer tick.Stop()
	loop:
		for s.sent < streamMax {
			select {
			case <-s.stop:
				break loop
			case <-tick.C:
			}
			be.BigEndian.PutUint32(msg[len(s.marker):], uint32(s.sent))
			c.Write(msg)
			s.sent++
		}
		// The last datagrams are in flight: the receiver stops after a
		// quiet moment.
		time.Sleep(time.Second)
		wg.Wait()
	}()
	t.Cleanup(func() { s.end() })
	return s
}

// end stops the stream and waits for the receiver.
func (s *udpStream) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// check ends the stream and fails the test unless every datagram sent
// arrived exactly once.
func (s *udpStream) check(t *testing.T, what string) {
	t.Helper()
	s.end()
	lost, dup := 0, 0
	var firstLost []int
	for i := 0; i < s.sent; i++ {
		switch {
		case s.seen[i] == 0:
			lost++
			if len(firstLost) < 10 {
				firstLost = append(firstLost, i)
			}
		case s.seen[i] > 1:
			dup++
		}
	}
	for i := s.sent; i < streamMax; i++ {
		if s.seen[i] != 0 {
			dup++
		}
	}
	if lost != 0 || dup != 0 {
		t.Errorf("%s: %d of %d datagrams lost (first %v), %d duplicated", what, lost, s.sent, firstLost, dup)
	} else {
		t.Logf("%s: all %d datagrams arrived, each exactly once", what, s.sent)
	}
	if s.sent == 0 {
		t.Errorf("%s: nothing sent", what)
	}
}

// checkOnlyIPsec checks that the capture holds ESP in UDP and IKE on port
// 4500 (and ARP, IPv6 neighbour discovery), and no byte of the streams in
// clear; it returns the ESP and IKE frames counted.
func checkOnlyIPsec(t *testing.T, c *capture, pcap []byte, markers ...[]byte) (esp, ike int) {
	t.Helper()
	for _, m := range markers {
		if bytes.Contains(pcap, m) {
			t.Errorf("the stream's marker %q is in the capture in clear", m)
		}
	}
	lines := c.tshark(t, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.number", "-e", "frame.protocols", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "icmpv6.type")
	bad := 0
	for _, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != 5 {
			t.Fatalf("tshark line %q", line)
		}
		protos, on4500 := f[1], f[2] == "4500" && f[3] == "4500"
		switch {
		case protos == "eth:ethertype:arp":
		case on4500 && protos == "eth:ethertype:ip:udp:udpencap:esp":
			esp++
		case on4500 && strings.HasPrefix(protos, "eth:ethertype:ip:udp:udpencap:isakmp"):
			ike++
		case strings.HasPrefix(protos, "eth:ethertype:ipv6:") && strings.HasSuffix(protos, ":icmpv6") && isND(f[4]):
		default:
			bad++
			if bad <= 20 {
				t.Errorf("capture frame %s is neither ESP nor IKE in UDP 4500: %s ports %s>%s", f[0], protos, f[2], f[3])
			}
		}
	}
	return esp, ike
}

// metric returns the sum of a daemon's Prometheus samples whose line
// starts with prefix, read from inside its namespace.
func metric(t *testing.T, ns *netns, port int, prefix string) float64 {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ns.dial(network, addr, 5*time.Second)
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	check(t, "metrics in "+ns.name, err)
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			check(t, "metric "+line, err)
			sum += v
		}
	}
	return sum
}

// count returns how often s is in the process's output.
func (p *proc) count(s string) int { return strings.Count(p.out.String(), s) }

// countRe counts the matches of re in the output so far.
func (p *proc) countRe(re *regexp.Regexp) int { return len(re.FindAllStringIndex(p.out.String(), -1)) }

// checkSettled checks that each daemon has exactly one IKE SA and one
// Child SA pair, the pairs mirroring each other.
func checkSettled(t *testing.T, l *lcLink, da, db *proc) {
	t.Helper()
	spis := map[string]map[string]string{}
	for _, x := range []struct {
		p  *proc
		ns *netns
	}{{da, l.a}, {db, l.b}} {
		if n := metric(t, x.ns, 9669, "goipsec_ike_sas{"); n != 1 {
			t.Errorf("%s: %v IKE SAs, want exactly 1", x.p.name, n)
		}
		if n := metric(t, x.ns, 9669, `goipsec_ike_sas{state="established"}`); n != 1 {
			t.Errorf("%s: %v established IKE SAs, want 1", x.p.name, n)
		}
		sas := x.p.ikeSAs(t)
		spis[x.p.name] = map[string]string{}
		for _, s := range sas {
			spis[x.p.name][s["direction"].(string)] = s["spi"].(string)
		}
		if len(sas) != 2 || len(spis[x.p.name]) != 2 {
			t.Errorf("%s: %d IPsec SAs, want one inbound and one outbound: %v", x.p.name, len(sas), sas)
		}
	}
	a, b := spis[da.name], spis[db.name]
	if a["out"] != b["in"] || a["in"] != b["out"] {
		t.Errorf("the SA pairs do not mirror each other: a %v, b %v", a, b)
	}
}

// TestLifecycleRekeyStream runs two goipsec daemons in namespaces whose
// Child SAs live about 3 s and IKE SAs about 6 s, with timers a little
// different at both ends so that both initiate rekeys (with PFS), and b
// reauthenticates every 20 s or so, while sequence-numbered UDP streams
// flow both ways for 60 s: every datagram arrives exactly once, the
// capture on the veth holds nothing but ESP and IKE in UDP 4500, and the
// logs show the many rekeys of both ends and b's reauthentications.
func TestLifecycleRekeyStream(t *testing.T) {
	needRoot(t, "dumpcap", "tshark")
	if testing.Short() {
		t.Skip("skipping: runs for more than a minute")
	}
	l := newLCLink(t)
	l.pa.childRekey, l.pa.childRand, l.pa.childLife = "3s", "1s", "10s"
	l.pb.childRekey, l.pb.childRand, l.pb.childLife = "3200ms", "1200ms", "10s"
	l.pa.ikeRekey, l.pa.ikeRand = "6s", "2s"
	l.pb.ikeRekey, l.pb.ikeRand, l.pb.ikeReauth = "6100ms", "2100ms", "20s"
	db := daemon(t, "goipsec-b", l.b, l.pb.yaml())
	da := daemon(t, "goipsec-a", l.a, l.pa.yaml())
	da.waitFor(t, "CHILD_SA established", 20*time.Second)
	db.waitFor(t, "CHILD_SA established", 20*time.Second)

	capt := startCapture(t, l.a, l.devA, 0)
	ab := startUDPStream(t, l.a, l.b, "10.79.0.2:7001", 2500*time.Microsecond)
	ba := startUDPStream(t, l.b, l.a, "10.79.0.1:7002", 2500*time.Microsecond)
	time.Sleep(60 * time.Second)
	ab.check(t, "a to b")
	ba.check(t, "b to a")
	for _, p := range []*proc{da, db} {
		if c := p.counters(t); c != nil {
			t.Logf("%s dataplane: %v", p.name, c)
		}
	}
	pcap := capt.stop(t)
	esp, ike := checkOnlyIPsec(t, capt, pcap, ab.marker, ba.marker)
	t.Logf("capture on %s: %d ESP and %d IKE frames", l.devA, esp, ike)
	if esp < ab.sent || ike == 0 {
		t.Errorf("capture: %d ESP frames for %d datagrams sent, %d IKE frames", esp, ab.sent, ike)
	}
	var childTotal, ikeTotal int
	for _, p := range []*proc{da, db} {
		child, ikeSA := p.count("rekeying CHILD_SA"), p.count("rekeying IKE SA")
		t.Logf("%s initiated %d Child SA and %d IKE SA rekeys; %d collisions", p.name, child, ikeSA, p.count("rekey collision"))
		if child < 3 || ikeSA < 1 {
			t.Errorf("%s initiated %d Child SA and %d IKE SA rekeys, want at least 3 and 1", p.name, child, ikeSA)
		}
		childTotal += child
		ikeTotal += ikeSA
		if n := p.count("expired (hard lifetime)") + p.count("IKE SA expired") + p.count("dead peer"); n != 0 {
			t.Errorf("%s: %d SAs expired or peers declared dead", p.name, n)
		}
	}
	n := db.count("IKE SA reauthenticated")
	t.Logf("b reauthenticated %d times", n)
	if n < 2 {
		t.Errorf("b reauthenticated %d times in 60 s, want at least 2 (reauth_time 20s)", n)
	}
	// 60 s of Child SAs rekeyed every 2 to 3.2 s, IKE SAs every 4 to 6.1 s
	// (less the reauthentications).
	if childTotal < 15 || ikeTotal < 6 {
		t.Errorf("%d Child SA and %d IKE SA rekeys in 60 s, want at least 15 and 6", childTotal, ikeTotal)
	}
}

// blockIKE drops IKE (UDP 4500 with the non-ESP marker) in and out of ns,
// leaving ESP alone; unblock lifts it.
func blockIKE(t *testing.T, ns *netns) (unblock func()) {
	t.Helper()
	table := "lcblock"
	nft(t, ns, fmt.Sprintf(`table inet %s {
  chain in { type filter hook input priority 0; policy accept; udp dport 4500 @th,64,32 0 drop; }
  chain out { type filter hook output priority 0; policy accept; udp dport 4500 @th,64,32 0 drop; }
}`, table))
	return func() { ns.exec(t, "nft", "delete", "table", "inet", table) }
}

// TestLifecycleRekeyCollisions forces both ends to rekey the Child SA at
// the same moment, again and again, while streams flow both ways: IKE is
// blocked for a moment, goipsec rekey is issued to both daemons at once,
// and once IKE passes again their CREATE_CHILD_SA requests cross (RFC 7296
// section 2.8.1), for over 60 s of streams. No datagram is lost or
// duplicated, the capture on the veth holds nothing but ESP and IKE, the
// collisions are resolved, and in the end each side has exactly one IKE SA
// and one Child SA pair, mirroring the other's.
func TestLifecycleRekeyCollisions(t *testing.T) {
	// What a daemon logs (at debug) when it first sends a CREATE_CHILD_SA
	// request, not its retransmissions.
	rekeySent := regexp.MustCompile(`request sent\t\{[^}]*"exchange": "CREATE_CHILD_SA"`)
	needRoot(t, "nft", "dumpcap", "tshark")
	if testing.Short() {
		t.Skip("skipping: runs for more than a minute")
	}
	l := newLCLink(t)
	db := daemon(t, "goipsec-b", l.b, l.pb.yaml())
	da := daemon(t, "goipsec-a", l.a, l.pa.yaml())
	da.waitFor(t, "CHILD_SA established", 20*time.Second)
	db.waitFor(t, "CHILD_SA established", 20*time.Second)
	capt := startCapture(t, l.a, l.devA, 0)
	ab := startUDPStream(t, l.a, l.b, "10.79.0.2:7001", 2500*time.Microsecond)
	ba := startUDPStream(t, l.b, l.a, "10.79.0.1:7002", 2500*time.Microsecond)
	const rounds = 15 // 15 x 3.3 s + 12 s: over 60 s of streams
	for i := range rounds {
		unblock := blockIKE(t, l.a)
		// IKE passes again as soon as both daemons have sent their
		// CREATE_CHILD_SA request (not when the control commands return,
		// which a loaded machine can delay past the retransmissions).
		sentA, sentB := da.countRe(rekeySent), db.countRe(rekeySent)
		var wg sync.WaitGroup
		for _, p := range []*proc{da, db} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := p.ctl(t, "rekey", "link"); err != nil {
					t.Errorf("round %d: %s: goipsec rekey link: %v\n%s", i, p.name, err, out)
				}
			}()
		}
		for deadline := time.Now().Add(10 * time.Second); da.countRe(rekeySent) == sentA || db.countRe(rekeySent) == sentB; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("round %d: the daemons did not both send a CREATE_CHILD_SA request within 10 s", i)
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		unblock()
		wg.Wait()
		time.Sleep(3 * time.Second)
	}
	// Replaced SAs linger for the grace period (and a fallback switch
	// for twice that): wait them out before counting.
	time.Sleep(12 * time.Second)
	ab.check(t, "a to b")
	ba.check(t, "b to a")
	pcap := capt.stop(t)
	esp, ike := checkOnlyIPsec(t, capt, pcap, ab.marker, ba.marker)
	t.Logf("capture on %s: %d ESP and %d IKE frames", l.devA, esp, ike)
	if esp < ab.sent || ike == 0 {
		t.Errorf("capture: %d ESP frames for %d datagrams sent, %d IKE frames", esp, ab.sent, ike)
	}
	collisions := da.count("CHILD_SA rekey collision") + db.count("CHILD_SA rekey collision")
	rekeyed := da.count("CHILD_SA rekeyed")
	t.Logf("%d rounds: %d collisions logged, a installed %d rekeyed Child SAs", rounds, collisions, rekeyed)
	if collisions < rounds {
		t.Errorf("%d collisions logged in %d rounds of simultaneous rekeys, want at least one a round", collisions, rounds)
	}
	if rekeyed < rounds {
		t.Errorf("a installed %d rekeyed Child SAs in %d rounds", rekeyed, rounds)
	}
	checkSettled(t, l, da, db)
}

// TestLifecycleInitialContact kills one daemon with SIGKILL (it cannot
// delete its SAs) and starts it again: it initiates with INITIAL_CONTACT,
// and the other end, which has no dead peer detection here, deletes the
// stale IKE SA and its Child SAs, ending up with exactly the new ones;
// traffic flows again.
func TestLifecycleInitialContact(t *testing.T) {
	needRoot(t)
	l := newLCLink(t)
	db := daemon(t, "goipsec-b", l.b, l.pb.yaml())
	da := daemon(t, "goipsec-a", l.a, l.pa.yaml())
	da.waitFor(t, "CHILD_SA established", 20*time.Second)
	db.waitFor(t, "CHILD_SA established", 20*time.Second)
	da.stop(syscall.SIGKILL, 0)
	da2 := daemon(t, "goipsec-a2", l.a, l.pa.yaml())
	da2.waitFor(t, "CHILD_SA established", 20*time.Second)
	db.waitFor(t, "INITIAL_CONTACT from the peer: deleting its old IKE SA", 10*time.Second)
	ab := startUDPStream(t, l.a, l.b, "10.79.0.2:7001", 5*time.Millisecond)
	ba := startUDPStream(t, l.b, l.a, "10.79.0.1:7002", 5*time.Millisecond)
	time.Sleep(2 * time.Second)
	ab.check(t, "a to b after the restart")
	ba.check(t, "b to a after the restart")
	checkSettled(t, l, da2, db)
}

// TestLifecycleDPD kills one daemon with SIGKILL while the other checks
// liveness (dpd_delay 2s, retransmissions after 1 s, 1.8 s and 3.24 s):
// the survivor declares the peer dead within twice dpd_delay plus the
// retransmission sequence and removes its SAs; with dpd_action restart it
// keeps initiating, and once the killed daemon runs again (without
// initiating itself) the link comes back and traffic flows.
func TestLifecycleDPD(t *testing.T) {
	needRoot(t)
	l := newLCLink(t)
	// b initiates and watches; a only answers.
	l.pa.start = "none"
	l.pb.start, l.pb.dpd, l.pb.dpdAction = "start", "2s", "restart"
	da := daemon(t, "goipsec-a", l.a, l.pa.yaml())
	db := daemon(t, "goipsec-b", l.b, l.pb.yaml())
	da.waitFor(t, "CHILD_SA established", 20*time.Second)
	db.waitFor(t, "CHILD_SA established", 20*time.Second)
	killed := time.Now()
	da.stop(syscall.SIGKILL, 0)
	// Liveness is checked every dpd_delay once nothing came for that long,
	// so the check starts at most 2*dpd_delay after the last packet; it is
	// given up after the retransmissions: 1 + 1.8 + 3.24 s.
	bound := 2*2*time.Second + 6040*time.Millisecond
	db.waitFor(t, "dead peer", bound+5*time.Second)
	took := time.Since(killed)
	t.Logf("b declared a dead %v after the kill (bound %v)", took.Round(10*time.Millisecond), bound)
	if took > bound+time.Second {
		t.Errorf("b took %v to declare a dead, beyond dpd_delay twice plus the retransmissions (%v)", took, bound)
	}
	if sas := db.ikeSAs(t); len(sas) != 0 {
		t.Errorf("b still has IPsec SAs after declaring a dead: %v", sas)
	}
	time.Sleep(3 * time.Second) // b keeps trying meanwhile
	da2 := daemon(t, "goipsec-a2", l.a, l.pa.yaml())
	da2.waitFor(t, "CHILD_SA established", 60*time.Second)
	db.waitFor(t, "connection re-established", 10*time.Second)
	ab := startUDPStream(t, l.a, l.b, "10.79.0.2:7001", 5*time.Millisecond)
	ba := startUDPStream(t, l.b, l.a, "10.79.0.1:7002", 5*time.Millisecond)
	time.Sleep(2 * time.Second)
	ab.check(t, "a to b after the restart")
	ba.check(t, "b to a after the restart")
	checkSettled(t, l, da2, db)
}
