//go:build linux

package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/control"
)

const sampleStatus = `Name:	goipsec
Umask:	0022
State:	S (sleeping)
Tgid:	4242
Uid:	65534	65534	65534	65534
Gid:	65534	65534	65534	65534
FDSize:	64
Groups:	65534 
NoNewPrivs:	0
CapInh:	0000000000000000
CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	000001ffffffffff
CapAmb:	0000000000000000
`

func TestParseStatus(t *testing.T) {
	nobody := &Credentials{User: "nobody", UID: 65534, GID: 65534, Groups: []int{65534}}
	st, err := parseStatus(sampleStatus)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.check(nobody); err != nil {
		t.Errorf("dropped status rejected: %v", err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{"Uid:	65534	65534	65534	65534", "Uid:	65534	65534	0	65534", "uids (real, effective, saved, fs) [65534 65534 0 65534], want 65534"},
		{"Gid:	65534	65534	65534	65534", "Gid:	65534	0	65534	65534", "gids"},
		{"Groups:	65534 ", "Groups:	0 65534", "supplementary groups [0 65534], want 65534"},
		{"CapEff:	0000000000000000", "CapEff:	0000000000001000", "capabilities left: permitted 0x0, effective 0x1000, ambient 0x0"},
		{"CapPrm:	0000000000000000", "CapPrm:	0000000000001000", "permitted 0x1000"},
		{"CapAmb:	0000000000000000", "CapAmb:	0000000000001000", "ambient 0x1000"},
	} {
		st, err := parseStatus(strings.Replace(sampleStatus, tc.from, tc.to, 1))
		if err != nil {
			t.Errorf("%s: %v", tc.to, err)
			continue
		}
		if err := st.check(nobody); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.to, err, tc.want)
		}
	}
	// CapInh alone grants nothing without an execve: accepted, reported.
	st, _ = parseStatus(strings.Replace(sampleStatus, "CapInh:	0000000000000000", "CapInh:	0000000000001000", 1))
	if err := st.check(nobody); err != nil || st.capInh != 0x1000 {
		t.Errorf("CapInh: %v, %#x", err, st.capInh)
	}
	if _, err := parseStatus("Uid:	0	0	0	0\n"); err == nil {
		t.Error("status without Gid, Groups and capabilities accepted")
	}
}

func TestLookupCredentials(t *testing.T) {
	if c, err := LookupCredentials("", ""); c != nil || err != nil {
		t.Errorf(`LookupCredentials("", ""): %v, %v`, c, err)
	}
	for _, tc := range []struct{ user, group, want string }{
		{"", "nogroup", "daemon.group: needs daemon.user"},
		{"root", "", "is uid 0 (root): switching to it drops nothing"},
		{"0", "", "is uid 0 (root)"},
		{"no-such-user-goipsec", "", `daemon.user: user: unknown user no-such-user-goipsec`},
		{"4000000", "", "daemon.user: no user with ID 4000000 in the user database: give daemon.group (or --group) as well"},
		{"4000000", "0", "would keep group 0 (root)"},
		{"4000000", "no-such-group-goipsec", "daemon.group: group: unknown group no-such-group-goipsec"},
	} {
		c, err := LookupCredentials(tc.user, tc.group)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LookupCredentials(%q, %q): %v, %v; want an error with %q", tc.user, tc.group, c, err, tc.want)
		}
	}
	c, err := LookupCredentials("4000000", "4000001")
	if err != nil || c.UID != 4000000 || c.GID != 4000001 || len(c.Groups) != 1 || c.Groups[0] != 4000001 {
		t.Errorf("numeric user and group outside the database: %+v, %v", c, err)
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody here")
	}
	c, err = LookupCredentials("nobody", "")
	if err != nil || c.UID != 65534 || c.Groups[0] != c.GID {
		t.Errorf("nobody: %+v, %v", c, err)
	}
	if c.String() != fmt.Sprintf("nobody(65534)/%d(%d)", c.GID, c.GID) {
		t.Errorf("String: %s", c)
	}
}

