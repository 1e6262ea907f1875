//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/netlab"
)

// proc is a background process (a [netlab.Proc]: own process group,
// output captured) stopped when the test ends; its output is printed if
// the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	// out is the output so far (out.String()), all of it: the race and
	// panic check at cleanup reads it whole.
	out output
	p   *netlab.Proc
	// socket is a daemon's control socket.
	socket string
}

// output is a process's captured output.
type output struct{ p *netlab.Proc }

// String is the output so far.
func (o output) String() string { return o.p.Output() }

// start runs argv in the background. The process (and its group) is
// stopped at cleanup, and its output is logged when the test has failed or
// when it shows a data race or a panic (which fail the test).
func start(t *testing.T, name string, argv ...string) *proc {
	t.Helper()
	np, err := netlab.StartProcLimit(name, nil, -1, argv...)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: np.Cmd, out: output{np}, p: np}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, 5*time.Second)
		log := np.Output()
		bad := strings.Contains(log, "WARNING: DATA RACE") || strings.Contains(log, "panic:")
		if bad {
			t.Errorf("%s: data race or panic in its output", name)
		}
		if t.Failed() || bad {
			t.Logf("---- %s (%s; %v) output:\n%s", name, strings.Join(argv, " "), np.Err(), log)
		}
	})
	return p
}

// stop signals the process group and waits for the process, then kills
// the group if it is still there after wait.
func (p *proc) stop(sig syscall.Signal, wait time.Duration) { p.p.Stop(sig, wait) }

// exited reports whether the process has ended.
func (p *proc) exited() bool { return p.p.Exited() }

// waitFor waits until the output contains s; it fails the test if the
// process ends first or timeout passes.
func (p *proc) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	if err := p.p.WaitFor(context.Background(), s, timeout); err != nil {
		t.Fatalf("%v:\n%s", err, p.p.Output())
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
