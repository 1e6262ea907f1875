// Package metrics exports goipsec's counters to Prometheus: per-SA traffic
// and drops, the dataplane's counters and the IKE SAs by state, read at
// scrape time from the daemon's control.Backend (never from the packet
// path), and IKE's events (handshakes, rekeys, dead peers), counted as
// they happen by IKECounters, an ike.Observer.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goipsec/goipsec/internal/control"
)

// IKEStats are the IKE daemon's statistics read at scrape time.
type IKEStats struct {
	// SAs counts the IKE SAs by state (e.g. "connecting", "established",
	// "deleting").
	SAs map[string]int
	// Fragments counts IKE fragments (RFC 7383) by event: "sent",
	// "received" (authentic) and "rejected"; Reassembled counts the
	// messages reassembled from them.
	Fragments   map[string]uint64
	Reassembled uint64
}

// IKESource reports IKE statistics; it must be safe for concurrent use.
type IKESource interface {
	IKEStats() IKEStats
}

// Options are the optional sources of a Collector.
type Options struct {
	// IKE, if set, adds goipsec_ike_sas.
	IKE IKESource
	// IKECounters, if set, adds the IKE event counters.
	IKECounters *IKECounters
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("goipsec_"+name, help, labels, nil)
}

var saLabels = []string{"connection", "child", "spi", "direction", "transform"}

var (
	descInfo      = desc("build_info", "goipsec's version; always 1.", "version", "goversion")
	descStartTime = desc("start_time_seconds", "When the daemon started, in seconds since the Unix epoch.")
	descSAs       = desc("sas", "IPsec SAs installed, by direction.", "direction")
	descSAPackets = desc("sa_packets_total", "Packets protected (out) or accepted (in) by an IPsec SA.", saLabels...)
	descSABytes   = desc("sa_bytes_total", "Bytes of cleartext protected (out) or accepted (in) by an IPsec SA.", saLabels...)
	descSADrops   = desc("sa_drops_total", "Packets an IPsec SA dropped, by reason.",
		"connection", "child", "spi", "direction", "reason")
	descDPPackets = desc("dataplane_packets_total", "Packets through each stage of the dataplane.", "stage")
	descDPBytes   = desc("dataplane_bytes_total", "Bytes through each stage of the dataplane.", "stage")
	descDPDrops   = desc("dataplane_drops_total", "Packets the dataplane dropped, by reason (SA drops are in goipsec_sa_drops_total).", "reason")
	descDPErrors  = desc("dataplane_errors_total", "Socket errors of the dataplane, by operation.", "op")

	descKeepalives = desc("natt_keepalives_total", "NAT-T keepalives (RFC 3948), by direction (sent or received).", "direction")
	descIKESAs     = desc("ike_sas", "IKE SAs, by state.", "state")

	descIKEFragments   = desc("ike_fragments_total", "IKE fragments (RFC 7383), by event (sent, received, rejected).", "event")
	descIKEReassembled = desc("ike_reassembled_messages_total", "IKE messages reassembled from fragments.")
)

// Collector is a prometheus.Collector over a control.Backend.
type Collector struct {
	b   control.Backend
	ike IKESource
	ctr *IKECounters
}

// New returns a collector over b.
func New(b control.Backend, opts Options) *Collector {
	return &Collector{b: b, ike: opts.IKE, ctr: opts.IKECounters}
}

// Describe sends the descriptions of the metrics c exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descStartTime, descSAs, descSAPackets, descSABytes, descSADrops,
		descDPPackets, descDPBytes, descDPDrops, descDPErrors, descKeepalives} {
		ch <- d
	}
	if c.ike != nil {
		ch <- descIKESAs
		ch <- descIKEFragments
		ch <- descIKEReassembled
	}
	if c.ctr != nil {
		c.ctr.Describe(ch)
	}
}

// Collect reads the backend and sends the current values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descInfo, 1, st.Version, runtime.Version())
	if !st.Started.IsZero() {
		gauge(descStartTime, float64(st.Started.UnixNano())/1e9)
	}

	n := map[string]int{"in": 0, "out": 0}
	for _, sa := range c.b.ListSAs() {
		n[sa.Direction]++
		l := []string{sa.Connection, sa.Child, sa.SPI, sa.Direction, sa.Transform}
		counter(descSAPackets, sa.Packets, l...)
		counter(descSABytes, sa.Bytes, l...)
		for reason, v := range sa.Drops {
			counter(descSADrops, v, sa.Connection, sa.Child, sa.SPI, sa.Direction, reason)
		}
	}
	for dir, v := range n {
		gauge(descSAs, float64(v), dir)
	}

	d := st.Dataplane
	for _, s := range []struct {
		stage string
		v     uint64
	}{
		{"cleartext_in", d.CleartextPackets},
		{"sent", d.SentPackets},
		{"received", d.ReceivedPackets},
		{"delivered", d.Delivered},
		{"keepalive_rx", d.KeepalivesRx},
		{"keepalive_tx", d.KeepalivesTx},
		{"ike", d.IKE},
	} {
		counter(descDPPackets, s.v, s.stage)
	}
	counter(descDPBytes, d.CleartextBytes, "cleartext_in")
	counter(descDPBytes, d.SentBytes, "sent")
	counter(descDPBytes, d.ReceivedBytes, "received")
	for _, r := range d.Drops() {
		counter(descDPDrops, r.Value, r.Name)
	}
	counter(descDPErrors, d.SendErrors, "send")
	counter(descDPErrors, d.RecvErrors, "receive")
	counter(descKeepalives, d.KeepalivesTx, "sent")
	counter(descKeepalives, d.KeepalivesRx, "received")

	if c.ike != nil {
		s := c.ike.IKEStats()
		for state, v := range s.SAs {
			gauge(descIKESAs, float64(v), state)
		}
		for event, v := range s.Fragments {
			counter(descIKEFragments, v, event)
		}
		counter(descIKEReassembled, s.Reassembled)
	}
	if c.ctr != nil {
		c.ctr.Collect(ch)
	}
}

// NewRegistry returns a registry with c and the Go runtime and process
// collectors.
func NewRegistry(c *Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler returns the HTTP handler for the metrics endpoint: /metrics, and
// a pointer to it at /.
func Handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>goipsec</title></head><body><a href="/metrics">/metrics</a></body></html>`+"\n")
	})
	return mux
}

// Server is the metrics HTTP endpoint.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen opens the metrics endpoint on addr (host:port) for b.
func Listen(addr string, b control.Backend, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	h := Handler(NewRegistry(New(b, opts)))
	return &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr returns the address the endpoint listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers scrapes until ctx is done, then shuts down.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}
