//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// OutputLimit is how much of a process's output a [Proc] keeps: the first
// OutputLimit bytes (what says why a start failed) and the last
// OutputLimit bytes.
const OutputLimit = 64 << 10

// headTail keeps the beginning and the end of what is written to it: limit
// bytes of each (0: OutputLimit; negative: everything, in head).
type headTail struct {
	limit   int
	mu      sync.Mutex
	head    []byte
	tail    []byte // the last limit bytes after head filled
	dropped int64
}

func (b *headTail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	limit := b.limit
	if limit == 0 {
		limit = OutputLimit
	}
	if limit < 0 {
		b.head = append(b.head, p...)
		return n, nil
	}
	if room := limit - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if over := len(b.tail) - limit; over > 0 {
			b.dropped += int64(over)
			b.tail = append(b.tail[:0], b.tail[over:]...)
		}
	}
	return n, nil
}

func (b *headTail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return string(b.head) + string(b.tail)
	}
	return fmt.Sprintf("%s\n[... %d bytes left out ...]\n%s", b.head, b.dropped, b.tail)
}

// Proc is a background process in its own process group that gets SIGKILL
// when the thread that started it ends (Pdeathsig), so that it does not
// outlive a killed parent.
type Proc struct {
	// Name names the process in messages.
	Name string
	// Cmd is the running command.
	Cmd *exec.Cmd

	out  headTail
	done chan struct{}
	err  error // valid once done is closed
}

// StartProc starts argv with stdout and stderr captured (see Output); env
// entries (KEY=VALUE) are added to this process's environment.
func StartProc(name string, env []string, argv ...string) (*Proc, error) {
	return StartProcLimit(name, env, OutputLimit, argv...)
}

// StartProcLimit is [StartProc] keeping limit bytes of output at each end
// instead of OutputLimit (negative: all of it, for callers that scan the
// whole output).
func StartProcLimit(name string, env []string, limit int, argv ...string) (*Proc, error) {
	if limit == 0 {
		limit = OutputLimit
	}
	p := &Proc{Name: name, done: make(chan struct{})}
	p.out.limit = limit
	p.Cmd = exec.Command(argv[0], argv[1:]...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	if len(env) > 0 {
		p.Cmd.Env = append(p.Cmd.Environ(), env...)
	}
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", name, strings.Join(argv, " "), err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Output is what the process wrote to stdout and stderr so far (the
// beginning and the end if it wrote much).
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

// Err is the exit error once the process has ended.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wait waits up to timeout for the process to end by itself and returns
// its exit error.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %v", p.Name, timeout)
	}
}

// Stop sends sig to the process group, waits up to wait for the process to
// end, then kills the group; members that outlived the leader are killed
// too. It returns the exit error.
func (p *Proc) Stop(sig syscall.Signal, wait time.Duration) error {
	pgid := p.PID()
	if !p.Exited() {
		_ = syscall.Kill(-pgid, sig)
		select {
		case <-p.done:
		case <-time.After(wait):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	for i := 0; i < 100; i++ {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
			break
		}
		if len(GroupMembers(pgid)) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p.err
}

// WaitFor waits until the output contains s. It fails if the process
// ends first, timeout passes or ctx is done.
func (p *Proc) WaitFor(ctx context.Context, s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), s) {
		if p.Exited() {
			return fmt.Errorf("%s ended (%v) before printing %q", p.Name, p.err, s)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q after %v", p.Name, s, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// CPUTime is the CPU time (user and system, all threads, those ended
// included) the process has used so far, from /proc/PID/stat.
func (p *Proc) CPUTime() (time.Duration, error) { return ProcCPUTime(p.PID()) }

// clockTick is the unit of /proc/PID/stat's times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// ProcCPUTime is the CPU time (utime + stime) process pid has used.
func ProcCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) out of a
// /proc/PID/stat line, whose second field (comm) may hold anything.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("netlab: malformed /proc/PID/stat")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, errors.New("netlab: short /proc/PID/stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("netlab: malformed times in /proc/PID/stat")
	}
	return time.Duration(u+s) * clockTick, nil
}

// GroupMembers are the live (not zombie) processes of process group pgid.
func GroupMembers(pgid int) []int {
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
