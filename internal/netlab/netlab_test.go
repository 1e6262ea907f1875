//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// comm may hold spaces and parentheses.
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 123 456 789"
	d, err := parseStatCPU(line)
	if err != nil || d != 325*clockTick {
		t.Fatalf("parseStatCPU = %v, %v", d, err)
	}
	for _, bad := range []string{"", "1234 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
	self, err := ProcCPUTime(os.Getpid())
	if err != nil || self < 0 {
		t.Errorf("own CPU time: %v, %v", self, err)
	}
}

func TestHeadTail(t *testing.T) {
	var b headTail
	fmt.Fprint(&b, "start\n")
	if b.String() != "start\n" {
		t.Fatalf("%q", b.String())
	}
	chunk := strings.Repeat("x", 1000) + "\n"
	for range 300 {
		io.WriteString(&b, chunk)
	}
	io.WriteString(&b, "the end\n")
	s := b.String()
	if !strings.HasPrefix(s, "start\n") || !strings.HasSuffix(s, "the end\n") || !strings.Contains(s, "bytes left out") || len(s) > 2*OutputLimit+100 {
		t.Errorf("head %q ... tail %q, %d bytes", s[:10], s[len(s)-10:], len(s))
	}
}

func TestHeadTailUnlimited(t *testing.T) {
	b := headTail{limit: -1}
	chunk := strings.Repeat("y", 1000) + "\n"
	for range 300 {
		io.WriteString(&b, chunk)
	}
	if s := b.String(); s != strings.Repeat(chunk, 300) {
		t.Errorf("kept %d bytes of %d", len(s), 300*len(chunk))
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// TestLab builds two namespaces on a veth, talks across it, runs a
// process inside one and checks that Close leaves nothing behind.
func TestLab(t *testing.T) {
	needRoot(t)
	lab, _, err := NewLab("nlt")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			lab.Close()
		}
	}()
	a, err := lab.Netns("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.Netns("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Link(a, "nlt"+lab.ID+"a", []string{"198.18.0.1/24", "2001:db8:18::1/64"}, b, "nlt"+lab.ID+"b", []string{"198.18.0.2/24", "2001:db8:18::2/64"}); err != nil {
		t.Fatal(err)
	}
	// b's IPv6 address is a permanent neighbour of a, with b's MAC.
	macB, err := b.MAC("nlt" + lab.ID + "b")
	if err != nil || len(macB) != len("00:00:00:00:00:00") {
		t.Fatalf("MAC = %q, %v", macB, err)
	}
	if neigh, err := a.Output("ip", "-6", "neigh", "show", "2001:db8:18::2"); err != nil || !strings.Contains(neigh, macB) || !strings.Contains(neigh, "PERMANENT") {
		t.Errorf("neighbour entry %q (%v), want %s PERMANENT", neigh, err, macB)
	}
	for _, dst := range []string{"198.18.0.2", "2001:db8:18::2"} {
		if out, err := a.Ping("", dst, 1); err != nil {
			t.Errorf("ping %s: %v\n%s", dst, err, out)
		}
	}
	if out, err := a.Ping("", "198.18.0.3", 1); err == nil {
		t.Errorf("ping to an address nobody has succeeded:\n%s", out)
	}
	if mtu, err := a.MTU("nlt" + lab.ID + "a"); err != nil || mtu != 1500 {
		t.Errorf("MTU = %d, %v", mtu, err)
	}
	ln, err := b.Listen("tcp4", "198.18.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	c, err := a.Dial(context.Background(), &net.Dialer{Timeout: 5 * time.Second}, "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hello" {
		t.Errorf("read %q across the veth", got)
	}
	// This process's own namespace cannot reach b's address.
	if _, err := (&net.Dialer{Timeout: 200 * time.Millisecond}).Dial("tcp4", ln.Addr().String()); err == nil {
		t.Error("reached b's address from outside the lab")
	}
	dir, err := lab.TempDir("nlt-")
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.Start("spinner", nil, time.Second, a.Cmdline("sh", "-c", "echo started; sleep 1000 & while :; do :; done")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(context.Background(), "started", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The spinner's CPU time grows (however busy the machine is: wait
	// for it rather than for a fixed time).
	var cpu time.Duration
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if cpu, err = p.CPUTime(); err != nil || cpu >= 50*time.Millisecond || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || cpu < 50*time.Millisecond {
		t.Errorf("spinner CPU time %v, %v", cpu, err)
	}
	pids, _ := a.Output("ip", "netns", "pids", a.Name)
	if len(strings.Fields(pids)) < 2 {
		t.Errorf("ip netns pids: %q", pids)
	}
	if err := p.Wait(10 * time.Millisecond); err == nil || p.Exited() {
		t.Errorf("Wait on a running process: %v", err)
	}
	short, err := StartProc("short", nil, a.Cmdline("sh", "-c", "exit 3")...)
	if err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := short.Wait(5 * time.Second); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	pgid := p.PID()
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if !p.Exited() || len(GroupMembers(pgid)) != 0 {
		t.Errorf("process group %d still has %v", pgid, GroupMembers(pgid))
	}
	if names, _ := Names("nlt"); slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, lab.ID) }) {
		t.Errorf("namespaces left: %v", names)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temp dir left: %v", err)
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestSweepStale deletes a namespace whose maker is gone and keeps one
// whose maker lives.
func TestSweepStale(t *testing.T) {
	needRoot(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("nlt-%d-000000-x", dead.Process.Pid)
	live := fmt.Sprintf("nlt-%d-000000-y", os.Getppid())
	for _, n := range []string{stale, live} {
		if _, err := Run("ip", "netns", "add", n); err != nil {
			t.Fatal(err)
		}
		defer (&Netns{Name: n}).Destroy()
	}
	// Something running inside the stale one is killed with it.
	p, err := StartProc("sleeper", nil, (&Netns{Name: stale}).Cmdline("sleep", "1000")...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(syscall.SIGKILL, 0)
	time.Sleep(100 * time.Millisecond)
	if Alive(dead.Process.Pid) {
		t.Skip("the dead PID was reused")
	}
	swept, err := SweepStale("nlt")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(swept, stale) || slices.Contains(swept, live) {
		t.Errorf("swept %v", swept)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !p.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !p.Exited() {
		t.Error("the process in the stale namespace survived")
	}
	names, _ := Names("nlt")
	if slices.Contains(names, stale) || !slices.Contains(names, live) {
		t.Errorf("namespaces now %v", names)
	}
}
