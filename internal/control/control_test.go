package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/sad"
)

// fakeBackend records the commands it gets and answers with canned data.
type fakeBackend struct {
	status Status
	sas    []SA
	errs   map[string]error // by command name
	block  chan struct{}    // if set, commands wait for it or their context

	mu    sync.Mutex
	calls []string
}

func (f *fakeBackend) Status() Status { return f.status }
func (f *fakeBackend) ListSAs() []SA  { return f.sas }

func (f *fakeBackend) cmd(ctx context.Context, what, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, strings.TrimSpace(what+" "+name))
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.errs[what]
}

func (f *fakeBackend) Initiate(ctx context.Context, name string) error {
	return f.cmd(ctx, "initiate", name)
}
func (f *fakeBackend) Terminate(ctx context.Context, name string) error {
	return f.cmd(ctx, "terminate", name)
}
func (f *fakeBackend) Rekey(ctx context.Context, name string) error { return f.cmd(ctx, "rekey", name) }
func (f *fakeBackend) Reload(ctx context.Context) error             { return f.cmd(ctx, "reload", "") }

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func i64(v int64) *int64 { return &v }

func sampleSAs() []SA {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	drops := func(icv uint64) map[string]uint64 {
		m := map[string]uint64{}
		for r := sad.DropReason(0); r < sad.NumDropReasons; r++ {
			m[r.String()] = 0
		}
		m["bad-icv"] = icv
		return m
	}
	return []SA{
		{Connection: "home", Child: "link", ChildID: 1, Proto: "esp", Direction: "in", SPI: "0x00001001", Mode: "tunnel",
			Transform: "aes128gcm16", Peer: "198.51.100.7:4500", State: StateInstalled, Packets: 10, Bytes: 1234,
			Drops: drops(3), Created: created, AgeSeconds: 120, RekeyInSeconds: i64(3480), ExpiresInSeconds: i64(3840)},
		{Connection: "home", Child: "link", ChildID: 1, Proto: "esp", Direction: "out", SPI: "0x00002002", Mode: "tunnel",
			Transform: "aes128gcm16", Peer: "198.51.100.7:4500", State: StateInstalled, Packets: 12, Bytes: 5678,
			Drops: drops(0), Created: created, AgeSeconds: 120},
	}
}

// start serves b on a socket in a temporary directory until the test ends,
// after applying setup to the server.
func start(t *testing.T, b Backend, setup ...func(*Server)) (*Server, *Client) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "goipsec.sock")
	s, err := Listen(path, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file left behind: %v", err)
		}
	})
	return s, NewClient(path)
}

func TestRoundTrip(t *testing.T) {
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b := &fakeBackend{
		status: Status{Version: "1.2.3", PID: 42, Started: started, Listen: "0.0.0.0:4500", TunMode: "kernel", TunName: "goipsec0",
			Connections: 1, Children: 1, SAsIn: 1, SAsOut: 1, Dataplane: Counters{SentPackets: 7, NoSA: 2}},
		sas: sampleSAs(),
	}
	_, c := start(t, b, func(s *Server) {
		s.now = func() time.Time { return started.Add(time.Hour + 2*time.Minute + 3*time.Second) }
	})
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := b.status
	want.UptimeSeconds = 3723 // filled in by the server
	if !reflect.DeepEqual(*st, want) {
		t.Errorf("Status:\n got %+v\nwant %+v", *st, want)
	}

	sas, err := c.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sas, b.sas) {
		t.Errorf("ListSAs:\n got %+v\nwant %+v", sas, b.sas)
	}

	for _, f := range []func() error{
		func() error { return c.Initiate(ctx, "home") },
		func() error { return c.Terminate(ctx, "home/link") },
		func() error { return c.Rekey(ctx, "a b&c=d") }, // names are query-escaped
		func() error { return c.Reload(ctx) },
	} {
		if err := f(); err != nil {
			t.Error(err)
		}
	}
	if got, want := b.Calls(), []string{"initiate home", "terminate home/link", "rekey a b&c=d", "reload"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestEmptySAList(t *testing.T) {
	_, c := start(t, &fakeBackend{})
	raw := rawClient(c.Socket())
	resp, err := raw.Get("http://x" + PathSAs)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(body)); got != `{"ike_sas":[],"sas":[]}` {
		t.Errorf("empty list: %s", got)
	}
}

