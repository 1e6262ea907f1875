//go:build linux

package netlab

import (
	"bytes"
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
	"time"

	"golang.org/x/sys/unix"
)

// Lab owns namespaces, processes, directories and other resources made
// for one run. Close releases them all in reverse order of acquisition;
// it is safe to call more than once and from several goroutines.
type Lab struct {
	// Prefix starts the names of the lab's namespaces:
	// PREFIX-PID-ID-ROLE.
	Prefix string
	// ID is the random part of the names (6 hex digits).
	ID string

	mu   sync.Mutex
	undo []func() error
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,5}$`)

// NewLab makes a lab whose namespaces are named PREFIX-PID-ID-ROLE. prefix
// is 1 to 6 lower-case letters and digits. It first deletes the
// namespaces of this prefix that a process no longer running left behind
// (a process killed with SIGKILL runs no cleanup), and reports what it
// swept through the returned list.
func NewLab(prefix string) (*Lab, []string, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, nil, fmt.Errorf("netlab: prefix %q: want 1 to 6 lower-case letters and digits", prefix)
	}
	if err := Check(); err != nil {
		return nil, nil, err
	}
	swept, err := SweepStale(prefix)
	var b [3]byte
	if _, rerr := rand.Read(b[:]); rerr != nil {
		return nil, nil, rerr
	}
	return &Lab{Prefix: prefix, ID: hex.EncodeToString(b[:])}, swept, err
}

// Check returns an error that says what is missing unless the process
// runs as root with ip (iproute2) on PATH.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, veth links, TUN devices): run it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip not found on PATH (Debian: apt-get install iproute2)")
	}
	return nil
}

// Defer registers fn to run when the lab closes, before what was
// registered earlier.
func (l *Lab) Defer(fn func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.undo = append(l.undo, fn)
}

// Close undoes everything, last acquired first, and returns the errors
// joined.
func (l *Lab) Close() error {
	l.mu.Lock()
	undo := l.undo
	l.undo = nil
	l.mu.Unlock()
	var errs []error
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// TempDir makes a directory (os.MkdirTemp in the system's temporary
// directory) removed when the lab closes.
func (l *Lab) TempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	l.Defer(func() error { return os.RemoveAll(dir) })
	return dir, nil
}

// Netns makes a network namespace PREFIX-PID-ID-ROLE (see [NewNetns]). It
// is deleted when the lab closes, after whatever still runs inside is
// killed.
func (l *Lab) Netns(role string) (*Netns, error) {
	n, err := NewNetns(fmt.Sprintf("%s-%d-%s-%s", l.Prefix, os.Getpid(), l.ID, role), role)
	if err != nil {
		return nil, err
	}
	l.Defer(n.Destroy)
	return n, nil
}

// Link joins a and b with a veth pair (see the function [Link]).
func (l *Lab) Link(a *Netns, ifa string, addrsA []string, b *Netns, ifb string, addrsB []string) error {
	return Link(a, ifa, addrsA, b, ifb, addrsB)
}

// Start runs argv in the background (see [StartProc]); the lab stops it
// (SIGTERM to its process group, SIGKILL after wait) when it closes.
func (l *Lab) Start(name string, env []string, wait time.Duration, argv ...string) (*Proc, error) {
	p, err := StartProc(name, env, argv...)
	if err != nil {
		return nil, err
	}
	l.Defer(func() error {
		p.Stop(syscall.SIGTERM, wait)
		return nil
	})
	return p, nil
}

// NewNetns makes the network namespace name (ip netns add) with loopback
// up and IPv6 duplicate address detection off (a tentative link-local
// address stalls neighbour discovery for a second). The caller deletes it
// with [Netns.Destroy]; if NewNetns fails, nothing is left behind.
func NewNetns(name, role string) (*Netns, error) {
	n := &Netns{Name: name, Role: role}
	if len(name) > 64 {
		return nil, fmt.Errorf("netlab: namespace name %q too long", name)
	}
	if _, err := Run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	err := n.IP("link", "set", "lo", "up")
	if err == nil {
		err = n.Do(func() error {
			for _, f := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
				if err := os.WriteFile(f, []byte("0"), 0o644); err != nil && !os.IsNotExist(err) {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("netlab: setting up %s: %w", name, err), n.Destroy())
	}
	return n, nil
}

// Link joins a and b with a veth pair: ifa in a with addrsA, ifb in b with
// addrsB (CIDR; IPv6 without duplicate address detection), both up. Each
// side's IPv6 neighbours on the link are entered statically: neighbour
// discovery on a fresh veth loses its first second. Interface names are
// at most 15 bytes and unique in the root namespace, where the pair is
// created.
func Link(a *Netns, ifa string, addrsA []string, b *Netns, ifb string, addrsB []string) error {
	if len(ifa) > 15 || len(ifb) > 15 {
		return fmt.Errorf("netlab: interface names %q, %q: at most 15 bytes", ifa, ifb)
	}
	if _, err := Run("ip", "link", "add", ifa, "netns", a.Name, "type", "veth", "peer", "name", ifb, "netns", b.Name); err != nil {
		return err
	}
	type side struct {
		ns    *Netns
		dev   string
		addrs []string
	}
	sides := []side{{a, ifa, addrsA}, {b, ifb, addrsB}}
	for _, s := range sides {
		for _, addr := range s.addrs {
			if err := s.ns.AddAddr(s.dev, addr); err != nil {
				return err
			}
		}
		if err := s.ns.IP("link", "set", s.dev, "up"); err != nil {
			return err
		}
	}
	for i, s := range sides {
		peer := sides[1-i]
		var mac string
		for _, addr := range peer.addrs {
			if !strings.Contains(addr, ":") {
				continue
			}
			if mac == "" {
				var err error
				if mac, err = peer.ns.MAC(peer.dev); err != nil {
					return err
				}
			}
			ip, _, _ := strings.Cut(addr, "/")
			if err := s.ns.IP("-6", "neigh", "replace", ip, "lladdr", mac, "dev", s.dev, "nud", "permanent"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Netns is a network namespace made by [Lab.Netns] or [NewNetns].
type Netns struct {
	// Name is the name for ip netns (/run/netns/NAME).
	Name string
	// Role is the short name the lab was given for it.
	Role string
}

// String is the namespace's name.
func (n *Netns) String() string { return n.Name }

// Destroy kills whatever runs in the namespace and deletes it; a
// namespace already gone is no error.
func (n *Netns) Destroy() error {
	for try := 0; try < 50; try++ {
		out, _ := exec.Command("ip", "netns", "pids", n.Name).Output()
		var live []int
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
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
	if _, err := Run("ip", "netns", "del", n.Name); err != nil {
		if _, serr := os.Stat("/run/netns/" + n.Name); os.IsNotExist(serr) {
			return nil
		}
		return err
	}
	return nil
}

// Cmdline is argv prefixed to run inside the namespace (ip netns exec,
// which execs argv in place: the process's PID is argv's).
func (n *Netns) Cmdline(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.Name}, argv...)
}

// Output runs argv inside the namespace and returns its stdout; the error
// carries stderr.
func (n *Netns) Output(argv ...string) (string, error) { return Run(n.Cmdline(argv...)...) }

// IP runs ip -n NAME args....
func (n *Netns) IP(args ...string) error {
	_, err := Run(append([]string{"ip", "-n", n.Name}, args...)...)
	return err
}

// AddAddr adds an address (CIDR) to dev; IPv6 ones skip duplicate address
// detection.
func (n *Netns) AddAddr(dev, cidr string) error {
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	return n.IP(args...)
}

// Do runs fn on an OS thread switched into the namespace (n nil: on this
// goroutine, in the process's own namespace). Sockets fn creates belong to
// the namespace for their whole life, whatever goroutine uses them later;
// fn must not start goroutines that expect to be in the namespace.
func (n *Netns) Do(fn func() error) error {
	if n == nil {
		return fn()
	}
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

// Listen is net.Listen inside the namespace (n nil: here).
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket is net.ListenPacket inside the namespace (n nil: here).
func (n *Netns) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Dial connects from inside the namespace (n nil: here) with d.
func (n *Netns) Dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Names lists the namespaces (ip netns list) whose names start with
// prefix + "-"; an empty prefix lists all.
func Names(prefix string) ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if prefix == "" || strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// SweepStale deletes the namespaces of prefix whose names say that a
// process no longer running made them, killing what still runs in them,
// and returns their names.
func SweepStale(prefix string) ([]string, error) {
	names, err := Names(prefix)
	if err != nil {
		return nil, err
	}
	var swept []string
	var errs []error
	for _, name := range names {
		f := strings.SplitN(strings.TrimPrefix(name, prefix+"-"), "-", 2)
		pid, perr := strconv.Atoi(f[0])
		if perr != nil || pid == os.Getpid() || Alive(pid) {
			continue
		}
		if err := (&Netns{Name: name}).Destroy(); err != nil {
			errs = append(errs, err)
			continue
		}
		swept = append(swept, name)
	}
	return swept, errors.Join(errs...)
}

// Alive reports whether process pid exists (zombies included).
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Run runs argv and returns its stdout, or an error that carries its
// stderr.
func Run(argv ...string) (string, error) { return RunEnv(nil, "", argv...) }

// RunEnv is Run with extra environment entries (KEY=VALUE) and standard
// input.
func RunEnv(env []string, stdin string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(cmd.Environ(), env...)
	}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stdout.String()+stderr.String()))
	}
	return stdout.String(), nil
}

// linkShow is ip -j link show dev DEV in the namespace.
type linkShow struct {
	MTU     int    `json:"mtu"`
	Address string `json:"address"`
}

func (n *Netns) link(dev string) (linkShow, error) {
	out, err := Run("ip", "-n", n.Name, "-j", "link", "show", "dev", dev)
	if err != nil {
		return linkShow{}, err
	}
	var links []linkShow
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return linkShow{}, fmt.Errorf("ip -j link show dev %s in %s: %v: %s", dev, n.Name, err, out)
	}
	return links[0], nil
}

// MTU is the MTU of dev in the namespace.
func (n *Netns) MTU(dev string) (int, error) {
	l, err := n.link(dev)
	return l.MTU, err
}

// MAC is the link-layer address of dev in the namespace.
func (n *Netns) MAC(dev string) (string, error) {
	l, err := n.link(dev)
	return l.Address, err
}

// Ping sends count ICMP echo requests from src (an address of the
// namespace; "" for the kernel's choice) to dst, 0.2 s apart, and returns
// ping's output, and nil if every reply came back.
func (n *Netns) Ping(src, dst string, count int) (string, error) {
	argv := []string{"ping", "-n", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2"}
	if strings.Contains(dst, ":") {
		argv = append(argv, "-6")
	}
	if src != "" {
		argv = append(argv, "-I", src)
	}
	argv = n.Cmdline(append(argv, dst)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err == nil && !strings.Contains(string(out), fmt.Sprintf(" %d received", count)) {
		err = errors.New("not every reply came back")
	}
	if err != nil {
		return string(out), fmt.Errorf("ping %s -> %s in %s: %w", src, dst, n.Name, err)
	}
	return string(out), nil
}
