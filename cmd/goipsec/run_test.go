//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runTestConfig is a netstack daemon with static children named by their
// inbound SPIs (one per 0x10nn).
func runTestConfig(sock string, port int, children ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:\n  link:\n    local_addrs: [127.0.0.1]\n    remote_addrs: [127.0.0.1]\n    local_port: %d\n    remote_port: %d\n", port, port+1)
	b.WriteString("    local:  {auth: psk}\n    remote: {auth: psk}\n    children:\n")
	for _, n := range children {
		fmt.Fprintf(&b, "      c%d:\n        local_ts: [10.96.0.1/32]\n        remote_ts: [10.96.%d.0/24]\n        manual:\n          proto: esp\n          enc: aes128gcm16\n", n, n)
		fmt.Fprintf(&b, "          in:  {spi: %#x, key: 0x000102030405060708090a0b0c0d0e0f10111213}\n", 0x1000+n)
		fmt.Fprintf(&b, "          out: {spi: %#x, key: 0x101112131415161718191a1b1c1d1e1f20212223}\n", 0x2000+n)
	}
	fmt.Fprintf(&b, "tun:\n  mode: netstack\n  addresses: [10.96.0.1/24]\ncontrol:\n  socket: %q\n", sock)
	return b.String()
}

// TestRunSignals runs the daemon: SIGHUP and goipsec reload apply a
// changed file keeping the unchanged SA, a bad file is refused, SIGTERM
// stops it with status 0.
func TestRunSignals(t *testing.T) {
	bin := buildGoipsec(t)
	dir := t.TempDir()
	sock, path := filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "goipsec.yaml")
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(runTestConfig(sock, port, 1))
	logPath := filepath.Join(dir, "log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "-c", path)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("daemon log:\n%s", b)
		}
	}()
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append(args, "--socket", sock)...).CombinedOutput()
		return string(out), err
	}
	inbound := func() []string {
		out, err := ctl("list-sas", "--json")
		if err != nil {
			return nil
		}
		var list struct {
			SAs []struct{ Child, SPI, Direction string }
		}
		json.Unmarshal([]byte(out), &list)
		var spis []string
		for _, s := range list.SAs {
			if s.Direction == "in" {
				spis = append(spis, s.Child+"="+s.SPI)
			}
		}
		return spis
	}
	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := strings.Join(inbound(), " ")
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("inbound SAs %q, want %q", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("c1=0x00001001")

	write(runTestConfig(sock, port, 1, 2))
	cmd.Process.Signal(syscall.SIGHUP)
	wait("c1=0x00001001 c2=0x00001002")

	write(runTestConfig(sock, port, 2, 3))
	if out, err := ctl("reload"); err != nil {
		t.Fatalf("goipsec reload: %v\n%s", err, out)
	}
	wait("c2=0x00001002 c3=0x00001003")

	write("connections: [\n")
	if out, err := ctl("reload"); err == nil || !strings.Contains(out, path) {
		t.Errorf("reload of a bad file: %v\n%s", err, out)
	}
	wait("c2=0x00001002 c3=0x00001003")

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop on SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestRunLogFlags: --log-level and --log-format are checked before the
// daemon starts (--check stops right after).
func TestRunLogFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goipsec.yaml")
	if err := os.WriteFile(path, []byte(runTestConfig("-", 4500, 1)+"log:\n  level: warn\n  levels: {ike: debug}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags  []string
		code   int
		stdout string
		stderr string
	}{
		{nil, 0, path + ": configuration OK\n", ""},
		{[]string{"--log-level", "ike=debug,esp=warn"}, 0, path + ": configuration OK\n", ""},
		{[]string{"--log-level", "error", "--log-format", "json"}, 0, path + ": configuration OK\n", ""},
		{[]string{"--log-level", "ikev2=debug"}, 2, "", `goipsec: --log-level: "ikev2=debug": want a subsystem (ike, esp, spd, tun, net, control), got "ikev2"` + "\n"},
		{[]string{"--log-level", "loud"}, 2, "", `goipsec: --log-level: want debug, info, warn or error, got "loud"` + "\n"},
		{[]string{"--log-format", "xml"}, 2, "", `goipsec: --log-format: want console or json, got "xml"` + "\n"},
	} {
		out, errOut, code := ctlExec(t, append([]string{"run", "-c", path, "--check"}, tc.flags...)...)
		if code != tc.code || out != tc.stdout || errOut != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.flags, code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
	}
}
