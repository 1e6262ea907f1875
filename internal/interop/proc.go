//go:build linux

package interop

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that a process's output and readers share.
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

// Proc is a background process started by [StartProc] or [Netns.Start]. It
// runs in its own process group, gets SIGKILL if the test binary dies
// (Pdeathsig), and is stopped (the whole group) when the test ends.
type Proc struct {
	// Name is what the test calls the process, used in messages.
	Name string
	// Cmd is the running command.
	Cmd *exec.Cmd

	out  syncBuffer
	done chan struct{}
	err  error // valid once done is closed
}

// StartProc starts argv in the background with stdout and stderr captured
// (see [Proc.Output]). extraEnv entries (KEY=VALUE) are added to the test's
// environment. At cleanup the process group gets SIGTERM, then SIGKILL
// after 5 s; if the test failed, the process's output is logged.
func StartProc(t testing.TB, name string, extraEnv []string, argv ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, done: make(chan struct{})}
	p.Cmd = exec.Command(argv[0], argv[1:]...)
	p.Cmd.Stdout = &p.out
	p.Cmd.Stderr = &p.out
	if len(extraEnv) > 0 {
		p.Cmd.Env = append(p.Cmd.Environ(), extraEnv...)
	}
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("%s: starting %s: %v", name, strings.Join(argv, " "), err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM, 5*time.Second)
		if t.Failed() {
			if out := p.Output(); out != "" {
				t.Logf("---- %s (%s; %v) output:\n%s", name, strings.Join(argv, " "), p.err, out)
			}
		}
	})
	return p
}

// Output is what the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit error once it has ended (nil before, and for a
// zero exit status).
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wait waits up to timeout for the process to end by itself and returns its
// exit error.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %v", p.Name, timeout)
	}
}

// Stop sends sig to the process group, waits up to wait for the process to
// end, then kills the group with SIGKILL. It also kills what is left of the
// group after the process itself ended. It returns the exit error, which
// for a process ended by a signal is not nil.
func (p *Proc) Stop(sig syscall.Signal, wait time.Duration) error {
	pgid := p.Cmd.Process.Pid
	if !p.Exited() {
		_ = syscall.Kill(-pgid, sig)
		select {
		case <-p.done:
		case <-time.After(wait):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Children that outlived the leader go as well; wait (briefly) until
	// no live member is left, so that a test that checks finds nothing.
	// (Orphans are reaped by PID 1, which may take its time: zombies do
	// not count.)
	for i := 0; i < 100; i++ {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
			if !errors.Is(err, syscall.ESRCH) {
				return err
			}
			break
		}
		if len(liveGroupMembers(pgid)) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p.err
}

// liveGroupMembers are the processes of process group pgid that are not
// zombies.
func liveGroupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, live := procState(pid); live && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procState reads a process's process group and whether it is alive (not
// a zombie, not gone).
func procState(pid int) (pgid int, live bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid pgrp ...: comm may hold anything.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	pgid, err = strconv.Atoi(f[2])
	return pgid, err == nil
}

// WaitFor waits until the output contains s; it fails the test if the
// process ends first or timeout passes.
func (p *Proc) WaitFor(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), s) {
		if p.Exited() {
			t.Fatalf("%s ended (%v) before printing %q:\n%s", p.Name, p.err, s, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q after %v:\n%s", p.Name, s, timeout, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs argv and returns its stdout, or an error that carries stderr.
func run(argv ...string) (string, error) {
	return runEnv(nil, "", argv...)
}

// runEnv is run with extra environment entries and standard input.
func runEnv(extraEnv []string, stdin string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(extraEnv) > 0 {
		cmd.Env = append(cmd.Environ(), extraEnv...)
	}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\n%s%s", strings.Join(argv, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
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
