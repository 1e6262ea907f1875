//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/netlab"
)

// netnsPrefix starts this package's namespace names:
// ge2e-PID-RUNID-NROLE, so that [netlab.SweepStale] finds those of a run
// that was killed. (It is not the gie2e of the names without a PID, so
// that a sweep never takes one of those for a dead run's.)
const netnsPrefix = "ge2e"

// netns is a network namespace (a [netlab.Netns]) deleted, with what runs
// in it, its interfaces, routes, nftables and conntrack state, when the
// test ends.
type netns struct {
	name string
	nl   *netlab.Netns
}

var (
	nsCounter atomic.Int32
	sweepOnce sync.Once
)

// newNetns makes a namespace with a name unique to this run, loopback up.
// The first one of the run sweeps those that killed runs left behind.
func newNetns(t *testing.T, role string) *netns {
	t.Helper()
	sweepOnce.Do(func() {
		swept, err := netlab.SweepStale(netnsPrefix)
		if len(swept) > 0 || err != nil {
			t.Logf("deleted stale namespaces %v (%v)", swept, err)
		}
	})
	name := fmt.Sprintf("%s-%d-%s-%d%s", netnsPrefix, os.Getpid(), runID, nsCounter.Add(1), role)
	nl, err := netlab.NewNetns(name, role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nl.Destroy(); err != nil {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
	})
	return &netns{name: name, nl: nl}
}

// run runs a command and fails the test if it fails; it returns stdout.
func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := netlab.Run(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ip runs ip -n NS ARGS.
func (n *netns) ip(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "-n", n.name}, args...)...)
}

// exec runs a command in the namespace.
func (n *netns) exec(t *testing.T, argv ...string) string {
	t.Helper()
	return run(t, n.cmdline(argv...)...)
}

// cmdline is argv run inside the namespace.
func (n *netns) cmdline(argv ...string) []string { return n.nl.Cmdline(argv...) }

// sysctl sets a sysctl in the namespace.
func (n *netns) sysctl(t *testing.T, kv string) {
	t.Helper()
	n.exec(t, "sysctl", "-q", "-w", kv)
}

// veth joins a and b with a veth pair named ifa (in a) and ifb (in b),
// gives each end its addresses (IPv6 without duplicate address detection)
// and brings both up ([netlab.Link]).
func veth(t *testing.T, a *netns, ifa string, addrsA []string, b *netns, ifb string, addrsB []string) {
	t.Helper()
	if err := netlab.Link(a.nl, ifa, addrsA, b.nl, ifb, addrsB); err != nil {
		t.Fatal(err)
	}
}

// do runs fn on an OS thread switched into the namespace. Sockets fn
// creates stay in the namespace for their whole life, whatever thread later
// uses them.
func (n *netns) do(fn func() error) error { return n.nl.Do(fn) }

// listen opens a listener inside the namespace.
func (n *netns) listen(network, addr string) (net.Listener, error) {
	return n.nl.Listen(network, addr)
}

// dial connects from inside the namespace.
func (n *netns) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.nl.Dial(ctx, &net.Dialer{}, network, addr)
}

// ping sends count echo requests to addr from inside the namespace and
// returns ping's output and whether every reply came back.
func (n *netns) ping(addr string, count int) (string, bool) {
	out, err := n.nl.Ping("", addr, count)
	return out, err == nil
}

// execCommand is exec.Command on an argv.
func execCommand(argv ...string) *exec.Cmd { return exec.Command(argv[0], argv[1:]...) }
