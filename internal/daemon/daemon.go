// Package daemon runs goipsec from a configuration: the cleartext side, the
// UDP socket, the SPD and SAD, the dataplane engine and (as it grows) IKE.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	wgtun "golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/internal/udp"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

// FWMark is the firewall mark the daemon's socket sets so that its own
// packets bypass the tunnel's policy routing (host-to-host links).
const FWMark = 0x4711

// Daemon is a running goipsec instance.
type Daemon struct {
	cfg    *config.Config
	log    *zap.Logger
	SPD    *spd.DB
	SAD    *sad.DB
	Engine *dataplane.Engine

	dev  wgtun.Device
	conn *udp.Conn
	// Net is the userspace network stack in netstack mode, else nil.
	Net     *netstack.Net
	cleanup []func()
	statics []*dataplane.StaticChild
	names   map[sad.ChildID]childName
	ike     *ikeState // nil when no child is negotiated with IKE
	// routes are the protected networks of the configuration the daemon
	// started with: in kernel mode, the routes into the TUN device.
	routes  []protectedRoute
	started time.Time

	// mu guards cfg, statics and names against a concurrent Reload
	// (reload.go); cfgPath is the file Reload reads.
	mu      sync.Mutex
	cfgPath string
	logc    *logControl // set by SetLogs (logs.go)
	// ikeM is the running IKE Manager, for the goroutines that outlive
	// Start (metrics and control, SA events and acquires): nil from Close
	// on, so they never read ike.m while stopIKE clears it.
	ikeM        atomic.Pointer[ike.Manager]
	metricsAddr net.Addr
	closeOnce   sync.Once
}

// childName is where a child comes from in the configuration.
type childName struct{ conn, child string }

// New builds a daemon from cfg without starting anything.
func New(cfg *config.Config, log *zap.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, SPD: spd.New(spd.Discard), SAD: sad.New(sad.Options{})}
	d.Engine = dataplane.New(d.SPD, d.SAD, log.Named("esp"))
	var err error
	if d.statics, d.names, err = staticChildren(cfg); err != nil {
		return nil, err
	}
	if d.ike, err = newIKE(cfg); err != nil {
		return nil, err
	}
	d.routes = d.protectedRoutes()
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	return d, nil
}

// staticChildren turns the manual children of cfg into dataplane children.
func staticChildren(cfg *config.Config) ([]*dataplane.StaticChild, map[sad.ChildID]childName, error) {
	var out []*dataplane.StaticChild
	names := map[sad.ChildID]childName{}
	conns := make([]string, 0, len(cfg.Connections))
	for n := range cfg.Connections {
		conns = append(conns, n)
	}
	sort.Strings(conns)
	id := sad.ChildID(0)
	for _, cn := range conns {
		conn := cfg.Connections[cn]
		children := make([]string, 0, len(conn.Children))
		for n := range conn.Children {
			children = append(children, n)
		}
		sort.Strings(children)
		for _, chn := range children {
			ch := conn.Children[chn]
			where := fmt.Sprintf("connections.%s.children.%s", cn, chn)
			if ch.Manual == nil {
				continue // negotiated with IKE (ike.go)
			}
			id++
			sc, err := static(id, where, conn, ch)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, sc)
			names[id] = childName{cn, chn}
		}
	}
	return out, names, nil
}

func firstAddr(list []string) (netip.Addr, bool) {
	for _, s := range list {
		if a, err := netip.ParseAddr(s); err == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func static(id sad.ChildID, where string, conn *config.Connection, ch *config.Child) (*dataplane.StaticChild, error) {
	m := ch.Manual
	if m.Proto != "esp" {
		return nil, fmt.Errorf("%s.manual.proto: only esp is wired into the dataplane yet", where)
	}
	remote, ok := firstAddr(conn.RemoteAddrs)
	if !ok {
		return nil, fmt.Errorf("%s: static keys need an IP address in remote_addrs", where)
	}
	local, _ := firstAddr(conn.LocalAddrs)
	port := conn.RemotePort
	if port == 0 {
		port = config.DefaultNATTPort
	}
	sc := &dataplane.StaticChild{
		ID:     id,
		Peer:   netip.AddrPortFrom(remote, port),
		Local:  ch.LocalPrefixes,
		Remote: ch.RemotePrefixes,
	}
	// "dynamic" selectors are the connection's own addresses.
	if len(sc.Local) == 0 {
		if !local.IsValid() {
			return nil, fmt.Errorf("%s.local_ts: dynamic needs an IP address in local_addrs", where)
		}
		sc.Local = []netip.Prefix{netip.PrefixFrom(local, local.BitLen())}
	}
	if len(sc.Remote) == 0 {
		sc.Remote = []netip.Prefix{netip.PrefixFrom(remote, remote.BitLen())}
	}
	sc.Mode = sad.Tunnel
	if ch.Mode == "transport" {
		sc.Mode = sad.Transport
		if len(sc.Local) != 1 || !sc.Local[0].IsSingleIP() || len(sc.Remote) != 1 || !sc.Remote[0].IsSingleIP() {
			return nil, fmt.Errorf("%s: transport mode protects host to host: local_ts and remote_ts must be single addresses", where)
		}
		sc.InnerLocal, sc.InnerRemote = sc.Local[0].Addr(), sc.Remote[0].Addr()
		if sc.InnerLocal.Is4() != sc.InnerRemote.Is4() {
			return nil, fmt.Errorf("%s: local_ts and remote_ts are of different address families", where)
		}
	}
	window := *ch.ReplayWindow
	if window == 0 {
		window = -1 // configured off
	}
	mk := func(k config.ManualKey) *esp.Config {
		return &esp.Config{SPI: k.SPI, Enc: m.EncAlg, EncKey: k.Key, Integ: m.IntegAlg, IntegKey: k.AuthKey, ESN: m.ESN, ReplayWindow: window}
	}
	sc.In, sc.Out = mk(m.In), mk(m.Out)
	return sc, nil
}

// Install puts the static children into the SPD and SAD.
func (d *Daemon) Install() error {
	for _, sc := range d.statics {
		if err := d.Engine.InstallStatic(sc); err != nil {
			return err
		}
		d.log.Named("spd").Info("static child installed", zap.Uint32("child", uint32(sc.ID)), zap.Stringer("mode", sc.Mode),
			zap.String("spi_in", fmt.Sprintf("%#x", sc.In.SPI)), zap.String("spi_out", fmt.Sprintf("%#x", sc.Out.SPI)), zap.Stringer("peer", sc.Peer),
			zap.String("alg", espName(sc.Out)))
	}
	return nil
}

func espName(c *esp.Config) string {
	if c.Integ != nil {
		return c.Enc.Name + "-" + c.Integ.Name
	}
	return c.Enc.Name
}

// Run starts the daemon and blocks until ctx is done or the dataplane fails,
// then tears down what it set up.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	if err := d.Start(ctx); err != nil {
		return err
	}
	return d.Serve(ctx)
}

