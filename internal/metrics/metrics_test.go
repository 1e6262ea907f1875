package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/control"
)

// fakeBackend serves canned data; scrapes counts the Status calls.
type fakeBackend struct {
	status  control.Status
	sas     []control.SA
	scrapes atomic.Int64
}

func (f *fakeBackend) Status() control.Status {
	f.scrapes.Add(1)
	return f.status
}
func (f *fakeBackend) ListSAs() []control.SA                   { return f.sas }
func (f *fakeBackend) Initiate(context.Context, string) error  { return nil }
func (f *fakeBackend) Terminate(context.Context, string) error { return nil }
func (f *fakeBackend) Rekey(context.Context, string) error     { return nil }
func (f *fakeBackend) Reload(context.Context) error            { return nil }

func drops(kv ...any) map[string]uint64 {
	m := map[string]uint64{"bad-icv": 0, "replay": 0, "too-old": 0, "policy": 0, "bad-length": 0, "bad-padding": 0, "expired": 0, "other": 0}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = uint64(kv[i+1].(int))
	}
	return m
}

func newFake() *fakeBackend {
	return &fakeBackend{
		status: control.Status{
			Version: "1.2.3",
			Started: time.Unix(1700000000, 500000000),
			Dataplane: control.Counters{
				CleartextPackets: 100, CleartextBytes: 10000,
				SentPackets: 90, SentBytes: 12000,
				ReceivedPackets: 80, ReceivedBytes: 11000,
				Delivered: 70, KeepalivesRx: 3, KeepalivesTx: 4, IKE: 5,
				NoSA: 6, Discarded: 7, Bypassed: 8, BadPacket: 9, SealErrors: 10, UnknownSPI: 11,
				Invalid: 12, InboundSA: 13, Dummy: 14, SendErrors: 15, RecvErrors: 16,
			},
		},
		sas: []control.SA{
			{Connection: "home", Child: "link", Direction: "in", SPI: "0x00001001", Transform: "aes128gcm16",
				Packets: 10, Bytes: 1234, Drops: drops("bad-icv", 3, "replay", 1)},
			{Connection: "home", Child: "link", Direction: "out", SPI: "0x00002002", Transform: "aes128gcm16",
				Packets: 12, Bytes: 5678, Drops: drops()},
		},
	}
}

const header = `
# HELP goipsec_sa_packets_total Packets protected (out) or accepted (in) by an IPsec SA.
# TYPE goipsec_sa_packets_total counter
goipsec_sa_packets_total{child="link",connection="home",direction="in",spi="0x00001001",transform="aes128gcm16"} 10
goipsec_sa_packets_total{child="link",connection="home",direction="out",spi="0x00002002",transform="aes128gcm16"} 12
# HELP goipsec_sa_bytes_total Bytes of cleartext protected (out) or accepted (in) by an IPsec SA.
# TYPE goipsec_sa_bytes_total counter
goipsec_sa_bytes_total{child="link",connection="home",direction="in",spi="0x00001001",transform="aes128gcm16"} 1234
goipsec_sa_bytes_total{child="link",connection="home",direction="out",spi="0x00002002",transform="aes128gcm16"} 5678
# HELP goipsec_sas IPsec SAs installed, by direction.
# TYPE goipsec_sas gauge
goipsec_sas{direction="in"} 1
goipsec_sas{direction="out"} 1
# HELP goipsec_dataplane_packets_total Packets through each stage of the dataplane.
# TYPE goipsec_dataplane_packets_total counter
goipsec_dataplane_packets_total{stage="cleartext_in"} 100
goipsec_dataplane_packets_total{stage="sent"} 90
goipsec_dataplane_packets_total{stage="received"} 80
goipsec_dataplane_packets_total{stage="delivered"} 70
goipsec_dataplane_packets_total{stage="keepalive_rx"} 3
goipsec_dataplane_packets_total{stage="keepalive_tx"} 4
goipsec_dataplane_packets_total{stage="ike"} 5
# HELP goipsec_dataplane_bytes_total Bytes through each stage of the dataplane.
# TYPE goipsec_dataplane_bytes_total counter
goipsec_dataplane_bytes_total{stage="cleartext_in"} 10000
goipsec_dataplane_bytes_total{stage="sent"} 12000
goipsec_dataplane_bytes_total{stage="received"} 11000
# HELP goipsec_dataplane_drops_total Packets the dataplane dropped, by reason (SA drops are in goipsec_sa_drops_total).
# TYPE goipsec_dataplane_drops_total counter
goipsec_dataplane_drops_total{reason="no_sa"} 6
goipsec_dataplane_drops_total{reason="discarded"} 7
goipsec_dataplane_drops_total{reason="bypassed"} 8
goipsec_dataplane_drops_total{reason="bad_packet"} 9
goipsec_dataplane_drops_total{reason="seal_error"} 10
goipsec_dataplane_drops_total{reason="unknown_spi"} 11
goipsec_dataplane_drops_total{reason="invalid"} 12
goipsec_dataplane_drops_total{reason="inbound_sa"} 13
goipsec_dataplane_drops_total{reason="dummy"} 14
# HELP goipsec_dataplane_errors_total Socket errors of the dataplane, by operation.
# TYPE goipsec_dataplane_errors_total counter
goipsec_dataplane_errors_total{op="send"} 15
goipsec_dataplane_errors_total{op="receive"} 16
# HELP goipsec_start_time_seconds When the daemon started, in seconds since the Unix epoch.
# TYPE goipsec_start_time_seconds gauge
goipsec_start_time_seconds 1.7000000005e+09
`

