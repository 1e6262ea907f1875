//go:build linux

package e2e

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNAT runs a behind a NAT: a router namespace r masquerades a's
// private network (192.168.1.0/24) behind its public address 203.0.113.1,
// and b (203.0.113.2) knows a only as the NAT's address. The link works
// through the NAT, and while a TCP stream runs the NAT's mapping changes
// twice (a new masquerade rule with another port range and a conntrack
// flush, then a flush alone): the stream survives with its content intact,
// b follows a's new address and port after a's next authenticated packet,
// and b can reach a again (its own traffic goes to the new mapping).
func TestNAT(t *testing.T) {
	needRoot(t, "ping", "nft", "conntrack")
	for _, mode := range []string{"tunnel", "transport"} {
		t.Run(mode, func(t *testing.T) { testNAT(t, mode) })
	}
}

// testNAT is TestNAT in tunnel mode (10.9.0.1 <-> 10.9.0.2) or in
// transport mode between a's private address and b's public one (b's
// selector for a is a's private address; the NAT only changes the outer
// header, the ESP payload keeps the end-to-end addresses' checksums).
func testNAT(t *testing.T, mode string) {
	a, r, b := newNetns(t, "a"), newNetns(t, "r"), newNetns(t, "b")
	n := a.name[len(a.name)-2:]
	devA, devRA := "gv"+runID+n, "gv"+runID+n+"r"
	devRB, devB := "gv"+runID+n+"s", "gv"+runID+n+"b"
	veth(t, a, devA, []string{"192.168.1.2/24"}, r, devRA, []string{"192.168.1.1/24"})
	veth(t, r, devRB, []string{"203.0.113.1/24"}, b, devB, []string{"203.0.113.2/24"})
	a.ip(t, "route", "add", "default", "via", "192.168.1.1")
	r.sysctl(t, "net.ipv4.ip_forward=1")
	nft(t, r, fmt.Sprintf(`table ip e2enat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "%s" masquerade
	}
}`, devRB))

	ab, ba := newSA(0x3001), newSA(0x3002)
	pa := peer{local: "192.168.1.2", remote: "203.0.113.2", mode: mode, in: ba, out: ab, tunName: "gt" + runID}
	pb := peer{local: "203.0.113.2", remote: "203.0.113.1", mode: mode, in: ab, out: ba, tunName: "gt" + runID}
	innerA, innerB := "10.9.0.1", "10.9.0.2"
	if mode == "transport" {
		innerA, innerB = "192.168.1.2", "203.0.113.2"
	} else {
		pa.tunAddrs, pb.tunAddrs = []string{innerA + "/24"}, []string{innerB + "/24"}
	}
	pa.localTS, pa.remoteTS = []string{innerA}, []string{innerB}
	pb.localTS, pb.remoteTS = []string{innerB}, []string{innerA}
	daemon(t, "goipsec-a", a, pa.yaml())
	db := daemon(t, "goipsec-b", b, pb.yaml())

	// a speaks first: the NAT has no mapping for b's packets until then.
	if out, ok := a.ping(innerB, 3); !ok {
		t.Fatalf("ping through the NAT failed:\n%s\nconntrack:\n%s", out, conntrack(t, r, "-L"))
	}
	if out, ok := b.ping(innerA, 2); !ok {
		t.Fatalf("ping from b back through the NAT failed:\n%s", out)
	}
	t.Logf("NAT mapping before: %s", strings.TrimSpace(conntrack(t, r, "-L", "-p", "udp")))

	// conntrack's events show in the output if the test fails.
	start(t, "conntrack -E in r", r.cmdline("conntrack", "-E", "-p", "udp", "-o", "timestamp")...)
	var wg sync.WaitGroup
	wg.Add(1)
	var mappings []string
	var flushes []time.Time
	go func() {
		defer wg.Done()
		time.Sleep(2 * time.Second)
		// Another port range, and forget the old mapping.
		nft(t, r, fmt.Sprintf(`flush chain ip e2enat post
add rule ip e2enat post oifname "%s" meta l4proto udp masquerade to :40000-40999 random`, devRB))
		flushes = append(flushes, time.Now())
		conntrack(t, r, "-F")
		time.Sleep(3 * time.Second)
		mappings = append(mappings, conntrack(t, r, "-L", "-p", "udp"))
		// And again: a fresh random port.
		flushes = append(flushes, time.Now())
		conntrack(t, r, "-F")
		time.Sleep(2 * time.Second)
		mappings = append(mappings, conntrack(t, r, "-L", "-p", "udp"))
	}()
	s := newStream()
	res := transfer(t, a, b, net.JoinHostPort(innerB, strconv.Itoa(serverPort)), s, 0, 9*time.Second)
	wg.Wait()
	t.Logf("TCP through the NAT while its mapping changed twice: %v, SHA-256 verified", res)
	for i, m := range mappings {
		t.Logf("NAT mapping after change %d: %s", i+1, strings.TrimSpace(m))
	}

	// b followed a to the NAT's new ports.
	var ports []int
	var moves []time.Time
	for _, m := range regexp.MustCompile(`(\S+)\s+INFO.*peer endpoint changed.*"addr": "203\.0\.113\.1:(\d+)"`).FindAllStringSubmatch(db.out.String(), -1) {
		p, _ := strconv.Atoi(m[2])
		ports = append(ports, p)
		if at, err := time.Parse("2006-01-02T15:04:05.000Z0700", m[1]); err == nil {
			moves = append(moves, at)
		}
	}
	t.Logf("b saw a's endpoint move to ports %v", ports)
	for i, f := range flushes {
		for _, m := range moves {
			if !m.Before(f) {
				t.Logf("conntrack flush %d: b followed a's new mapping %v later", i+1, m.Sub(f).Round(time.Millisecond))
				break
			}
		}
	}
	if len(ports) == 0 || ports[0] < 40000 || ports[0] > 40999 {
		t.Errorf("b did not follow a to the new mapping (203.0.113.1:40000-40999): ports %v", ports)
	}
	// b's own traffic reaches a through the new mapping.
	if out, ok := b.ping(innerA, 3); !ok {
		t.Errorf("ping from b to a after the NAT changed failed:\n%s", out)
	}
	if out, ok := a.ping(innerB, 3); !ok {
		t.Errorf("ping from a to b after the NAT changed failed:\n%s", out)
	}
}

// nft loads a ruleset script into ns's nftables.
func nft(t *testing.T, ns *netns, script string) {
	t.Helper()
	argv := ns.cmdline("nft", "-f", "-")
	cmd := execCommand(argv...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nft -f: %v\n%s\n%s", err, script, out)
	}
}

// conntrack runs conntrack in ns and returns its output.
func conntrack(t *testing.T, ns *netns, args ...string) string {
	t.Helper()
	cmd := execCommand(ns.cmdline(append([]string{"conntrack"}, args...)...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("conntrack %v: %v\n%s%s", args, err, out, stderr.String())
	}
	return string(out)
}
