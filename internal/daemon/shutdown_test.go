package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/goipsec/goipsec/internal/config"
)

// TestGracefulShutdown: stopping a daemon deletes its IKE SAs, and the
// peer, told by the DELETE, removes its SAs at once (long before DPD).
func TestGracefulShutdown(t *testing.T) {
	p := startIKEPair(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16", "a shared secret", "a shared secret")
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	start := time.Now()
	p.a.Close() // what Run does once its context is cancelled by SIGTERM
	if el := time.Since(start); el > ShutdownTimeout+time.Second {
		t.Errorf("Close took %v", el)
	}
	deadline := time.Now().Add(2 * time.Second) // dpd_delay is 5s
	for {
		in, out := p.b.SAD.Len()
		if len(p.b.IKE().IKESAs()) == 0 && in+out == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer keeps IKE SAs %+v and %d Child SAs after the DELETE", p.b.IKE().IKESAs(), in+out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if in, out := p.a.SAD.Len(); in+out != 0 {
		t.Errorf("stopped daemon keeps %d SAs", in+out)
	}
	p.a.Close() // idempotent
}

// TestIKEMetrics scrapes the metrics endpoints after a handshake,
// traffic, a rekey and a handshake that fails for a wrong pre-shared key
// (from a third daemon), and checks the values.
func TestIKEMetrics(t *testing.T) {
	pa, pb, pc := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "s"}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "s"}
	c := a
	c.port, c.psk, c.start = pc, "not the secret", "none"
	withMetrics := func(y string) string {
		return strings.Replace(y, "  socket: \"-\"\n", "  socket: \"-\"\n  metrics: 127.0.0.1:0\n", 1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &ikeDaemons{cancel: cancel}
	ds := map[string]*Daemon{}
	for i, text := range []string{withMetrics(b.yaml()), withMetrics(a.yaml()), withMetrics(c.yaml())} {
		name := []string{"b", "a", "c"}[i]
		cfg, err := config.Parse(name, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		go d.Serve(ctx)
		ds[name] = d
	}
	p.a, p.b = ds["a"], ds["b"]
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	exchange(t, p, 64<<10)
	scrape := func(d *Daemon) string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://%s/metrics", d.MetricsAddr()))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	value := func(text, re string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s in\n%s", re, text)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	// Per-SA traffic, before the rekey replaces the SAs: at least the
	// 64 KiB sent from a to b, and the TCP acknowledgements back.
	for _, d := range []string{"a", "b"} {
		text := scrape(ds[d])
		for _, dir := range []string{"in", "out"} {
			re := regexp.MustCompile(`(?m)^goipsec_sa_bytes_total\{child="net",connection="link",direction="` + dir + `",spi="[^"]+",transform="aes128gcm16"\} (\S+)$`)
			sum := 0.0
			for _, m := range re.FindAllStringSubmatch(text, -1) {
				v, _ := strconv.ParseFloat(m[1], 64)
				sum += v
			}
			min := 1.0
			if (d == "a") == (dir == "out") {
				min = 64 << 10
			}
			if sum < min {
				t.Errorf("%s: %s bytes %v, want at least %v", d, dir, sum, min)
			}
		}
		if v := value(text, `goipsec_sa_drops_total\{child="net",connection="link",direction="in",reason="bad-icv",spi="[^"]+"\}`); v != 0 {
			t.Errorf("%s: bad-icv drops %v", d, v)
		}
	}
	if err := p.a.Rekey(ctx, "link"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := ds["c"].Initiate(wctx, "link"); err == nil || !strings.Contains(err.Error(), "AUTHENTICATION_FAILED") {
		t.Fatalf("initiate with a wrong key: %v", err)
	}

	// The rekey's answer may still be on its way.
	deadline := time.Now().Add(10 * time.Second)
	for value(scrape(p.b), `goipsec_ike_rekeys_total\{kind="child",role="responder"\}`) != 1 || value(scrape(p.a), `goipsec_ike_rekeys_total\{kind="child",role="initiator"\}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the child rekey was never counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct {
		d    string
		re   string
		want float64
	}{
		{"a", `goipsec_ike_handshakes_started_total\{role="initiator"\}`, 1},
		{"a", `goipsec_ike_handshakes_completed_total\{role="initiator"\}`, 1},
		{"a", `goipsec_ike_handshakes_started_total\{role="responder"\}`, 0},
		{"a", `goipsec_ike_sas\{state="established"\}`, 1},
		{"a", `goipsec_ike_rekeys_total\{kind="child",role="initiator"\}`, 1},
		{"a", `goipsec_ike_rekeys_total\{kind="ike",role="initiator"\}`, 0},
		{"a", `goipsec_ike_dpd_failures_total`, 0},
		{"a", `goipsec_natt_keepalives_total\{direction="sent"\}`, 0}, // no NAT between them
		{"b", `goipsec_ike_handshakes_started_total\{role="responder"\}`, 2},
		{"b", `goipsec_ike_handshakes_completed_total\{role="responder"\}`, 1},
		{"b", `goipsec_ike_handshakes_failed_total\{reason="authentication_failed",role="responder"\}`, 1},
		{"b", `goipsec_ike_rekeys_total\{kind="child",role="responder"\}`, 1},
		{"b", `goipsec_ike_sas\{state="established"\}`, 1},
		{"c", `goipsec_ike_handshakes_started_total\{role="initiator"\}`, 1},
		{"c", `goipsec_ike_handshakes_completed_total\{role="initiator"\}`, 0},
		{"c", `goipsec_ike_handshakes_failed_total\{reason="authentication_failed",role="initiator"\}`, 1},
	} {
		if got := value(scrape(ds[tc.d]), tc.re); got != tc.want {
			t.Errorf("%s: %s = %v, want %v", tc.d, tc.re, got, tc.want)
		}
	}
	if text := scrape(ds["c"]); strings.Contains(text, `goipsec_ike_sas{state="established"}`) {
		t.Error("c has an established IKE SA")
	}
}
