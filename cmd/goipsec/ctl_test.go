package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/control"
)

var updateCtl = flag.Bool("update-ctl", false, "rewrite the golden files of the control commands")

// ctlExec runs the goipsec command line in-process and returns its stdout,
// stderr and exit status, as main would.
func ctlExec(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	code := 0
	if err := root.Execute(); err != nil {
		errb.WriteString("goipsec: " + err.Error() + "\n")
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

// ctlFake is a control.Backend with canned answers.
type ctlFake struct {
	status control.Status
	ikes   []control.IKESA
	sas    []control.SA
	errs   map[string]error

	mu    sync.Mutex
	calls []string
}

func (f *ctlFake) Status() control.Status { return f.status }
func (f *ctlFake) ListIKESAs() []control.IKESA {
	return f.ikes
}
func (f *ctlFake) ListSAs() []control.SA { return f.sas }
func (f *ctlFake) do(what, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, strings.TrimSpace(what+" "+name))
	f.mu.Unlock()
	return f.errs[what]
}
func (f *ctlFake) Initiate(_ context.Context, n string) error  { return f.do("initiate", n) }
func (f *ctlFake) Terminate(_ context.Context, n string) error { return f.do("terminate", n) }
func (f *ctlFake) Rekey(_ context.Context, n string) error     { return f.do("rekey", n) }
func (f *ctlFake) Reload(context.Context) error                { return f.do("reload", "") }

func ctlI64(v int64) *int64 { return &v }

func ctlDrops(kv ...any) map[string]uint64 {
	m := map[string]uint64{"bad-icv": 0, "replay": 0, "too-old": 0, "policy": 0, "bad-length": 0, "bad-padding": 0, "expired": 0, "other": 0}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = uint64(kv[i+1].(int))
	}
	return m
}

func newCtlFake() *ctlFake {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return &ctlFake{
		status: control.Status{
			Version: "1.2.3", PID: 4242, Started: t0, UptimeSeconds: 3723,
			Listen: "192.0.2.1:4500", TunMode: "kernel", TunName: "goipsec0", Metrics: "127.0.0.1:9669",
			Connections: 2, Children: 3, SAsIn: 4, SAsOut: 2,
			Dataplane: control.Counters{
				CleartextPackets: 120, CleartextBytes: 14400, SentPackets: 118, SentBytes: 17000,
				ReceivedPackets: 104, ReceivedBytes: 15000, Delivered: 95, KeepalivesRx: 3, KeepalivesTx: 1, IKE: 4,
				NoSA: 2, UnknownSPI: 1, InboundSA: 4,
			},
		},
		ikes: []control.IKESA{
			{Connection: "site", Serial: 3, State: "ESTABLISHED", Initiator: true, SPIi: "0123456789abcdef", SPIr: "fedcba9876543210",
				Peer: "203.0.113.9:4500", LocalID: "a.example.org", RemoteID: "b.example.org", Proposal: "aes256-sha256-prfsha256-ecp256",
				Established: t0, AgeSeconds: 3700, RekeyInSeconds: ctlI64(10100), ReauthInSeconds: ctlI64(-5), ExpiresInSeconds: ctlI64(11540), Children: []string{"site.lan"}},
			{Connection: "", Serial: 4, State: "HALF_OPEN", SPIi: "1111111111111111", SPIr: "2222222222222222", Peer: "198.51.100.99:500",
				Proposal: "aes128gcm16-prfsha256-x25519", Children: []string{}},
		},
		sas: []control.SA{
			// Out of order on purpose: the client sorts.
			{Connection: "site", Child: "lan", ChildID: 2, Proto: "esp", Direction: "out", SPI: "0xc0000002", Mode: "tunnel",
				Transform: "aes256-sha256", Peer: "203.0.113.9:4500", State: "installed", Packets: 7, Bytes: 700,
				Drops: ctlDrops(), Created: t0.Add(30 * time.Minute), AgeSeconds: 1800, RekeyInSeconds: ctlI64(1800), ExpiresInSeconds: ctlI64(2400)},
			{Connection: "home", Child: "link", ChildID: 1, Proto: "esp", Direction: "in", SPI: "0x00001001", Mode: "tunnel",
				Transform: "aes128gcm16", Peer: "198.51.100.7:4500", State: "installed", Packets: 10, Bytes: 1234,
				Drops: ctlDrops("bad-icv", 3, "replay", 1), Created: t0, AgeSeconds: 120, RekeyInSeconds: ctlI64(3480), ExpiresInSeconds: ctlI64(3840)},
			{Connection: "home", Child: "link", ChildID: 1, Proto: "esp", Direction: "out", SPI: "0x00002002", Mode: "tunnel",
				Transform: "aes128gcm16", Peer: "198.51.100.7:4500", State: "installed", Packets: 12, Bytes: 5678,
				Drops: ctlDrops(), Created: t0, AgeSeconds: 120, RekeyInSeconds: ctlI64(3480), ExpiresInSeconds: ctlI64(3840)},
			// A rekey in progress: the old inbound SA lingers.
			{Connection: "site", Child: "lan", ChildID: 2, Proto: "esp", Direction: "in", SPI: "0xc0000001", Mode: "tunnel",
				Transform: "aes256-sha256", Peer: "203.0.113.9:4500", State: "installed", Packets: 5, Bytes: 500,
				Drops: ctlDrops(), Created: t0.Add(30 * time.Minute), AgeSeconds: 1800, RekeyInSeconds: ctlI64(1800), ExpiresInSeconds: ctlI64(2400)},
			{Connection: "site", Child: "lan", ChildID: 2, Proto: "esp", Direction: "in", SPI: "0xb0000001", Mode: "tunnel",
				Transform: "aes256-sha256", Peer: "203.0.113.9:4500", State: "rekey-due", Packets: 900, Bytes: 1234567,
				Drops: ctlDrops("too-old", 2), Created: t0, AgeSeconds: 3700, RekeyInSeconds: ctlI64(-100), ExpiresInSeconds: ctlI64(500)},
			{Connection: "host", Child: "tr", ChildID: 3, Proto: "esp", Direction: "in", SPI: "0x00000301", Mode: "transport",
				Transform: "chacha20poly1305", Peer: "[2001:db8::2]:4500", State: "installed",
				Drops: ctlDrops(), Created: t0, AgeSeconds: 5},
		},
	}
}

