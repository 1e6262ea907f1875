//go:build linux

package interop

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/netlab"
)

// Proc is a background process started by [StartProc] or [Netns.Start]
// (a [netlab.Proc] that reports through testing.TB). It runs in its own
// process group, gets SIGKILL if the test binary dies (Pdeathsig), and is
// stopped (the whole group) when the test ends.
type Proc struct {
	// Name is what the test calls the process, used in messages.
	Name string
	// Cmd is the running command.
	Cmd *exec.Cmd

	p *netlab.Proc
}

// StartProc starts argv in the background with stdout and stderr captured
// (see [Proc.Output]). extraEnv entries (KEY=VALUE) are added to the test's
// environment. At cleanup the process group gets SIGTERM, then SIGKILL
// after 5 s; if the test failed, the process's output is logged.
func StartProc(t testing.TB, name string, extraEnv []string, argv ...string) *Proc {
	t.Helper()
	np, err := netlab.StartProc(name, extraEnv, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		np.Stop(syscall.SIGTERM, 5*time.Second)
		if t.Failed() {
			if out := np.Output(); out != "" {
				t.Logf("---- %s (%s; %v) output:\n%s", name, strings.Join(argv, " "), np.Err(), out)
			}
		}
	})
	return &Proc{Name: name, Cmd: np.Cmd, p: np}
}

// Output is what the process has written to stdout and stderr so far (the
// beginning and the end if it wrote much: [netlab.OutputLimit]).
func (p *Proc) Output() string { return p.p.Output() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool { return p.p.Exited() }

// Err is the process's exit error once it has ended (nil before, and for a
// zero exit status).
func (p *Proc) Err() error { return p.p.Err() }

// Wait waits up to timeout for the process to end by itself and returns its
// exit error.
func (p *Proc) Wait(timeout time.Duration) error { return p.p.Wait(timeout) }

// Stop sends sig to the process group, waits up to wait for the process to
// end, then kills the group with SIGKILL. It also kills what is left of the
// group after the process itself ended. It returns the exit error, which
// for a process ended by a signal is not nil.
func (p *Proc) Stop(sig syscall.Signal, wait time.Duration) error { return p.p.Stop(sig, wait) }

// WaitFor waits until the output contains s; it fails the test if the
// process ends first or timeout passes.
func (p *Proc) WaitFor(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	if err := p.p.WaitFor(context.Background(), s, timeout); err != nil {
		t.Fatalf("%v:\n%s", err, p.Output())
	}
}

// liveGroupMembers are the processes of process group pgid that are not
// zombies.
func liveGroupMembers(pgid int) []int { return netlab.GroupMembers(pgid) }

// run runs argv and returns its stdout, or an error that carries stderr.
func run(argv ...string) (string, error) { return netlab.Run(argv...) }

// runEnv is run with extra environment entries and standard input.
func runEnv(extraEnv []string, stdin string, argv ...string) (string, error) {
	return netlab.RunEnv(extraEnv, stdin, argv...)
}

// mustRun is run that fails the test on error.
func mustRun(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := run(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
