package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/control"
	"github.com/goipsec/goipsec/internal/logging"
	"github.com/goipsec/goipsec/sad"
)

// staticYAML is a netstack daemon with the given static children, each
// "name:spi_in:spi_out:remote_ts".
func staticYAML(port int, children ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:\n  link:\n    local_addrs: [127.0.0.1]\n    remote_addrs: [127.0.0.1]\n    local_port: %d\n    remote_port: %d\n", port, port+1)
	b.WriteString("    local:  {auth: psk}\n    remote: {auth: psk}\n    children:\n")
	for _, c := range children {
		f := strings.Split(c, ":")
		fmt.Fprintf(&b, "      %s:\n        local_ts: [10.97.0.1/32]\n        remote_ts: [%s]\n        manual:\n          proto: esp\n          enc: aes128gcm16\n", f[0], f[3])
		fmt.Fprintf(&b, "          in:  {spi: %s, key: 0x000102030405060708090a0b0c0d0e0f10111213}\n", f[1])
		fmt.Fprintf(&b, "          out: {spi: %s, key: 0x101112131415161718191a1b1c1d1e1f20212223}\n", f[2])
	}
	b.WriteString("tun:\n  mode: netstack\n  addresses: [10.97.0.1/24]\ncontrol:\n  socket: \"-\"\n")
	return b.String()
}

// spis returns the inbound SA of each child by name.
func spis(d *Daemon) map[string]*sad.SA {
	out := map[string]*sad.SA{}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, n := range d.names {
		for _, s := range d.SAD.List() {
			if s.Child == id && s.Dir == sad.Inbound {
				out[n.child] = d.SAD.Inbound(sad.ESP, s.SPI)
			}
		}
	}
	return out
}