func TestBackendErrors(t *testing.T) {
	b := &fakeBackend{errs: map[string]error{
		"initiate":  fmt.Errorf("%w: initiate needs IKE, which is not built yet", ErrNotImplemented),
		"terminate": fmt.Errorf("no connection %q: %w", "nope", ErrNotFound),
		"rekey":     fmt.Errorf("child is not up: %w", ErrConflict),
		"reload":    errors.New("config.yaml: connections.home.children.link.mode: want tunnel or transport, got \"tunel\""),
	}}
	_, c := start(t, b)
	ctx := context.Background()
	for _, tc := range []struct {
		err     error
		code    int
		is      error
		message string
	}{
		{c.Initiate(ctx, "home"), 501, ErrNotImplemented, "not implemented: initiate needs IKE, which is not built yet"},
		{c.Terminate(ctx, "nope"), 404, ErrNotFound, `no connection "nope": not found`},
		{c.Rekey(ctx, "home"), 409, ErrConflict, "child is not up: conflict"},
		{c.Reload(ctx), 500, nil, `config.yaml: connections.home.children.link.mode: want tunnel or transport, got "tunel"`},
	} {
		var ce *Error
		if !errors.As(tc.err, &ce) {
			t.Errorf("%v: not an *Error", tc.err)
			continue
		}
		if ce.StatusCode != tc.code || ce.Message != tc.message || ce.Error() != tc.message {
			t.Errorf("got %d %q, want %d %q", ce.StatusCode, ce.Message, tc.code, tc.message)
		}
		if tc.is != nil && !errors.Is(tc.err, tc.is) {
			t.Errorf("%v: errors.Is(%v) false", tc.err, tc.is)
		}
	}
}

// rawClient is an HTTP client over the control socket, for requests the
// Client does not make.
func rawClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

func TestHTTPErrors(t *testing.T) {
	_, c := start(t, &fakeBackend{})
	raw := rawClient(c.Socket())
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
		message      string
	}{
		{"GET", "/v1/nope", 404, "", "no such endpoint: /v1/nope"},
		{"GET", "/", 404, "", "no such endpoint: /"},
		{"POST", PathStatus, 405, "GET", "/v1/status wants GET, got POST"},
		{"GET", PathInitiate + "?name=home", 405, "POST", "/v1/initiate wants POST, got GET"},
		{"DELETE", PathReload, 405, "POST", "/v1/reload wants POST, got DELETE"},
		{"POST", PathInitiate, 400, "", "initiate: missing ?name="},
		{"POST", PathRekey + "?name=", 400, "", "rekey: missing ?name="},
	} {
		req, _ := http.NewRequest(tc.method, "http://x"+tc.path, nil)
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb errorBody
		err = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if err != nil {
			t.Errorf("%s %s: body: %v", tc.method, tc.path, err)
		}
		if resp.StatusCode != tc.code || eb.Error != tc.message || resp.Header.Get("Allow") != tc.allow ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: got %d %q (Allow %q, %s), want %d %q (Allow %q)", tc.method, tc.path,
				resp.StatusCode, eb.Error, resp.Header.Get("Allow"), resp.Header.Get("Content-Type"), tc.code, tc.message, tc.allow)
		}
	}
}

func TestSocketFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "goipsec.sock")
	s, err := Listen(path, &fakeBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := fs.FileMode(0o755) &^ umask(t); di.Mode().Perm() != want {
		t.Errorf("directory mode %v, want %v", di.Mode().Perm(), want)
	}
	// Only the socket is left in the directory (no temporary files).
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(ents))
	}

	// A second daemon on the same path is refused; the socket stays.
	if _, err := Listen(path, &fakeBackend{}, nil); !errors.Is(err, ErrDaemonRunning) {
		t.Errorf("second Listen: %v, want ErrDaemonRunning", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Serve(ctx); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket not removed: %v", err)
	}
}

// umask returns the process's umask without changing it for long.
func umask(t *testing.T) fs.FileMode {
	dir := filepath.Join(t.TempDir(), "probe")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	return 0o777 &^ fi.Mode().Perm()
}

func TestStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goipsec.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a crashed daemon's socket: the file stays, nobody listens
	_, c := start2(t, path)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "goipsec.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path, &fakeBackend{}, nil)
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("Listen over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Error("the file was touched")
	}
}

// start2 is start on a given path.
func start2(t *testing.T, path string) (*Server, *Client) {
	t.Helper()
	s, err := Listen(path, &fakeBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s, NewClient(path)
}

func TestDialError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	_, err := NewClient(path).Status(context.Background())
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("got %v, want a *DialError", err)
	}
	if want := "cannot reach the daemon at " + path + ": connect: no such file or directory"; err.Error() != want {
		t.Errorf("got %q\nwant %q", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("errors.Is(err, fs.ErrNotExist) is false")
	}
}

func TestAuthorize(t *testing.T) {
	for _, tc := range []struct {
		uid, owner uint32
		ok         bool
	}{
		{1000, 1000, true},
		{0, 1000, true}, // root
		{0, 0, true},
		{1001, 1000, false},
		{1000, 0, false},
		{65534, 1000, false},
	} {
		err := authorize(tc.uid, tc.owner)
		if (err == nil) != tc.ok {
			t.Errorf("authorize(%d, %d) = %v, want ok=%v", tc.uid, tc.owner, err, tc.ok)
		}
	}
	if err := authorize(1001, 1000); err.Error() != "permission denied: uid 1001 is neither the daemon's (uid 1000) nor root" {
		t.Errorf("message: %v", err)
	}
}

