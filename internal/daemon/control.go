package daemon

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/control"
	"github.com/goipsec/goipsec/internal/metrics"
	"github.com/goipsec/goipsec/sad"
)

// Version is the version the daemon reports; the command sets it.
var Version = "dev"

// startControl opens the control socket (unless disabled with "-") and the
// metrics endpoint when configured.
func (d *Daemon) startControl(ctx context.Context) error {
	if path := d.cfg.Control.Socket; path != "-" {
		srv, err := control.Listen(path, d, d.log.Named("control"))
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		d.cleanup = append(d.cleanup, func() { srv.Close() })
		go srv.Serve(ctx)
	}
	if addr := d.cfg.Control.Metrics; addr != "" {
		var opts metrics.Options
		if d.ike != nil {
			opts.IKE = ikeMetrics{d}
			opts.IKECounters = d.ike.counters
		}
		ms, err := metrics.Listen(addr, d, opts)
		if err != nil {
			return fmt.Errorf("metrics on %s: %w", addr, err)
		}
		d.metricsAddr = ms.Addr()
		d.log.Info("metrics", zap.Stringer("addr", ms.Addr()))
		go ms.Serve(ctx)
	}
	return nil
}

// MetricsAddr returns the address the metrics endpoint listens on once
// Start has run, or nil when none is configured.
func (d *Daemon) MetricsAddr() net.Addr { return d.metricsAddr }

// ikeMetrics reports the running IKE Manager's statistics to the metrics
// endpoint; it reports nothing before Start and after Close.
type ikeMetrics struct{ d *Daemon }

func (s ikeMetrics) IKEStats() metrics.IKEStats {
	m := s.d.ikeM.Load()
	if m == nil {
		return metrics.IKEStats{}
	}
	out := ikeStats(m.IKESAs())
	st := m.Stats()
	out.Fragments = map[string]uint64{"sent": st.FragmentsSent, "received": st.FragmentsReceived, "rejected": st.FragmentsRejected}
	out.Reassembled = st.Reassembled
	return out
}

// ikeStats counts the IKE SAs by state for the metrics (the events are
// counted by the Manager's Observer, metrics.IKECounters).
func ikeStats(sas []ike.IKESAStatus) metrics.IKEStats {
	out := metrics.IKEStats{SAs: map[string]int{}}
	for _, sa := range sas {
		out.SAs[strings.ToLower(sa.State)]++
	}
	return out
}

// Status reports the daemon's state for `goipsec status`.
func (d *Daemon) Status() control.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, out := d.SAD.Len()
	st := control.Status{
		Version:     Version,
		PID:         os.Getpid(),
		Started:     d.started,
		Listen:      d.LocalAddr().String(),
		TunMode:     d.cfg.Tun.Mode,
		Metrics:     d.cfg.Control.Metrics,
		Connections: len(d.cfg.Connections),
		Children:    len(d.names) + d.ikeChildren(),
		SAsIn:       in,
		SAsOut:      out,
		Dataplane:   control.CountersFrom(&d.Engine.Stats),
	}
	if d.cfg.Tun.Mode == "kernel" && d.dev != nil {
		st.TunName, _ = d.dev.Name()
	}
	return st
}