func TestCollect(t *testing.T) {
	c := New(newFake(), Options{})
	err := testutil.CollectAndCompare(c, strings.NewReader(header),
		"goipsec_sa_packets_total", "goipsec_sa_bytes_total", "goipsec_sas", "goipsec_dataplane_packets_total",
		"goipsec_dataplane_bytes_total", "goipsec_dataplane_drops_total", "goipsec_dataplane_errors_total",
		"goipsec_start_time_seconds")
	if err != nil {
		t.Error(err)
	}
	// Drops: every reason of every SA, zeros included (so rate() works
	// from the SA's first scrape).
	if n := testutil.CollectAndCount(c, "goipsec_sa_drops_total"); n != 16 {
		t.Errorf("%d goipsec_sa_drops_total series, want 16", n)
	}
	info := `
# HELP goipsec_build_info goipsec's version; always 1.
# TYPE goipsec_build_info gauge
goipsec_build_info{goversion="` + runtime.Version() + `",version="1.2.3"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(info), "goipsec_build_info"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// No IKE source: no IKE metrics, not even zeros.
	if n := testutil.CollectAndCount(c, "goipsec_ike_sas", "goipsec_ike_handshakes_started_total", "goipsec_ike_dpd_failures_total"); n != 0 {
		t.Errorf("%d IKE series without an IKE source", n)
	}
}

func TestNoSAs(t *testing.T) {
	f := newFake()
	f.sas = nil
	f.status.Started = time.Time{}
	c := New(f, Options{})
	want := `
# HELP goipsec_sas IPsec SAs installed, by direction.
# TYPE goipsec_sas gauge
goipsec_sas{direction="in"} 0
goipsec_sas{direction="out"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "goipsec_sas", "goipsec_sa_packets_total", "goipsec_start_time_seconds"); err != nil {
		t.Error(err)
	}
}

type fakeIKE struct{}

func (fakeIKE) IKEStats() IKEStats {
	return IKEStats{SAs: map[string]int{"established": 2, "connecting": 1},
		Fragments: map[string]uint64{"sent": 7, "received": 6, "rejected": 1}, Reassembled: 2}
}