func TestCanSwitch(t *testing.T) {
	self := &Credentials{User: "self", UID: os.Getuid(), GID: os.Getgid()}
	other := &Credentials{User: "other", UID: 4000000, GID: 4000000}
	switch {
	case os.Geteuid() == 0:
		// Root with CAP_SETUID and CAP_SETGID (the test runs with them).
		if err := canSwitch(other); err != nil {
			t.Errorf("as root: %v", err)
		}
	default:
		if err := canSwitch(other); err == nil || !strings.Contains(err.Error(), "needs root, and the daemon runs as uid") {
			t.Errorf("as uid %d to another user: %v", os.Geteuid(), err)
		}
		if err := canSwitch(self); err != nil && !strings.Contains(err.Error(), "holds capabilities") {
			t.Errorf("as uid %d to itself: %v", os.Geteuid(), err)
		}
	}
}

// helperEnv names the configuration file a helper daemon runs.
const helperEnv = "GOIPSEC_PRIVDROP_HELPER"

// TestPrivdropHelper is not a test: TestPrivdropNetns runs the test binary
// with it as a daemon inside a network namespace.
func TestPrivdropHelper(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("the daemon of TestPrivdropNetns")
	}
	os.Exit(runHelper(path))
}

func runHelper(path string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	cfg, err := config.Load(path)
	if err != nil {
		return fail(err)
	}
	log, err := zap.NewDevelopment()
	if err != nil {
		return fail(err)
	}
	creds, err := LookupCredentials(cfg.Daemon.User, cfg.Daemon.Group)
	if err != nil {
		return fail(err)
	}
	d, err := New(cfg, log)
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := d.RunAs(ctx, creds); err != nil {
		return fail(err)
	}
	fmt.Fprintln(os.Stderr, "helper: clean exit")
	return 0
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// helperDaemon is a daemon run by the test binary in a namespace.
type helperDaemon struct {
	name string
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error
}

func startHelper(t *testing.T, name, ns, cfgPath string) *helperDaemon {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &helperDaemon{name: name, done: make(chan struct{})}
	h.cmd = exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestPrivdropHelper$")
	h.cmd.Env = append(os.Environ(), helperEnv+"="+cfgPath)
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("---- %s output:\n%s", name, h.out.String())
		}
	})
	return h
}

func (h *helperDaemon) stop() {
	select {
	case <-h.done:
		return
	default:
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
	}
}