func TestReload(t *testing.T) {
	port := freeUDPPort(t)
	path := filepath.Join(t.TempDir(), "goipsec.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(staticYAML(port, "one:0x1001:0x2001:10.97.1.0/24", "two:0x1002:0x2002:10.97.2.0/24"))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	go d.Serve(ctx)

	if err := d.Reload(ctx); !errors.Is(err, control.ErrConflict) {
		t.Errorf("reload without a file: %v", err)
	}
	d.SetConfigPath(path)
	before := spis(d)
	if len(before) != 2 || before["one"] == nil {
		t.Fatalf("SAs at start: %v", before)
	}

	// Keep one, change two's key, remove nothing, add three.
	write(staticYAML(port, "one:0x1001:0x2001:10.97.1.0/24", "two:0x1012:0x2012:10.97.2.0/24", "three:0x1003:0x2003:10.97.3.0/24"))
	if err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after := spis(d)
	if after["one"] != before["one"] {
		t.Error("the unchanged child's SA was replaced")
	}
	if after["two"] == nil || after["two"].SPI() != 0x1012 || d.SAD.Inbound(sad.ESP, 0x1002) != nil {
		t.Errorf("changed child: %v", after)
	}
	if after["three"] == nil || after["three"].SPI() != 0x1003 {
		t.Errorf("added child: %v", after)
	}
	if n := d.SPD.Len(); n != 3 {
		t.Errorf("%d policies, want 3", n)
	}
	if st := d.Status(); st.Children != 3 || st.SAsIn != 3 {
		t.Errorf("status %+v", st)
	}

	// Remove two.
	write(staticYAML(port, "one:0x1001:0x2001:10.97.1.0/24", "three:0x1003:0x2003:10.97.3.0/24"))
	if err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	now := spis(d)
	if now["one"] != before["one"] || now["three"] != after["three"] || now["two"] != nil || d.SPD.Len() != 2 {
		t.Errorf("after removing: %v, %d policies", now, d.SPD.Len())
	}

	// Refused: a bad file, a restart-only change, an SPI in use.
	for _, tc := range []struct{ text, want string }{
		{"connections: [\n", path},
		{strings.Replace(staticYAML(port, "one:0x1001:0x2001:10.97.1.0/24"), "10.97.0.1/24", "10.97.0.9/24", 1), "the tun section changed; restart the daemon"},
		{staticYAML(port+5, "one:0x1001:0x2001:10.97.1.0/24"), "local_port"},
		{staticYAML(port, "one:0x1001:0x2001:10.97.1.0/24", "three:0x1003:0x2003:10.97.3.0/24", "four:0x1001:0x2004:10.97.4.0/24"), "0x1001"},
	} {
		write(tc.text)
		err := d.Reload(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reload of a bad file: %v, want %q", err, tc.want)
		}
		if got := spis(d); len(got) != 2 || got["one"] != before["one"] || got["three"] != after["three"] {
			t.Errorf("a refused reload changed the SAs: %v", got)
		}
	}
}

// withConn adds to a daemon's YAML a second IKE connection "more" (its
// own identities, selectors and secret) towards the same peer.
func withConn(y string, p ikeTestPeer, me, them, localTS, remoteTS, start, secret string) string {
	more := fmt.Sprintf("  more:\n    local_addrs: [%s]\n    remote_addrs: [%s]\n    local_port: %d\n    remote_port: %d\n"+
		"    proposals: [%s]\n    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n"+
		"    children:\n      net:\n        local_ts: [%s]\n        remote_ts: [%s]\n        esp_proposals: [%s]\n        start_action: %s\n",
		p.addr, p.remote, p.port, p.remotePort, p.ike, me, them, localTS, remoteTS, p.esp, start)
	y = strings.Replace(y, "secrets:\n", more+"secrets:\n", 1)
	return strings.Replace(y, "secrets:\n", fmt.Sprintf("secrets:\n  more: {id: [%s, %s], secret: %q}\n", me, them, secret), 1)
}

// ikeSAsByConn returns, per connection, the SPIs of d's established IKE
// SA and its Child SAs.
func ikeSAsByConn(d *Daemon) map[string]string {
	out := map[string]string{}
	for _, sa := range d.IKE().IKESAs() {
		if sa.State != "ESTABLISHED" {
			continue
		}
		s := fmt.Sprintf("%016x_%016x", sa.SPIi, sa.SPIr)
		for _, c := range sa.Children {
			s += fmt.Sprintf(" %08x/%08x", c.SPIIn, c.SPIOut)
		}
		out[sa.Connection] += s
	}
	return out
}

// TestReloadIKE: a reload adds an IKE connection (started), restarts it
// when its secret changes and deletes it (the peer hears of it) when it
// is removed, while the unchanged connection keeps its IKE and Child SA
// SPIs and carries traffic throughout; it changes the log levels.
func TestReloadIKE(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "s"}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "s"}
	p := startDaemons(t, a, b)
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	keepA, keepB := ikeSAsByConn(p.a)["link"], ikeSAsByConn(p.b)["link"]
	logs, err := logging.New("json", zapcore.AddSync(io.Discard), logging.Levels{Default: zapcore.InfoLevel})
	if err != nil {
		t.Fatal(err)
	}
	p.a.SetLogs(logs, logging.Levels{Sub: map[string]zapcore.Level{"esp": zapcore.ErrorLevel}}, false)

	apply := func(d *Daemon, text string) {
		t.Helper()
		cfg, err := config.Parse("reload.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: never; a %v, b %v", what, ikeSAsByConn(p.a), ikeSAsByConn(p.b))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	unchanged := func(step string) {
		t.Helper()
		if got := ikeSAsByConn(p.a)["link"]; got != keepA {
			t.Errorf("%s: a's unchanged connection: %q, was %q", step, got, keepA)
		}
		if got := ikeSAsByConn(p.b)["link"]; got != keepB {
			t.Errorf("%s: b's unchanged connection: %q, was %q", step, got, keepB)
		}
	}
	moreA := func(secret, start string) string {
		return withConn(a.yaml(), a, "more-a.example.org", "more-b.example.org", "10.98.0.1/32", "10.98.0.3/32", start, secret)
	}
	moreB := func(secret string) string {
		return withConn(b.yaml(), b, "more-b.example.org", "more-a.example.org", "10.98.0.3/32", "10.98.0.1/32", "none", secret)
	}

	// Add "more" at both ends; a starts it.
	apply(p.b, moreB("first"))
	apply(p.a, moreA("first", "start")+"log:\n  level: info\n  levels: {ike: debug, esp: debug}\n")
	wait("more established", func() bool { return strings.Contains(ikeSAsByConn(p.a)["more"], "/") })
	unchanged("add")
	if lv := logs.Levels(); lv.Sub["ike"] != zapcore.DebugLevel || lv.Sub["esp"] != zapcore.ErrorLevel || lv.Sub["tun"] != zapcore.InfoLevel {
		t.Errorf("log levels after the reload: %v (ike from the file, esp from the command line)", lv)
	}
	first := ikeSAsByConn(p.a)["more"]

	// A new secret for "more": restarted at both ends.
	apply(p.b, moreB("second"))
	apply(p.a, moreA("second", "start"))
	wait("more re-established", func() bool {
		s := ikeSAsByConn(p.a)["more"]
		return strings.Contains(s, "/") && s != first && ikeSAsByConn(p.b)["more"] != ""
	})
	unchanged("secret changed")
	if lv := logs.Levels(); lv.Sub["ike"] != zapcore.InfoLevel {
		t.Errorf("ike log level after its key went: %v", lv.Sub["ike"])
	}

	// Remove "more" at a only: b hears the DELETE.
	apply(p.a, a.yaml())
	wait("more gone at both ends", func() bool {
		_, okA := ikeSAsByConn(p.a)["more"]
		_, okB := ikeSAsByConn(p.b)["more"]
		return !okA && !okB
	})
	unchanged("removed")
	if st := p.a.Status(); st.Children != 1 || st.SAsIn != 1 || st.SAsOut != 1 {
		t.Errorf("status after removing: %+v", st)
	}
	exchange(t, p, 64<<10)
	unchanged("traffic")

	// Refused, nothing changed: a new log format, an invalid proposal.
	for _, tc := range []struct{ text, want string }{
		{a.yaml() + "log:\n  format: json\n", "log.format changed; restart the daemon"},
		{strings.Replace(a.yaml(), "esp_proposals: [aes128gcm16]", "esp_proposals: [aes128gcm15]", 1), "esp_proposals"},
	} {
		cfg, err := config.Parse("reload.yaml", []byte(tc.text))
		if err == nil {
			err = p.a.Apply(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reload: %v, want %q", err, tc.want)
		}
	}
	unchanged("refused")
}

// TestReloadKernelRoutes: in kernel mode a reload may drop protected
// networks (their routes stay, fail closed) but not add any (routes are
// set at start).
func TestReloadKernelRoutes(t *testing.T) {
	kernel := func(children ...string) *config.Config {
		t.Helper()
		text := strings.Replace(staticYAML(4500, children...), "mode: netstack", "mode: kernel", 1)
		cfg, err := config.Parse("kernel.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	d, err := New(kernel("one:0x1001:0x2001:10.97.1.0/24", "two:0x1002:0x2002:10.97.2.0/24"), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.SAD.Close()
	if err := d.Install(); err != nil {
		t.Fatal(err)
	}
	err = d.Apply(kernel("one:0x1001:0x2001:10.97.1.0/24", "two:0x1002:0x2002:10.97.2.0/24", "three:0x1003:0x2003:10.97.3.0/24"))
	if err == nil || !strings.Contains(err.Error(), "10.97.3.0/24 is new") {
		t.Errorf("adding a network in kernel mode: %v", err)
	}
	if err := d.Apply(kernel("one:0x1001:0x2001:10.97.1.0/24")); err != nil {
		t.Errorf("removing a network in kernel mode: %v", err)
	}
	if n := d.SPD.Len(); n != 1 {
		t.Errorf("%d policies after removing one of two", n)
	}
	// What was dropped may come back: its route is still there.
	if err := d.Apply(kernel("one:0x1001:0x2001:10.97.1.0/24", "two:0x1002:0x2002:10.97.2.0/24")); err != nil {
		t.Errorf("re-adding a network whose route stayed: %v", err)
	}
	if n := d.SPD.Len(); n != 2 {
		t.Errorf("%d policies after re-adding", n)
	}
}
