//go:build linux

package daemon

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/interop"
)

// fragCreates returns the IPv4 FragCreates counter of a namespace.
func fragCreates(t *testing.T, ns *interop.Netns) int {
	t.Helper()
	out, err := ns.Output("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "FragCreates" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	t.Fatalf("no FragCreates in /proc/net/snmp:\n%s", out)
	return 0
}

// TestIKEDaemonsHybridNetns runs two goipsec daemons in their own network
// namespaces over a veth with an MTU of 1280, on the standard ports, with
// x25519 + ML-KEM-1024: the IKE_INTERMEDIATE messages (a 1568-octet KE
// payload each) exceed the MTU and cross as IKE fragments (RFC 7383) from
// both ends, traffic flows through the Child SA, and a Child SA rekey with
// ML-KEM-1024 PFS in IKE_FOLLOWUP_KE works.
func TestIKEDaemonsHybridNetns(t *testing.T) {
	tp := interop.NewTopology(t, interop.TopologyOptions{})
	tp.Left.IP(t, "link", "set", "dev", tp.LeftDev, "mtu", "1280")
	tp.Right.IP(t, "link", "set", "dev", tp.RightDev, "mtu", "1280")
	const prop, esp = "aes256gcm16-prfsha384-x25519-ke1_mlkem1024", "aes256gcm16-x25519-ke1_mlkem1024"
	a := ikeTestPeer{addr: tp.LeftAddr.String(), remote: tp.RightAddr.String(), ike: prop, esp: esp,
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "pq secret"}
	b := ikeTestPeer{addr: tp.RightAddr.String(), remote: tp.LeftAddr.String(), ike: prop, esp: esp,
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "pq secret"}
	p := &ikeDaemons{}
	fragsBefore := fragCreates(t, tp.Left) + fragCreates(t, tp.Right)
	for _, x := range []struct {
		name string
		peer ikeTestPeer
		ns   *interop.Netns
		d    **Daemon
	}{{"b", b, tp.Right, &p.b}, {"a", a, tp.Left, &p.a}} {
		cfg, err := config.Parse(x.name, []byte(x.peer.yaml()))
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(x.name))
		if err != nil {
			t.Fatal(err)
		}
		serveIn(t, x.ns, d)
		*x.d = d
	}
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	for _, d := range []*Daemon{p.a, p.b} {
		if _, _, got := ikeSPIs(t, d); got != prop {
			t.Fatalf("IKE SA proposal %q, want %q", got, prop)
		}
	}
	// The IKE_INTERMEDIATE messages (over 1600 octets with ML-KEM-1024)
	// go as IKE fragments of at most 1280 octets (the default
	// fragment_size), both ways: no IP fragment is needed.
	if n := fragCreates(t, tp.Left) + fragCreates(t, tp.Right) - fragsBefore; n != 0 {
		t.Errorf("%d IP fragments made: IKE fragmentation should have kept every datagram within the 1280-octet MTU", n)
	}
	for _, d := range []*Daemon{p.a, p.b} {
		if st := d.IKE().Stats(); st.FragmentsSent == 0 {
			t.Errorf("no IKE fragments sent: %+v", st)
		}
	}
	exchange(t, p, 256<<10)
	old := outSPI(p.a)
	if err := p.b.Rekey(context.Background(), "link"); err != nil {
		t.Fatal(err)
	}
	waitSPIChange(t, p.a, old)
	exchange(t, p, 64<<10)
}