func (h *helperDaemon) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(h.out.String(), s) {
		select {
		case <-h.done:
			t.Fatalf("%s ended (%v) before logging %q:\n%s", h.name, h.err, s, h.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q:\n%s", h.name, s, h.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

const privdropConfig = `
connections:
  gw:
    local_addrs: [%[1]s]
    remote_addrs: [%[2]s]
    local_port: 4500
    remote_port: 4500
    children:
      net:
        local_ts: [%[3]s]
        remote_ts: [%[4]s]
        manual:
          enc: aes128gcm16
          in:  {spi: %[5]s}
          out: {spi: %[6]s}
tun:
  name: gpd0
  addresses: [%[7]s]
control:
  socket: %[8]s
`

// TestPrivdropNetns runs a tunnel between two network namespaces whose
// left daemon drops to nobody after setting up: traffic flows, every
// thread of the daemon shows nobody's IDs and no capability, root still
// controls it, and when it stops the TUN device goes while the
// fail-closed route stays (the right daemon, still root, removes its own).
func TestPrivdropNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (network namespaces, TUN, setuid)")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: no %s (Debian: apt-get install iproute2 iputils-ping)", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: no /dev/net/tun: %v", err)
	}
	nobody, err := LookupCredentials("nobody", "")
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	nsA, nsB := "gpd-"+id+"-a", "gpd-"+id+"-b"
	for _, ns := range []string{nsA, nsB} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "link", "add", "gpa"+id, "type", "veth", "peer", "name", "gpb"+id)
	run(t, "ip", "link", "set", "gpa"+id, "netns", nsA)
	run(t, "ip", "link", "set", "gpb"+id, "netns", nsB)
	run(t, "ip", "-n", nsA, "addr", "add", "192.168.222.1/24", "dev", "gpa"+id)
	run(t, "ip", "-n", nsB, "addr", "add", "192.168.222.2/24", "dev", "gpb"+id)
	run(t, "ip", "-n", nsA, "link", "set", "gpa"+id, "up")
	run(t, "ip", "-n", nsB, "link", "set", "gpb"+id, "up")

	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	// SPI and key of each direction, as the in SA of its receiver.
	const keyAB, keyBA = "0x1001, key: 0x000102030405060708090a0b0c0d0e0f10111213", "0x2002, key: 0x101112131415161718191a1b1c1d1e1f20212223"
	cfgA := fmt.Sprintf(privdropConfig, "192.168.222.1", "192.168.222.2", "10.77.1.0/24", "10.77.2.0/24",
		keyAB, keyBA, "10.77.1.1/24", sockA) + "daemon:\n  user: nobody\n"
	cfgB := fmt.Sprintf(privdropConfig, "192.168.222.2", "192.168.222.1", "10.77.2.0/24", "10.77.1.0/24",
		keyBA, keyAB, "10.77.2.1/24", sockB)
	pathA, pathB := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(pathA, []byte(cfgA), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pathB, []byte(cfgB), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startHelper(t, "left (drops to nobody)", nsA, pathA)
	bd := startHelper(t, "right (root)", nsB, pathB)
	a.waitFor(t, "privileges dropped")
	bd.waitFor(t, "\trunning\t")

	// Traffic flows through the dropped daemon, both ways.
	var pingErr error
	for range 3 {
		out, err := exec.Command("ip", "netns", "exec", nsA, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.2.1").CombinedOutput()
		if pingErr = err; err == nil {
			break
		}
		t.Logf("ping: %v\n%s", err, out)
	}
	if pingErr != nil {
		t.Fatalf("no traffic through the tunnel after the privilege drop: %v", pingErr)
	}

	// Every thread is nobody, with no capability; the process is not
	// dumpable (its /proc files belong to root).
	pid := a.cmd.Process.Pid // ip netns exec executes the daemon in place
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if k, _, _ := strings.Cut(line, ":"); strings.HasPrefix(k, "Cap") || k == "Uid" || k == "Gid" || k == "Groups" || k == "NoNewPrivs" {
			t.Logf("/proc/%d/status %s", pid, line)
		}
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // thread gone
		}
		st, err := parseStatus(string(b))
		if err != nil {
			t.Fatalf("task %s: %v", task.Name(), err)
		}
		if err := st.check(nobody); err != nil {
			t.Errorf("task %s: %v", task.Name(), err)
		}
	}
	t.Logf("%d threads checked", len(tasks))
	var fi syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/environ", pid), &fi); err != nil || fi.Uid != 0 {
		t.Errorf("/proc/%d/environ owned by uid %d (%v): the process is dumpable", pid, fi.Uid, err)
	}

	// Root still controls it over the control socket.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.NewClient(sockA).Status(ctx)
	if err != nil {
		t.Fatalf("status over the control socket after the drop: %v", err)
	}
	if st.PID != pid || st.Dataplane.Delivered == 0 || st.Dataplane.SentPackets == 0 {
		t.Errorf("status: pid %d (want %d), dataplane %+v", st.PID, pid, st.Dataplane)
	}

	// Stopping: clean exit; the device (and its routes) go, the
	// fail-closed route stays behind; the root daemon removes its own.
	a.stop()
	if a.err != nil || !strings.Contains(a.out.String(), "helper: clean exit") {
		t.Errorf("left daemon: exit %v", a.err)
	}
	if out, err := exec.Command("ip", "-n", nsA, "link", "show", "gpd0").CombinedOutput(); err == nil {
		t.Errorf("TUN device still there after the dropped daemon stopped:\n%s", out)
	}
	if routes := run(t, "ip", "-n", nsA, "route", "show"); !strings.Contains(routes, "unreachable 10.77.2.0/24") {
		t.Errorf("fail-closed route gone after the dropped daemon stopped (documented to stay):\n%s", routes)
	}
	bd.stop()
	if routes := run(t, "ip", "-n", nsB, "route", "show"); strings.Contains(routes, "unreachable") {
		t.Errorf("the root daemon left a fail-closed route:\n%s", routes)
	}
}