// ctlServe serves b on a socket in a temporary directory for the test.
func ctlServe(t *testing.T, b control.Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "goipsec.sock")
	s, err := control.Listen(path, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return path
}

// ctlGolden compares got with testdata/ctl/NAME, or rewrites it with
// -update-ctl.
func ctlGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "ctl", name)
	if *updateCtl {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-ctl to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: output differs (run with -update-ctl to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestCtlGolden(t *testing.T) {
	path := ctlServe(t, newCtlFake())
	empty := ctlServe(t, &ctlFake{status: control.Status{Version: "dev", PID: 1, Listen: "0.0.0.0:4500", TunMode: "netstack"}})
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"status.txt", []string{"status", "--socket", path}},
		{"status.json", []string{"status", "--json", "--socket", path}},
		{"list-sas.txt", []string{"list-sas", "--socket", path}},
		{"list-sas.json", []string{"list-sas", "--socket", path, "--json"}},
		{"status-empty.txt", []string{"status", "--socket", empty}},
		{"list-sas-empty.txt", []string{"list-sas", "--socket", empty}},
		{"list-sas-empty.json", []string{"list-sas", "--json", "--socket", empty}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, errOut, code := ctlExec(t, tc.args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			ctlGolden(t, tc.golden, out)
		})
	}
}

