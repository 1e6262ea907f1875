//go:build linux

package interop

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/netlab"
)

// NetnsPrefix starts the name of every namespace this package makes:
// "goi-PID-LABID-ROLE", PID being the test process that made it.
const NetnsPrefix = "goi-"

// labPrefix is NetnsPrefix as a [netlab.Lab] prefix.
var labPrefix = strings.TrimSuffix(NetnsPrefix, "-")

// Lab owns the namespaces of one test (a [netlab.Lab] that reports
// through testing.TB). Every namespace it makes is deleted at the test's
// cleanup (after the processes in it are killed), also when the test
// fails.
type Lab struct {
	// ID is the random part of the lab's namespace names (hex digits).
	ID string

	t   testing.TB
	lab *netlab.Lab
	mu  sync.Mutex
	ns  []*Netns
}

// NewLab makes a lab for the test. It first deletes namespaces left behind
// by test processes of this package that no longer run (a test binary
// killed by a timeout runs no cleanup).
func NewLab(t testing.TB) *Lab {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip")
	lab, swept, err := netlab.NewLab(labPrefix)
	logSwept(t, swept, err)
	if lab == nil {
		t.Fatalf("interop: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("interop: %v", err)
		}
	})
	return &Lab{ID: lab.ID, t: t, lab: lab}
}

// SweepStaleNetns deletes the namespaces whose names say that a process
// that has ended made them, killing whatever still runs in them.
func SweepStaleNetns(t testing.TB) {
	t.Helper()
	swept, err := netlab.SweepStale(labPrefix)
	logSwept(t, swept, err)
}

func logSwept(t testing.TB, swept []string, err error) {
	t.Helper()
	for _, name := range swept {
		t.Logf("interop: deleted stale namespace %s (its test process is gone)", name)
	}
	if err != nil {
		t.Logf("interop: deleting stale namespaces: %v", err)
	}
}

// Netns makes a network namespace named goi-PID-LABID-ROLE with loopback
// up and no IPv6 duplicate address detection. role should be short (a,
// b, router, ...).
func (l *Lab) Netns(role string) *Netns {
	l.t.Helper()
	nn, err := l.lab.Netns(role)
	if err != nil {
		l.t.Fatalf("interop: %v", err)
	}
	n := &Netns{Name: nn.Name, Role: nn.Role}
	l.mu.Lock()
	l.ns = append(l.ns, n)
	l.mu.Unlock()
	return n
}

// Namespaces are the lab's namespaces so far, in the order made.
func (l *Lab) Namespaces() []*Netns {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Netns(nil), l.ns...)
}

// Link joins a and b with a veth pair: interface ifa in a with addrsA,
// ifb in b with addrsB (CIDR notation; IPv6 ones without duplicate address
// detection), both up. Names are per namespace, at most 15 bytes.
func (l *Lab) Link(a *Netns, ifa string, addrsA []string, b *Netns, ifb string, addrsB []string) {
	l.t.Helper()
	Link(l.t, a, ifa, addrsA, b, ifb, addrsB)
}

// Link is [Lab.Link] for namespaces made elsewhere ([netlab.Link]: IPv6
// neighbours on the link are entered statically).
func Link(t testing.TB, a *Netns, ifa string, addrsA []string, b *Netns, ifb string, addrsB []string) {
	t.Helper()
	if err := netlab.Link(a.nl(), ifa, addrsA, b.nl(), ifb, addrsB); err != nil {
		t.Fatalf("interop: %v", err)
	}
}

// Netns is one network namespace, made by [Lab.Netns]; its mechanics are
// [netlab.Netns]'s.
type Netns struct {
	// Name is the namespace's name for ip netns (and /run/netns/NAME).
	Name string
	// Role is the short name the test gave it.
	Role string
}

// nl is the namespace as a [netlab.Netns].
func (n *Netns) nl() *netlab.Netns { return &netlab.Netns{Name: n.Name, Role: n.Role} }

// MAC is the link-layer address of dev.
func (n *Netns) MAC(t testing.TB, dev string) string {
	t.Helper()
	mac, err := n.nl().MAC(dev)
	if err != nil {
		t.Fatalf("interop: %v", err)
	}
	return mac
}

// String is the namespace's name.
func (n *Netns) String() string { return n.Name }

// Command is argv run inside the namespace (ip netns exec NAME argv...),
// not started.
func (n *Netns) Command(argv ...string) *exec.Cmd {
	argv = n.Cmdline(argv...)
	return exec.Command(argv[0], argv[1:]...)
}

// Cmdline is argv prefixed so that it runs inside the namespace.
func (n *Netns) Cmdline(argv ...string) []string { return n.nl().Cmdline(argv...) }

// Output runs argv inside the namespace and returns its stdout; the error
// carries stderr.
func (n *Netns) Output(argv ...string) (string, error) { return n.nl().Output(argv...) }

// Run runs argv inside the namespace, fails the test if it fails, and
// returns its stdout.
func (n *Netns) Run(t testing.TB, argv ...string) string {
	t.Helper()
	return mustRun(t, n.Cmdline(argv...)...)
}

// IP runs ip -n NAME args... and fails the test if it fails.
func (n *Netns) IP(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, append([]string{"ip", "-n", n.Name}, args...)...)
}

// AddAddr adds an address (CIDR) to dev; IPv6 addresses skip duplicate
// address detection.
func (n *Netns) AddAddr(t testing.TB, dev, cidr string) {
	t.Helper()
	if err := n.nl().AddAddr(dev, cidr); err != nil {
		t.Fatalf("interop: %v", err)
	}
}

// Sysctl sets key=value inside the namespace.
func (n *Netns) Sysctl(t testing.TB, kv string) {
	t.Helper()
	n.Run(t, "sysctl", "-q", "-w", kv)
}

// Nft loads an nftables ruleset (nft -f -) inside the namespace.
func (n *Netns) Nft(t testing.TB, ruleset string) {
	t.Helper()
	if _, err := runEnv(nil, ruleset, n.Cmdline("nft", "-f", "-")...); err != nil {
		t.Fatalf("nft in %s: %v\nruleset:\n%s", n.Name, err, ruleset)
	}
}

// Start runs argv inside the namespace in the background (see [StartProc]).
func (n *Netns) Start(t testing.TB, name string, argv ...string) *Proc {
	t.Helper()
	return StartProc(t, name, nil, n.Cmdline(argv...)...)
}

// Ping sends count ICMP echo requests from src (an address of the
// namespace; "" for the kernel's choice) to dst, 0.2 s apart, and returns
// ping's output and nil if every reply came back.
func (n *Netns) Ping(src, dst string, count int) (string, error) {
	return n.nl().Ping(src, dst, count)
}

// Do runs fn on an OS thread switched into the namespace (LockOSThread and
// setns). Sockets that fn creates belong to the namespace for their whole
// life, whatever goroutine uses them later; fn must not start goroutines
// that expect to be in the namespace.
func (n *Netns) Do(fn func() error) error { return n.nl().Do(fn) }

// Listen is net.Listen inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	return n.nl().Listen(network, addr)
}

// ListenPacket is net.ListenPacket inside the namespace.
func (n *Netns) ListenPacket(network, addr string) (net.PacketConn, error) {
	return n.nl().ListenPacket(network, addr)
}

// Dial connects from inside the namespace.
func (n *Netns) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.nl().Dial(ctx, &net.Dialer{}, network, addr)
}

// ListNetns is the names that ip netns list shows.
func ListNetns() ([]string, error) { return netlab.Names("") }
