package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netns is a network namespace made with ip netns add, deleted (with its
// interfaces, routes, nftables and conntrack state) when the test ends.
type netns struct {
	name string
}

var nsCounter atomic.Int32

// newNetns makes a namespace with a name unique to this run, loopback up.
func newNetns(t *testing.T, role string) *netns {
	t.Helper()
	n := &netns{name: fmt.Sprintf("gie2e-%s-%d%s", runID, nsCounter.Add(1), role)}
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	n.ip(t, "link", "set", "lo", "up")
	return n
}

// run runs a command and fails the test if it fails; it returns stdout.
func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("%s: %v\n%s%s", strings.Join(argv, " "), err, out, msg)
	}
	return string(out)
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
func (n *netns) cmdline(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// sysctl sets a sysctl in the namespace.
func (n *netns) sysctl(t *testing.T, kv string) {
	t.Helper()
	n.exec(t, "sysctl", "-q", "-w", kv)
}

// veth joins a and b with a veth pair named ifa (in a) and ifb (in b),
// gives each end its addresses (IPv6 without duplicate address detection)
// and brings both up.
func veth(t *testing.T, a *netns, ifa string, addrsA []string, b *netns, ifb string, addrsB []string) {
	t.Helper()
	run(t, "ip", "link", "add", ifa, "netns", a.name, "type", "veth", "peer", "name", ifb, "netns", b.name)
	for _, side := range []struct {
		ns    *netns
		dev   string
		addrs []string
	}{{a, ifa, addrsA}, {b, ifb, addrsB}} {
		for _, addr := range side.addrs {
			args := []string{"addr", "add", addr, "dev", side.dev}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			side.ns.ip(t, args...)
		}
		side.ns.ip(t, "link", "set", side.dev, "up")
	}
}

// do runs fn on an OS thread switched into the namespace. Sockets fn
// creates stay in the namespace for their whole life, whatever thread later
// uses them.
func (n *netns) do(fn func() error) error {
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
		target, err := unix.Open("/run/netns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", n.name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it ends with this goroutine
			// rather than serve others in the wrong namespace.
			errc <- fmt.Errorf("setns back from %s: %w", n.name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// listen opens a listener inside the namespace.
func (n *netns) listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// dial connects from inside the namespace.
func (n *netns) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ping sends count echo requests to addr from inside the namespace and
// returns ping's output and whether every reply came back.
func (n *netns) ping(addr string, count int) (string, bool) {
	argv := n.cmdline("ping", "-n", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", addr)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err == nil && strings.Contains(string(out), fmt.Sprintf("%d received", count))
}

// execCommand is exec.Command on an argv.
func execCommand(argv ...string) *exec.Cmd { return exec.Command(argv[0], argv[1:]...) }