func TestCtlCommands(t *testing.T) {
	f := newCtlFake()
	f.errs = map[string]error{
		"initiate": fmt.Errorf("%w: initiate needs IKE, which is not built yet", control.ErrNotImplemented),
		"rekey":    fmt.Errorf("%w: rekey needs IKE, which is not built yet", control.ErrNotImplemented),
	}
	path := ctlServe(t, f)
	for _, tc := range []struct {
		args             []string
		stdout, stderr   string
		code             int
		wantCall, noCall bool
	}{
		{[]string{"terminate", "home"}, "terminated home\n", "", 0, true, false},
		{[]string{"reload"}, "configuration reloaded\n", "", 0, true, false},
		{[]string{"initiate", "home"}, "", "goipsec: initiate home: not implemented: initiate needs IKE, which is not built yet\n", 1, true, false},
		{[]string{"rekey", "home"}, "", "goipsec: rekey home: not implemented: rekey needs IKE, which is not built yet\n", 1, true, false},
		{[]string{"initiate"}, "", "goipsec: want the connection's NAME, got 0 arguments (see 'goipsec initiate --help')\n", 2, false, true},
		{[]string{"terminate", "a", "b"}, "", "goipsec: want the connection's NAME, got 2 arguments (see 'goipsec terminate --help')\n", 2, false, true},
		{[]string{"reload", "x"}, "", "goipsec: want no arguments, got 1 (see 'goipsec reload --help')\n", 2, false, true},
		{[]string{"status", "--bogus"}, "", "goipsec: unknown flag: --bogus (see 'goipsec status --help')\n", 2, false, true},
	} {
		f.mu.Lock()
		f.calls = nil
		f.mu.Unlock()
		args := append(tc.args, "--socket", path)
		out, errOut, code := ctlExec(t, args...)
		if out != tc.stdout || errOut != tc.stderr || code != tc.code {
			t.Errorf("%q: got exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q", tc.args, code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
		f.mu.Lock()
		n := len(f.calls)
		f.mu.Unlock()
		if tc.wantCall && n != 1 || tc.noCall && n != 0 {
			t.Errorf("%q: %d backend calls", tc.args, n)
		}
	}
}

func TestCtlNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goipsec.sock")
	for _, args := range [][]string{{"status"}, {"list-sas", "--json"}, {"initiate", "home"}, {"terminate", "home"}, {"rekey", "home"}, {"reload"}} {
		out, errOut, code := ctlExec(t, append(args, "--socket", path)...)
		want := "goipsec: cannot reach the daemon at " + path + ": connect: no such file or directory (is `goipsec run` running?)\n"
		if out != "" || errOut != want || code != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1, %q", args, code, out, errOut, want)
		}
	}
}

func TestCtlSocketDefault(t *testing.T) {
	path := ctlServe(t, newCtlFake())
	t.Setenv("GOIPSEC_SOCKET", path)
	out, errOut, code := ctlExec(t, "reload")
	if code != 0 || out != "configuration reloaded\n" {
		t.Errorf("GOIPSEC_SOCKET: exit %d, %q %q", code, out, errOut)
	}
	// --socket wins over the environment.
	other := filepath.Join(t.TempDir(), "other.sock")
	_, errOut, code = ctlExec(t, "status", "--socket", other)
	if code != 1 || !strings.Contains(errOut, other) {
		t.Errorf("--socket: exit %d, %q", code, errOut)
	}
	t.Setenv("GOIPSEC_SOCKET", "")
	if got := ctlDefaultSocket(); got != "/run/goipsec/goipsec.sock" {
		t.Errorf("default socket %q", got)
	}
	// The help names the default.
	out, _, _ = ctlExec(t, "status", "--help")
	if !strings.Contains(out, `--socket string   the daemon's control socket ($GOIPSEC_SOCKET overrides the default) (default "/run/goipsec/goipsec.sock")`) {
		t.Errorf("help:\n%s", out)
	}
}

func TestCtlDialErrorKinds(t *testing.T) {
	// A permission problem gets its own hint.
	err := ctlRun(newCtlStatusCmd(), "/nonexistent", func(context.Context, *control.Client) error {
		return &control.DialError{Socket: "/run/goipsec/goipsec.sock", Err: os.ErrPermission}
	})
	want := "cannot reach the daemon at /run/goipsec/goipsec.sock: permission denied (only the daemon's user and root may use it)"
	if err == nil || err.Error() != want || exitCode(err) != 1 {
		t.Errorf("got %v, want %q", err, want)
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Error("not errors.Is(ErrPermission)")
	}
}
