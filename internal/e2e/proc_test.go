package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a process's output and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a background process in its own process group, stopped when the
// test ends; its output is printed if the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error // once done is closed
	// socket is a daemon's control socket.
	socket string
}

// start runs argv in the background. The process (and its group) is
// stopped at cleanup, and its output is logged when the test has failed or
// when it shows a data race or a panic (which fail the test).
func start(t *testing.T, name string, argv ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: starting %s: %v", name, strings.Join(argv, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, 5*time.Second)
		log := p.out.String()
		bad := strings.Contains(log, "WARNING: DATA RACE") || strings.Contains(log, "panic:")
		if bad {
			t.Errorf("%s: data race or panic in its output", name)
		}
		if t.Failed() || bad {
			t.Logf("---- %s (%s; %v) output:\n%s", name, strings.Join(argv, " "), p.err, log)
		}
	})
	return p
}

// stop signals the process group and waits for the process, then kills
// the group if it is still there after wait.
func (p *proc) stop(sig syscall.Signal, wait time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
		return
	case <-time.After(wait):
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor waits until the output contains s; it fails the test if the
// process ends first or timeout passes.
func (p *proc) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), s) {
		if p.exited() {
			t.Fatalf("%s ended (%v) before printing %q:\n%s", p.name, p.err, s, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q after %v:\n%s", p.name, s, timeout, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemon runs goipsec run -c CONFIG as root inside ns and waits until it
// is running.
func daemon(t *testing.T, name string, ns *netns, config string) *proc {
	t.Helper()
	return runDaemon(t, name, ns, config, 0)
}

// runDaemon runs goipsec run -c CONFIG inside ns (nil: the test's own
// namespace), as uid (not 0: through setpriv, with no capabilities) and
// waits until it is running. Its control socket is in a directory of its
// own, so that daemons do not meet at the default path.
func runDaemon(t *testing.T, name string, ns *netns, config string, uid int) *proc {
	t.Helper()
	dir := readableDir(t)
	ctl := filepath.Join(dir, "control")
	if err := os.Mkdir(ctl, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ctl, uid, uid); err != nil {
		t.Fatal(err)
	}
	sock := "  socket: " + filepath.Join(ctl, "goipsec.sock") + "\n"
	if i := strings.Index(config, "\ncontrol:\n"); i >= 0 {
		// The configuration has a control section of its own (metrics).
		config = config[:i+len("\ncontrol:\n")] + sock + config[i+len("\ncontrol:\n"):]
	} else {
		config += "control:\n" + sock
	}
	file := filepath.Join(dir, name+".yaml")
	writeReadable(t, file, config)
	var argv []string
	if uid != 0 {
		id := strconv.Itoa(uid)
		argv = []string{"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups",
			"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs"}
	}
	argv = append(argv, binary, "run", "-c", file, "--log-level", "debug")
	if ns != nil {
		argv = ns.cmdline(argv...)
	}
	p := start(t, name, argv...)
	p.socket = filepath.Join(ctl, "goipsec.sock")
	p.waitFor(t, "\trunning\t", 20*time.Second)
	return p
}

// counters returns the daemon's dataplane counters from goipsec status
// --json, or nil (and a log line) if the control interface does not give
// them.
func (p *proc) counters(t *testing.T) map[string]uint64 {
	t.Helper()
	out, err := exec.Command(binary, "status", "--json", "--socket", p.socket).Output()
	if err != nil {
		t.Logf("%s: goipsec status --json: %v", p.name, err)
		return nil
	}
	var st struct {
		Dataplane map[string]uint64 `json:"dataplane"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Dataplane == nil {
		t.Logf("%s: goipsec status --json gave no dataplane counters (%v):\n%s", p.name, err, out)
		return nil
	}
	return st.Dataplane
}

// readableDir makes a directory that every user may enter, removed when
// the test ends (t.TempDir's are private to root).
func readableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "goipsec-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeReadable writes a file that every user may read.
func writeReadable(t *testing.T, file, content string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
}

// check fails the test unless err is nil.
func check(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
