//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoAsNobody runs the README's first command, `goipsec demo`, as the
// unprivileged user nobody (no capabilities, no writable home), from the
// built binary, and checks its exit status and output: the negotiated IKE
// and Child SAs, the HTTP GET, the SHA-256-checked bulk transfer with its
// throughput line, and the SA counters.
func TestDemoAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: running the demo as user nobody needs root to switch users; run go test as root (CI does)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("skipping: no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	bin := buildGoipsec(t)
	// nobody must reach the binary through the test's private directories.
	for d := filepath.Dir(bin); d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A bound against a hang only; the demo takes seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	out := stdout.String()
	t.Logf("goipsec demo as %s (uid %d):\n%s", nobody.Username, uid, out)
	if err != nil {
		t.Fatalf("goipsec demo: %v\nstderr:\n%s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	for _, re := range []string{
		`(?m)^goipsec demo: two peers in one process, each on its own userspace network stack$`,
		`IKEv2 with a pre-shared key \(random per run\): established in \S+`,
		`(?m)^IKE SA demo: aes128gcm16-prfsha256-x25519  a=peer-a\.demo \(initiator\) <-> b=peer-b\.demo, SPIs [0-9a-f]{16}_i [0-9a-f]{16}_r$`,
		`(?m)^  CHILD_SA demo\.net: ESP aes128gcm16-noesn, tunnel mode, SPIs [0-9a-f]{8}_i \(a inbound\) [0-9a-f]{8}_o \(a outbound\), 10\.99\.0\.1/32 === 10\.99\.0\.2/32$`,
		`(?m)^GET http://10\.99\.0\.2/ from peer a through ESP: "hello from peer b, through ESP"$`,
		`(?m)^bulk transfer b -> a: 64 MiB in \S+ = [0-9]+ Mbit/s, SHA-256 verified$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s", re)
		}
	}
	// The SA table: four SAs, each with packets, a's inbound with the 64 MiB.
	rows := regexp.MustCompile(`(?m)^([ab]) +(in|out) +0x[0-9a-f]{8} +tunnel +aes128gcm16 +([0-9]+) +([0-9]+) +([0-9]+)$`).FindAllStringSubmatch(out, -1)
	if len(rows) != 4 {
		t.Fatalf("%d SA rows, want 4", len(rows))
	}
	for _, r := range rows {
		packets, _ := strconv.ParseUint(r[3], 10, 64)
		bytes, _ := strconv.ParseUint(r[4], 10, 64)
		if packets == 0 || r[5] != "0" {
			t.Errorf("SA row %q: no packets or drops", r[0])
		}
		if r[1] == "a" && r[2] == "in" && bytes < 64<<20 {
			t.Errorf("a's inbound SA carried %d bytes of a 64 MiB transfer", bytes)
		}
	}
}
