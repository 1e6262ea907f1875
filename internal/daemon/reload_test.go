package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/control"
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