// Start installs the SAs and policies and opens the socket and the
// cleartext side; packets flow once Serve runs. Close undoes it.
func (d *Daemon) Start(ctx context.Context) error {
	d.started = time.Now()
	if err := d.Install(); err != nil {
		return err
	}
	if err := d.openSocket(); err != nil {
		return err
	}
	if err := d.openCleartext(ctx); err != nil {
		return err
	}
	if err := d.startControl(ctx); err != nil {
		return err
	}
	if err := d.startIKE(); err != nil {
		return err
	}
	if m := d.IKE(); m != nil {
		d.ikeM.Store(m)
	}
	go d.SAD.Run(ctx)
	go d.logEvents(ctx)
	d.log.Info("running", zap.Stringer("listen", d.conn.LocalAddr()), zap.String("tun", d.cfg.Tun.Mode))
	return nil
}

// Serve moves packets until ctx is done or the dataplane fails.
func (d *Daemon) Serve(ctx context.Context) error {
	err := d.Engine.Run(ctx, d.dev, d.conn)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (d *Daemon) logEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-d.SAD.Events():
			d.log.Named("esp").Info("SA event", zap.Stringer("kind", ev.Kind), zap.Stringer("reason", ev.Reason), zap.Uint32("spi", ev.SPI), zap.Stringer("dir", ev.Dir))
			if m := d.ikeM.Load(); m != nil {
				m.SAEvent(ev) // lifetimes of negotiated SAs: rekey or delete
			}
		case acq := <-d.Engine.Acquires():
			if m := d.ikeM.Load(); m != nil {
				m.Acquire(acq.Child)
				continue
			}
			d.log.Warn("traffic for a child without SAs dropped (no IKE to acquire them)", zap.Uint32("child", uint32(acq.Child)), zap.Stringer("dst", acq.Flow.Dst))
		}
	}
}

// listenAddr is the UDP (NAT-T) address to listen on: the first
// connection's local_port, else 4500 (local_port 500 is plain IKE, with
// NAT-T on 4500: see ike.go).
func (d *Daemon) listenAddr() netip.AddrPort {
	port := uint16(config.DefaultNATTPort)
	var addr netip.Addr
	names := make([]string, 0, len(d.cfg.Connections))
	for n := range d.cfg.Connections {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 0 {
		c := d.cfg.Connections[names[0]]
		if c.LocalPort != 0 && c.LocalPort != 500 {
			port = c.LocalPort // 500 is plain IKE (ike.go); NAT-T stays on 4500
		}
		addr, _ = firstAddr(c.LocalAddrs)
	}
	return netip.AddrPortFrom(addr, port)
}

// Close tears down in reverse order what Run set up: it first deletes the
// IKE SAs, telling the peers (bounded by ShutdownTimeout, see shutdown.go),
// then closes the sockets and the cleartext side and removes the routes.
// It is safe to call more than once.
func (d *Daemon) Close() { d.closeOnce.Do(d.close) }

func (d *Daemon) close() {
	d.ikeM.Store(nil)
	d.deleteIKESAs(ShutdownTimeout)
	d.stopIKE()
	if d.conn != nil {
		d.conn.Close()
	}
	if d.dev != nil {
		d.dev.Close()
	}
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		d.cleanup[i]()
	}
	d.cleanup = nil
	d.SAD.Close()
}
