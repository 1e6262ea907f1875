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

// TestIKEMetrics scrapes the metrics endpoint after a handshake and
// traffic.
func TestIKEMetrics(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	a := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pa, remotePort: pb, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "a.example.org", peerID: "b.example.org", tunAddr: "10.98.0.1", peerTun: "10.98.0.2", start: "start", psk: "s"}
	b := ikeTestPeer{addr: "127.0.0.1", remote: "127.0.0.1", port: pb, remotePort: pa, ike: "aes128gcm16-prfsha256-x25519", esp: "aes128gcm16",
		id: "b.example.org", peerID: "a.example.org", tunAddr: "10.98.0.2", peerTun: "10.98.0.1", start: "none", psk: "s"}
	withMetrics := func(y string) string {
		return strings.Replace(y, "  socket: \"-\"\n", "  socket: \"-\"\n  metrics: 127.0.0.1:0\n", 1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &ikeDaemons{cancel: cancel}
	for i, text := range []string{withMetrics(b.yaml()), withMetrics(a.yaml())} {
		name := []string{"b", "a"}[i]
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
		if name == "a" {
			p.a = d
		} else {
			p.b = d
		}
	}
	waitChild(t, p.a, true)
	waitChild(t, p.b, true)
	exchange(t, p, 64<<10)

	for _, d := range []*Daemon{p.a, p.b} {
		resp, err := http.Get(fmt.Sprintf("http://%s/metrics", d.MetricsAddr()))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		value := func(re string) float64 {
			t.Helper()
			m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(text)
			if m == nil {
				t.Fatalf("no %s in\n%s", re, text)
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			return v
		}
		if v := value(`goipsec_ike_handshakes_completed_total`); v < 1 {
			t.Errorf("handshakes completed %v", v)
		}
		if v := value(`goipsec_ike_handshakes_started_total`); v < 1 {
			t.Errorf("handshakes started %v", v)
		}
		if v := value(`goipsec_ike_sas\{state="established"\}`); v != 1 {
			t.Errorf("established IKE SAs %v", v)
		}
		for _, dir := range []string{"in", "out"} {
			re := `goipsec_sa_packets_total\{child="net",connection="link",direction="` + dir + `",spi="[^"]+",transform="[^"]+"\}`
			if v := value(re); v == 0 {
				t.Errorf("%s packets %v", dir, v)
			}
		}
	}
}
