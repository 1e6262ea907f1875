//go:build linux

package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NetnsPrefix starts the name of every namespace this package makes:
// "goi-PID-LABID-ROLE", PID being the test process that made it.
const NetnsPrefix = "goi-"

var staleNetns = regexp.MustCompile(`^` + NetnsPrefix + `(\d+)-`)

// Lab owns the namespaces of one test. Every namespace it makes is deleted
// at the test's cleanup (after the processes in it are killed), also when
// the test fails.
type Lab struct {
	// ID is the random part of the lab's namespace names (8 hex digits).
	ID string

	t  testing.TB
	mu sync.Mutex
	ns []*Netns
}

// NewLab makes a lab for the test. It first deletes namespaces left behind
// by test processes of this package that no longer run (a test binary
// killed by a timeout runs no cleanup).
func NewLab(t testing.TB) *Lab {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip")
	SweepStaleNetns(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return &Lab{ID: hex.EncodeToString(b[:]), t: t}
}

// SweepStaleNetns deletes the namespaces whose names say that a process
// that has ended made them, killing whatever still runs in them.
func SweepStaleNetns(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		m := staleNetns.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM) {
			continue
		}
		n := &Netns{Name: e.Name()}
		if err := n.destroy(); err != nil {
			t.Logf("interop: deleting stale namespace %s: %v", n.Name, err)
		} else {
			t.Logf("interop: deleted stale namespace %s (its test process %d is gone)", n.Name, pid)
		}
	}
}

// Netns makes a network namespace named goi-PID-LABID-ROLE with loopback
// up. role should be short (a, b, router, ...).
func (l *Lab) Netns(role string) *Netns {
	l.t.Helper()
	n := &Netns{Name: fmt.Sprintf("%s%d-%s-%s", NetnsPrefix, os.Getpid(), l.ID, role), Role: role}
	if _, err := run("ip", "netns", "add", n.Name); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if err := n.destroy(); err != nil {
			l.t.Errorf("interop: %v", err)
		}
	})
	l.mu.Lock()
	l.ns = append(l.ns, n)
	l.mu.Unlock()
	n.IP(l.t, "link", "set", "lo", "up")
	// No IPv6 duplicate address detection on the interfaces to come: a
	// tentative link-local address stalls neighbour discovery for a
	// second.
	err := n.Do(func() error {
		for _, f := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
			if err := os.WriteFile(f, []byte("0"), 0o644); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("%s: %v", n.Name, err)
	}
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

// Link is [Lab.Link] for namespaces made elsewhere. IPv6 neighbours on
// the link are entered statically: neighbour discovery on a fresh veth
// loses its first second.
func Link(t testing.TB, a *Netns, ifa string, addrsA []string, b *Netns, ifb string, addrsB []string) {
	t.Helper()
	mustRun(t, "ip", "link", "add", ifa, "netns", a.Name, "type", "veth", "peer", "name", ifb, "netns", b.Name)
	type side struct {
		ns    *Netns
		dev   string
		addrs []string
	}
	sides := []side{{a, ifa, addrsA}, {b, ifb, addrsB}}
	for _, s := range sides {
		for _, addr := range s.addrs {
			s.ns.AddAddr(t, s.dev, addr)
		}
		s.ns.IP(t, "link", "set", s.dev, "up")
	}
	for i, s := range sides {
		peer := sides[1-i]
		var mac string
		for _, addr := range peer.addrs {
			if !strings.Contains(addr, ":") {
				continue
			}
			if mac == "" {
				mac = peer.ns.MAC(t, peer.dev)
			}
			ip, _, _ := strings.Cut(addr, "/")
			s.ns.IP(t, "-6", "neigh", "replace", ip, "lladdr", mac, "dev", s.dev, "nud", "permanent")
		}
	}
}

// MAC is the link-layer address of dev.
func (n *Netns) MAC(t testing.TB, dev string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	out := n.IP(t, "-j", "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show dev %s in %s: %v: %s", dev, n.Name, err, out)
	}
	return links[0].Address
}

// Netns is one network namespace, made by [Lab.Netns].
type Netns struct {
	// Name is the namespace's name for ip netns (and /run/netns/NAME).
	Name string
	// Role is the short name the test gave it.
	Role string
}

// destroy kills what runs in the namespace and deletes it.
func (n *Netns) destroy() error {
	for try := 0; try < 50; try++ {
		out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
		var live []int
		for _, p := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(p); err == nil && pid != os.Getpid() {
				if _, ok := procState(pid); ok {
					live = append(live, pid)
				}
			}
		}
		if len(live) == 0 {
			break
		}
		for _, pid := range live {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := run("ip", "netns", "del", n.Name); err != nil {
		if _, serr := os.Stat("/run/netns/" + n.Name); os.IsNotExist(serr) {
			return nil
		}
		return err
	}
	return nil
}

// String is the namespace's name.
func (n *Netns) String() string { return n.Name }

// Command is argv run inside the namespace (ip netns exec NAME argv...),
// not started.
func (n *Netns) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", n.Cmdline(argv...)[1:]...)
}

// Cmdline is argv prefixed so that it runs inside the namespace.
func (n *Netns) Cmdline(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.Name}, argv...)
}

// Output runs argv inside the namespace and returns its stdout; the error
// carries stderr.
func (n *Netns) Output(argv ...string) (string, error) {
	return run(n.Cmdline(argv...)...)
}

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
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	n.IP(t, args...)
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
	argv := []string{"ping", "-n", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2"}
	if strings.Contains(dst, ":") {
		argv = append(argv, "-6")
	}
	if src != "" {
		argv = append(argv, "-I", src)
	}
	argv = append(argv, dst)
	out, err := n.Command(argv...).CombinedOutput()
	if err == nil && !strings.Contains(string(out), fmt.Sprintf(" %d received", count)) {
		err = fmt.Errorf("not every reply came back")
	}
	if err != nil {
		return string(out), fmt.Errorf("ping %s -> %s in %s: %w", src, dst, n.Name, err)
	}
	return string(out), nil
}

// Do runs fn on an OS thread switched into the namespace (LockOSThread and
// setns). Sockets that fn creates belong to the namespace for their whole
// life, whatever goroutine uses them later; fn must not start goroutines
// that expect to be in the namespace.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", n.Name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Keep the thread locked: it ends with this goroutine
			// instead of serving others in the wrong namespace.
			errc <- fmt.Errorf("setns back from %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen is net.Listen inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket is net.ListenPacket inside the namespace.
func (n *Netns) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Dial connects from inside the namespace.
func (n *Netns) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListNetns is the names that ip netns list shows.
func ListNetns() ([]string, error) {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}