// ListSAs lists the SAs for `goipsec list-sas`. The times left of SAs
// negotiated with IKE are the IKE manager's rekey_time and life_time.
func (d *Daemon) ListSAs() []control.SA {
	type times struct{ rekey, expire time.Time }
	negotiated := map[sad.Dir]map[uint32]times{sad.Inbound: {}, sad.Outbound: {}}
	if m := d.ikeM.Load(); m != nil { // before d.mu: the manager calls into the daemon
		for _, ike := range m.IKESAs() {
			for _, c := range ike.Children {
				t := times{c.RekeyAt, c.ExpireAt}
				negotiated[sad.Inbound][c.SPIIn], negotiated[sad.Outbound][c.SPIOut] = t, t
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var out []control.SA
	for _, s := range d.SAD.List() {
		n := d.childName(s.Child)
		sa := control.SAFromSnapshot(s, n.conn, n.child, now)
		if t, ok := negotiated[s.Dir][s.SPI]; ok {
			if r := secondsUntil(t.rekey, now); r != nil {
				sa.RekeyInSeconds = r
			}
			if e := secondsUntil(t.expire, now); e != nil {
				sa.ExpiresInSeconds = e
			}
		}
		out = append(out, sa)
	}
	slices.SortFunc(out, func(a, b control.SA) int {
		return cmp.Or(cmp.Compare(a.Connection, b.Connection), cmp.Compare(a.Child, b.Child),
			cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.SPI, b.SPI))
	})
	return out
}

func (d *Daemon) find(name string) ([]sad.ChildID, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []sad.ChildID
	for id, n := range d.names {
		if n.conn == name || n.child == name || n.conn+"."+n.child == name {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no connection or child %q", control.ErrNotFound, name)
	}
	return ids, nil
}

// Initiate brings up an IKE connection or child and waits until it is up
// or failed; static children are always up.
func (d *Daemon) Initiate(ctx context.Context, name string) error {
	if found, err := d.ikeInitiate(ctx, name); found {
		return err
	}
	if _, err := d.find(name); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s has static keys and is installed at start", control.ErrConflict, name)
}

// Terminate removes a connection's (or child's) SAs; its policies stay, so
// its traffic is dropped from then on (fail closed).
func (d *Daemon) Terminate(ctx context.Context, name string) error {
	found, ikeErr := d.ikeTerminate(name)
	ids, err := d.find(name)
	if found && err != nil {
		return ikeErr
	}
	if err != nil {
		return err
	}
	for _, id := range ids {
		d.SAD.DeleteChild(id)
		d.log.Info("child terminated", zap.String("name", name), zap.Uint32("child", uint32(id)))
	}
	return nil
}

// Rekey rekeys the Child SAs of a connection or child negotiated with IKE.
func (d *Daemon) Rekey(ctx context.Context, name string) error {
	m := d.IKE()
	if m == nil || !m.Has(name) {
		if _, err := d.find(name); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s has static keys; rekeying needs IKE", control.ErrNotImplemented, name)
	}
	n, err := m.Rekey(name)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: no established Child SA to rekey (or a rekey is under way)", name)
	}
	d.log.Info("rekeying on request", zap.String("name", name), zap.Int("child_sas", n))
	return nil
}

// Reload re-reads the configuration file the daemon was started from and
// applies what changed (see ReloadFile).
func (d *Daemon) Reload(ctx context.Context) error {
	return d.ReloadFile(ctx)
}

// ListIKESAs lists the IKE SAs for `goipsec list-sas` (control.IKELister).
func (d *Daemon) ListIKESAs() []control.IKESA {
	m := d.ikeM.Load()
	if m == nil {
		return nil
	}
	now := time.Now()
	var out []control.IKESA
	for _, sa := range m.IKESAs() {
		ik := control.IKESA{Connection: sa.Connection, Serial: sa.Serial, State: sa.State, Initiator: sa.Initiator,
			SPIi: fmt.Sprintf("%016x", sa.SPIi), SPIr: fmt.Sprintf("%016x", sa.SPIr), Peer: sa.Remote.String(),
			LocalID: sa.LocalID, RemoteID: sa.RemoteID, Proposal: sa.Proposal, Established: sa.Established, Children: []string{}}
		if !sa.Established.IsZero() {
			ik.AgeSeconds = int64(now.Sub(sa.Established) / time.Second)
		}
		ik.RekeyInSeconds, ik.ReauthInSeconds, ik.ExpiresInSeconds = secondsUntil(sa.RekeyAt, now), secondsUntil(sa.ReauthAt, now), secondsUntil(sa.ExpireAt, now)
		for _, c := range sa.Children {
			if !slices.Contains(ik.Children, c.Name) {
				ik.Children = append(ik.Children, c.Name)
			}
		}
		out = append(out, ik)
	}
	return out
}

// secondsUntil is the whole seconds from now to t, nil for a zero t.
func secondsUntil(t, now time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := int64(t.Sub(now).Round(time.Second) / time.Second)
	return &v
}