func TestIKE(t *testing.T) {
	ctr := NewIKECounters()
	c := New(newFake(), Options{IKE: fakeIKE{}, IKECounters: ctr})
	// What an IKE Manager would report: two handshakes started as
	// initiator, one as responder; a wrong key; a retry; rekeys; a dead
	// peer; a refused child.
	ctr.HandshakeStarted(true)
	ctr.HandshakeStarted(true)
	ctr.HandshakeStarted(false)
	ctr.HandshakeCompleted(true)
	ctr.HandshakeCompleted(false)
	ctr.HandshakeFailed(true, ike.FailureReason(&ike.AuthError{}))
	ctr.HandshakeRetried(ike.ReasonInvalidKE)
	ctr.ChildSAFailed(false, ike.ReasonTSUnacceptable)
	ctr.Rekeyed(ike.RekeyChild, true)
	ctr.Rekeyed(ike.RekeyChild, true)
	ctr.Rekeyed(ike.RekeyIKE, false)
	ctr.PeerDead()
	want := `
# HELP goipsec_ike_sas IKE SAs, by state.
# TYPE goipsec_ike_sas gauge
goipsec_ike_sas{state="connecting"} 1
goipsec_ike_sas{state="established"} 2
# HELP goipsec_ike_handshakes_started_total IKE handshakes (IKE_SA_INIT and IKE_AUTH) started, by our role (initiator or responder).
# TYPE goipsec_ike_handshakes_started_total counter
goipsec_ike_handshakes_started_total{role="initiator"} 2
goipsec_ike_handshakes_started_total{role="responder"} 1
# HELP goipsec_ike_handshakes_completed_total IKE handshakes that established an IKE SA, by our role.
# TYPE goipsec_ike_handshakes_completed_total counter
goipsec_ike_handshakes_completed_total{role="initiator"} 1
goipsec_ike_handshakes_completed_total{role="responder"} 1
# HELP goipsec_ike_handshakes_failed_total IKE handshakes that failed, by our role and reason (authentication_failed, no_proposal_chosen, invalid_ke_payload, invalid_syntax, timeout, aborted, peer_error, other).
# TYPE goipsec_ike_handshakes_failed_total counter
goipsec_ike_handshakes_failed_total{reason="authentication_failed",role="initiator"} 1
# HELP goipsec_ike_handshake_retries_total IKE_SA_INIT requests sent again because the responder asked for another key exchange (invalid_ke_payload) or a cookie.
# TYPE goipsec_ike_handshake_retries_total counter
goipsec_ike_handshake_retries_total{reason="invalid_ke_payload"} 1
# HELP goipsec_ike_child_sa_failures_total Child SA negotiations that failed on an IKE SA that stays, by our role and reason (ts_unacceptable, no_proposal_chosen, ...).
# TYPE goipsec_ike_child_sa_failures_total counter
goipsec_ike_child_sa_failures_total{reason="ts_unacceptable",role="responder"} 1
# HELP goipsec_ike_rekeys_total Rekeys completed, by kind (ike or child) and our role (initiator or responder); a rekey collision counts both SAs made.
# TYPE goipsec_ike_rekeys_total counter
goipsec_ike_rekeys_total{kind="child",role="initiator"} 2
goipsec_ike_rekeys_total{kind="child",role="responder"} 0
goipsec_ike_rekeys_total{kind="ike",role="initiator"} 0
goipsec_ike_rekeys_total{kind="ike",role="responder"} 1
# HELP goipsec_ike_dpd_failures_total Peers declared dead (no answer to a liveness check or another request of an established IKE SA); their SAs were deleted.
# TYPE goipsec_ike_dpd_failures_total counter
goipsec_ike_dpd_failures_total 1
# HELP goipsec_natt_keepalives_total NAT-T keepalives (RFC 3948), by direction (sent or received).
# TYPE goipsec_natt_keepalives_total counter
goipsec_natt_keepalives_total{direction="received"} 3
goipsec_natt_keepalives_total{direction="sent"} 4
# HELP goipsec_ike_fragments_total IKE fragments (RFC 7383), by event (sent, received, rejected).
# TYPE goipsec_ike_fragments_total counter
goipsec_ike_fragments_total{event="received"} 6
goipsec_ike_fragments_total{event="rejected"} 1
goipsec_ike_fragments_total{event="sent"} 7
# HELP goipsec_ike_reassembled_messages_total IKE messages reassembled from fragments.
# TYPE goipsec_ike_reassembled_messages_total counter
goipsec_ike_reassembled_messages_total 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "goipsec_ike_sas", "goipsec_ike_handshakes_started_total",
		"goipsec_ike_handshakes_completed_total", "goipsec_ike_handshakes_failed_total", "goipsec_ike_handshake_retries_total",
		"goipsec_ike_child_sa_failures_total", "goipsec_ike_rekeys_total", "goipsec_ike_dpd_failures_total",
		"goipsec_natt_keepalives_total", "goipsec_ike_fragments_total", "goipsec_ike_reassembled_messages_total"); err != nil {
		t.Error(err)
	}
	if problems, _ := testutil.CollectAndLint(c); len(problems) != 0 {
		t.Errorf("lint: %v", problems)
	}
}

// scrape GETs /metrics from h and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value returns the value of the series of fam with the given labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	fam := fams[name]
	if fam == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch fam.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestHTTPScrape(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(Handler(NewRegistry(New(f, Options{}))))
	defer srv.Close()

	fams := scrape(t, srv.URL+"/metrics")
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"goipsec_sa_packets_total", map[string]string{"connection": "home", "child": "link", "spi": "0x00001001", "direction": "in", "transform": "aes128gcm16"}, 10},
		{"goipsec_sa_bytes_total", map[string]string{"connection": "home", "child": "link", "spi": "0x00002002", "direction": "out", "transform": "aes128gcm16"}, 5678},
		{"goipsec_sa_drops_total", map[string]string{"connection": "home", "child": "link", "spi": "0x00001001", "direction": "in", "reason": "bad-icv"}, 3},
		{"goipsec_sa_drops_total", map[string]string{"connection": "home", "child": "link", "spi": "0x00001001", "direction": "in", "reason": "replay"}, 1},
		{"goipsec_sa_drops_total", map[string]string{"connection": "home", "child": "link", "spi": "0x00002002", "direction": "out", "reason": "bad-icv"}, 0},
		{"goipsec_sas", map[string]string{"direction": "out"}, 1},
		{"goipsec_dataplane_packets_total", map[string]string{"stage": "delivered"}, 70},
		{"goipsec_dataplane_drops_total", map[string]string{"reason": "unknown_spi"}, 11},
		{"goipsec_dataplane_errors_total", map[string]string{"op": "receive"}, 16},
	} {
		if got := value(t, fams, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The Go runtime's and the process's metrics are there too.
	if fams["go_goroutines"] == nil {
		t.Error("no go_goroutines")
	}
	if runtime.GOOS == "linux" && fams["process_start_time_seconds"] == nil {
		t.Error("no process_start_time_seconds")
	}

	// Values are read at scrape time.
	f.sas[0].Packets = 11
	f.status.Dataplane.Delivered = 71
	fams = scrape(t, srv.URL+"/metrics")
	if got := value(t, fams, "goipsec_sa_packets_total", map[string]string{"connection": "home", "child": "link", "spi": "0x00001001", "direction": "in", "transform": "aes128gcm16"}); got != 11 {
		t.Errorf("second scrape: packets %v", got)
	}
	if got := value(t, fams, "goipsec_dataplane_packets_total", map[string]string{"stage": "delivered"}); got != 71 {
		t.Errorf("second scrape: delivered %v", got)
	}
	if n := f.scrapes.Load(); n != 2 {
		t.Errorf("backend read %d times for 2 scrapes", n)
	}

	resp, err := http.Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nope: %s", resp.Status)
	}
}

func TestServe(t *testing.T) {
	s, err := Listen("127.0.0.1:0", newFake(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	fams := scrape(t, "http://"+s.Addr().String()+"/metrics")
	if got := value(t, fams, "goipsec_sas", map[string]string{"direction": "in"}); got != 1 {
		t.Errorf("goipsec_sas{in} = %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr().String() + "/metrics"); err == nil {
		t.Error("still serving after shutdown")
	}
}