func TestPeerRefused(t *testing.T) {
	b := &fakeBackend{}
	var checked atomic.Int64
	_, c := start(t, b, func(s *Server) {
		s.allow = func(uid uint32) error {
			checked.Add(1)
			return authorize(uid+1, uid+2) // as if we were someone else
		}
	})
	_, err := c.Status(context.Background())
	if _, perr := peerUID(nil); errors.Is(perr, errors.ErrUnsupported) {
		// No peer credentials on this OS: only the file mode protects.
		if err != nil {
			t.Fatal(err)
		}
		t.Skip("no peer credentials on this OS")
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusForbidden || !strings.HasPrefix(ce.Message, "permission denied: uid ") {
		t.Fatalf("got %v, want 403 permission denied", err)
	}
	if err := c.Initiate(context.Background(), "home"); err == nil {
		t.Error("Initiate went through")
	}
	if len(b.Calls()) != 0 {
		t.Errorf("backend called: %q", b.Calls())
	}
	if checked.Load() != 2 {
		t.Errorf("%d credential checks, want one per connection (2)", checked.Load())
	}
}

func TestShutdownCancelsCommands(t *testing.T) {
	b := &fakeBackend{block: make(chan struct{})}
	path := filepath.Join(t.TempDir(), "goipsec.sock")
	s, err := Listen(path, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	c := NewClient(path)
	cerr := make(chan error, 1)
	go func() { cerr <- c.Initiate(context.Background(), "home") }()
	for len(b.Calls()) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(shutdownGrace + time.Second):
		t.Fatal("Serve did not return")
	}
	var ce *Error
	if err := <-cerr; !errors.As(err, &ce) || ce.StatusCode != http.StatusServiceUnavailable || ce.Message != "context canceled" {
		t.Errorf("Initiate: %v, want 503 context canceled", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket not removed: %v", err)
	}
}

func TestSAFromSnapshot(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	snap := sad.Snapshot{
		Proto: sad.ESP, SPI: 0xc1a2b3, Dir: sad.Inbound, Mode: sad.Transport, Child: 7, Transform: "aes256-sha256",
		Peer: netip.MustParseAddrPort("[2001:db8::1]:4500"), Created: created,
		Lifetime: sad.Lifetime{Soft: sad.Limits{Time: time.Hour}, Hard: sad.Limits{Time: 70 * time.Minute}},
		Packets:  5, Bytes: 500, SoftExpired: true,
	}
	snap.Drops[sad.DropReplay] = 4
	got := SAFromSnapshot(snap, "home", "link", created.Add(61*time.Minute+500*time.Millisecond))
	want := SA{
		Connection: "home", Child: "link", ChildID: 7, Proto: "esp", Direction: "in", SPI: "0x00c1a2b3", Mode: "transport",
		Transform: "aes256-sha256", Peer: "[2001:db8::1]:4500", State: StateRekeyDue, Packets: 5, Bytes: 500,
		Drops:   map[string]uint64{"bad-icv": 0, "replay": 4, "too-old": 0, "policy": 0, "bad-length": 0, "bad-padding": 0, "expired": 0, "other": 0},
		Created: created, AgeSeconds: 3660, RekeyInSeconds: i64(-61), ExpiresInSeconds: i64(539),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	snap.HardExpired = true
	if s := SAFromSnapshot(snap, "", "", created).State; s != StateExpired {
		t.Errorf("hard expired: state %q", s)
	}
	snap.Removed = true
	if s := SAFromSnapshot(snap, "", "", created).State; s != StateRemoved {
		t.Errorf("removed: state %q", s)
	}
	snap.Lifetime = sad.Lifetime{}
	if s := SAFromSnapshot(snap, "", "", created); s.RekeyInSeconds != nil || s.ExpiresInSeconds != nil {
		t.Errorf("no time limits, but times left: %+v", s)
	}
}

// TestCountersFrom checks that every dataplane counter lands in exactly one
// field of Counters.
func TestCountersFrom(t *testing.T) {
	var dc dataplane.Counters
	v := reflect.ValueOf(&dc).Elem()
	for i := 0; i < v.NumField(); i++ {
		v.Field(i).Addr().Interface().(interface{ Store(uint64) }).Store(uint64(i + 1))
	}
	c := CountersFrom(&dc)
	cv := reflect.ValueOf(c)
	if cv.NumField() != v.NumField() {
		t.Fatalf("Counters has %d fields, dataplane.Counters %d", cv.NumField(), v.NumField())
	}
	seen := map[uint64]string{}
	for i := 0; i < cv.NumField(); i++ {
		x := cv.Field(i).Uint()
		name := cv.Type().Field(i).Name
		if x == 0 || seen[x] != "" {
			t.Errorf("%s = %d (also %q)", name, x, seen[x])
		}
		seen[x] = name
	}
	if c.CleartextPackets != dc.TunPackets.Load() || c.InboundSA != dc.InboundDrops.Load() ||
		c.KeepalivesTx != dc.KeepalivesSent.Load() || c.RecvErrors != dc.ReceiveErrors.Load() {
		t.Errorf("mapping: %+v", c)
	}
}

// TestLongPath binds in place when the private temporary path would be too
// long for a Unix socket but the final one is not.
func TestLongPath(t *testing.T) {
	base := t.TempDir()
	n := maxSocketPath - len(base) - len("/") - len("/g.sock")
	if n < 1 {
		t.Skip("temporary directory path too long")
	}
	path := filepath.Join(base, strings.Repeat("d", n), "g.sock")
	if len(path) != maxSocketPath {
		t.Fatalf("path length %d", len(path))
	}
	_, c := start2(t, path)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v", fi.Mode())
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(ents))
	}
}
