package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/ike/ts"
	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/control"
	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/internal/metrics"
	"github.com/goipsec/goipsec/internal/udp"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

// ikeState is the daemon's IKE: the Manager, the plain IKE socket (port
// 500) and the queue of messages from the NAT-T socket.
type ikeState struct {
	cfg     *ike.Config
	m       *ike.Manager
	plain   *udp.Conn
	in      chan ikeMsg
	keyHook func(ike.KeyMaterial)
	// counters count the Manager's events for the metrics endpoint.
	counters *metrics.IKECounters
	dropped  atomic.Uint64
	done     chan struct{}
	wg       sync.WaitGroup
}

// ikeMsg is an IKE message from the NAT-T socket, copied out of the
// dataplane's buffer.
type ikeMsg struct {
	b    []byte
	from netip.AddrPort
}

// ikeQueueLen bounds the IKE messages waiting for the Manager; more are
// dropped (and retransmitted by their senders).
const ikeQueueLen = 256

// hasIKE reports whether some child is negotiated with IKE.
func hasIKE(cfg *config.Config) bool {
	for _, c := range cfg.Connections {
		for _, ch := range c.Children {
			if ch.Manual == nil {
				return true
			}
		}
	}
	return false
}

// newIKE builds the IKE configuration from the daemon's: every child
// without manual keys, in its connection.
func newIKE(cfg *config.Config) (*ikeState, error) {
	if !hasIKE(cfg) {
		return nil, nil
	}
	ic := &ike.Config{}
	names := make([]string, 0, len(cfg.Connections))
	for n := range cfg.Connections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c, err := ikeConnection(name, cfg.Connections[name])
		if err != nil {
			return nil, err
		}
		if c != nil {
			ic.Connections = append(ic.Connections, c)
		}
	}
	snames := make([]string, 0, len(cfg.Secrets))
	for n := range cfg.Secrets {
		snames = append(snames, n)
	}
	sort.Strings(snames)
	for _, name := range snames {
		s := cfg.Secrets[name]
		where := "secrets." + name
		raw := s.Secret
		switch {
		case s.File != "":
			b, err := os.ReadFile(s.File)
			if err != nil {
				return nil, fmt.Errorf("%s.file: %w", where, err)
			}
			raw = strings.TrimRight(string(b), "\r\n")
		case s.Env != "":
			v, ok := os.LookupEnv(s.Env)
			if !ok {
				return nil, fmt.Errorf("%s.env: environment variable %s is not set", where, s.Env)
			}
			raw = v
		}
		key, err := ike.ParsePSK(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		ic.Secrets = append(ic.Secrets, &ike.Secret{IDs: s.ID, Key: key})
	}
	if err := ic.Validate(); err != nil {
		return nil, err
	}
	return &ikeState{cfg: ic, counters: metrics.NewIKECounters()}, nil
}

// strongSwan's default rekey times: 4 h for IKE SAs, 1 h for Child SAs.
const (
	ikeRekeyTime   = 4 * time.Hour
	childRekeyTime = time.Hour
)

// rekeyTime is a configured rekey_time: unset (0) means strongSwan's
// default, negative disables rekeying.
func rekeyTime(d config.Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return max(time.Duration(d), 0)
}

// ikeConnection converts one connection; nil if all its children are
// manually keyed.
func ikeConnection(name string, c *config.Connection) (*ike.Connection, error) {
	where := "connections." + name
	out := &ike.Connection{Name: name, RemotePort: c.RemotePort, Encap: c.Encap, DPDDelay: time.Duration(c.DPDDelay),
		RekeyTime: rekeyTime(c.RekeyTime, ikeRekeyTime), OverTime: optDuration(c.OverTime), RandTime: optDuration(c.RandTime),
		ReauthTime: time.Duration(c.ReauthTime), KeyingTries: keyingTries(c.KeyingTries),
		LocalID: c.Local.ID, RemoteID: c.Remote.ID}
	out.Fragmentation, out.FragmentSize = c.Fragmentation, c.FragmentSize
	if err := ikeAuth(where, c, out); err != nil {
		return nil, err
	}
	for i, a := range c.LocalAddrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			if a == "%any" || a == "%any4" || a == "%any6" {
				continue
			}
			return nil, fmt.Errorf("%s.local_addrs[%d]: IKE wants an IP address here, got %q", where, i, a)
		}
		out.LocalAddrs = append(out.LocalAddrs, ip.Unmap())
	}
	for i, a := range c.RemoteAddrs {
		ps, err := remotePrefixes(a)
		if err != nil {
			return nil, fmt.Errorf("%s.remote_addrs[%d]: %w", where, i, err)
		}
		out.RemoteAddrs = append(out.RemoteAddrs, ps...)
	}
	var err error
	if len(c.Proposals) > 0 {
		if out.Proposals, err = proposal.ParseList(message.ProtoIKE, c.Proposals); err != nil {
			return nil, fmt.Errorf("%s.proposals: %w", where, err)
		}
	}
	chNames := make([]string, 0, len(c.Children))
	for n := range c.Children {
		chNames = append(chNames, n)
	}
	sort.Strings(chNames)
	for _, chName := range chNames {
		ch := c.Children[chName]
		if ch.Manual != nil {
			continue
		}
		cw := where + ".children." + chName
		oc := &ike.Child{Name: chName, Mode: sad.Tunnel, StartAction: ch.StartAction, RekeyTime: rekeyTime(ch.RekeyTime, childRekeyTime),
			LifeTime: time.Duration(ch.LifeTime), RandTime: optDuration(ch.RandTime), DPDAction: ch.DPDAction, CloseAction: ch.CloseAction}
		childVolumes(oc, ch)
		if ch.Mode == "transport" {
			oc.Mode = sad.Transport
		}
		if len(ch.AHProposals) > 0 {
			return nil, fmt.Errorf("%s.ah_proposals: AH is not wired into IKE yet: use esp_proposals", cw)
		}
		if len(ch.ESPProposals) > 0 {
			if oc.Proposals, err = proposal.ParseList(message.ProtoESP, ch.ESPProposals); err != nil {
				return nil, fmt.Errorf("%s.esp_proposals: %w", cw, err)
			}
		}
		if len(ch.LocalPrefixes) > 0 {
			if oc.LocalTS, err = ts.ParseList(ch.LocalTS); err != nil {
				return nil, fmt.Errorf("%s.local_ts: %w", cw, err)
			}
		}
		if len(ch.RemotePrefixes) > 0 {
			if oc.RemoteTS, err = ts.ParseList(ch.RemoteTS); err != nil {
				return nil, fmt.Errorf("%s.remote_ts: %w", cw, err)
			}
		}
		oc.ReplayWindow = *ch.ReplayWindow
		if oc.ReplayWindow == 0 {
			oc.ReplayWindow = -1 // configured off
		}
		out.Children = append(out.Children, oc)
	}
	if len(out.Children) == 0 {
		return nil, nil
	}
	return out, nil
}

// ikeAuth sets a connection's authentication: with auth pubkey it reads
// our certificates and key, and the peer's CA certificates.
func ikeAuth(where string, c *config.Connection, out *ike.Connection) error {
	out.LocalAuth, out.RemoteAuth = c.Local.Auth, c.Remote.Auth
	if out.LocalAuth != ike.AuthPSK {
		var err error
		if out.LocalCerts, err = readCerts(where+".local.certs", c.Local.Certs); err != nil {
			return err
		}
		b, err := os.ReadFile(c.Local.Key)
		if err != nil {
			return fmt.Errorf("%s.local.key: %w", where, err)
		}
		out.LocalKey, err = ike.ParsePrivateKey(b)
		clear(b)
		if err != nil {
			return fmt.Errorf("%s.local.key: %s: %w", where, c.Local.Key, err)
		}
		if !ike.KeyMatches(out.LocalKey, out.LocalCerts[0]) {
			return fmt.Errorf("%s.local.key: %s is not the private key of the certificate in %s", where, c.Local.Key, c.Local.Certs[0])
		}
	}
	if out.RemoteAuth != ike.AuthPSK {
		var err error
		if out.RemoteCACerts, err = readCerts(where+".remote.cacerts", c.Remote.CACerts); err != nil {
			return err
		}
		if out.RemoteCerts, err = readCerts(where+".remote.certs", c.Remote.Certs); err != nil {
			return err
		}
	}
	return nil
}

// readCerts reads certificate files (PEM, possibly several in one, or
// DER), in order.
func readCerts(where string, files []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", where, i, err)
		}
		cs, err := ike.ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %s: %w", where, i, f, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

// remotePrefixes turns a remote_addrs entry into prefixes: an address, a
// prefix, %any (nothing: any peer) or a host name (resolved now).
func remotePrefixes(a string) ([]netip.Prefix, error) {
	switch a {
	case "%any", "%any4", "%any6":
		return nil, nil
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		ip = ip.Unmap()
		return []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen())}, nil
	}
	if p, err := netip.ParsePrefix(a); err == nil {
		return []netip.Prefix{p.Masked()}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", a)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("resolving %q: %v", a, err)
	}
	var out []netip.Prefix
	for _, ip := range ips {
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// usesPlainIKE reports whether the daemon listens for plain IKE on port
// 500: when the first connection's local_port is unset or 500 (the NAT-T
// socket is then on 4500).
func (d *Daemon) usesPlainIKE() bool {
	if d.ike == nil {
		return false
	}
	names := make([]string, 0, len(d.cfg.Connections))
	for n := range d.cfg.Connections {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return false
	}
	p := d.cfg.Connections[names[0]].LocalPort
	return p == 0 || p == 500
}

// SetIKEKeyHook makes IKE hand copies of every key it derives to f; for
// tests only (comparisons with strongSwan's key log, tshark decryption).
// Call it before Start.
func (d *Daemon) SetIKEKeyHook(f func(ike.KeyMaterial)) {
	if d.ike != nil {
		d.ike.keyHook = f
	}
}

// IKE returns the IKE Manager once Start has run, or nil when no child is
// negotiated with IKE.
func (d *Daemon) IKE() *ike.Manager {
	if d.ike == nil {
		return nil
	}
	return d.ike.m
}

// startIKE opens the plain IKE socket if needed and starts the Manager;
// messages flow once the dataplane runs. The children with start_action
// start or trap are acted on by runIKE.
func (d *Daemon) startIKE() error {
	s := d.ike
	if s == nil {
		return nil
	}
	log := d.log.Named("ike")
	plain := d.usesPlainIKE()
	if plain {
		la := netip.AddrPortFrom(d.listenAddr().Addr(), 500)
		conn, err := udp.ListenAddrPort(la, &udp.Options{Mark: d.socketMark(), RecvBuffer: -1, SendBuffer: -1})
		if err != nil {
			return fmt.Errorf("IKE socket on %v: %w (port 500 needs root or CAP_NET_BIND_SERVICE; or set local_port and remote_port, e.g. 4500, on both ends)", la, err)
		}
		s.plain = conn
	}
	m, err := ike.NewManager(s.cfg, ike.Options{
		Log:               log,
		Transport:         &ikeTransport{natt: d.conn, plain: s.plain},
		Installer:         &ikeInstaller{e: d.Engine},
		PlainIKE:          plain,
		NATTPort:          d.conn.LocalAddr().Port(),
		FirstChildID:      sad.ChildID(len(d.statics) + 1),
		LocalAddr:         sourceAddr,
		KeyHook:           s.keyHook,
		RetransmitTimeout: time.Duration(d.cfg.IKE.RetransmitTimeout),
		RetransmitTries:   d.cfg.IKE.RetransmitTries,
		Observer:          s.counters,
	})
	if err != nil {
		if s.plain != nil {
			s.plain.Close()
		}
		return fmt.Errorf("ike: %w", err)
	}
	s.m = m
	s.in = make(chan ikeMsg, ikeQueueLen)
	s.done = make(chan struct{})
	d.Engine.SetIKEHandler(func(b []byte, from netip.AddrPort) {
		select {
		case s.in <- ikeMsg{append([]byte(nil), b...), from}:
		default:
			s.dropped.Add(1)
		}
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.done:
				return
			case msg := <-s.in:
				m.HandleMessage(msg.b, msg.from, true)
			}
		}
	}()
	if s.plain != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			d.readPlainIKE(s.plain, m)
		}()
		d.log.Named("net").Info("plain IKE socket", zap.Stringer("listen", s.plain.LocalAddr()))
	}
	m.Start()
	return nil
}

// socketMark is the firewall mark of the daemon's sockets.
func (d *Daemon) socketMark() uint32 {
	if d.needsBypass() {
		return FWMark
	}
	return 0
}

// readPlainIKE hands the messages of the port 500 socket to the Manager.
func (d *Daemon) readPlainIKE(conn *udp.Conn, m *ike.Manager) {
	msgs := make([]udp.Message, 8)
	for i := range msgs {
		msgs[i] = udp.Message{Buf: make([]byte, 65536)}
	}
	for {
		for i := range msgs {
			msgs[i].Buf, msgs[i].Off = msgs[i].Buf[:cap(msgs[i].Buf)], 0
		}
		n, err := conn.ReadBatch(msgs)
		if err != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)) {
			return
		}
		for _, msg := range msgs[:n] {
			m.HandleMessage(msg.Payload(), msg.Addr, false)
		}
	}
}

// stopIKE deletes the IKE SAs (telling the peers) while the sockets are
// still open, then stops the IKE goroutines.
func (d *Daemon) stopIKE() {
	s := d.ike
	if s == nil || s.m == nil {
		return
	}
	s.m.Close()
	close(s.done)
	if s.plain != nil {
		s.plain.Close()
	}
	s.wg.Wait()
	s.m = nil
}

// sourceAddr returns the address the system would send from to reach
// remote (no packet is sent).
func sourceAddr(remote netip.Addr) (netip.Addr, bool) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 500)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return a, a.IsValid() && !a.IsUnspecified()
}

// ikeTransport sends IKE messages through the daemon's sockets.
type ikeTransport struct {
	natt  *udp.Conn
	plain *udp.Conn
}

func (t *ikeTransport) Send(b []byte, to netip.AddrPort, natt bool) error {
	if natt || t.plain == nil {
		buf := make([]byte, udp.NonESPMarkerLen+len(b))
		copy(buf[udp.NonESPMarkerLen:], b)
		_, err := t.natt.WriteTo(buf, to)
		return err
	}
	_, err := t.plain.WriteTo(b, to)
	return err
}

// ikeInstaller puts negotiated Child SAs into the dataplane.
type ikeInstaller struct {
	e *dataplane.Engine
}

func (i *ikeInstaller) AllocateSPI(taken func(uint32) bool) (uint32, error) {
	return i.e.AllocateSPI(taken)
}

func negotiated(c *ike.ChildSA) (*dataplane.NegotiatedChild, error) {
	sels := spdSelectors(c.Local, c.Remote)
	if len(sels) == 0 {
		return nil, fmt.Errorf("selectors %v === %v give no policy", c.Local, c.Remote)
	}
	nc := &dataplane.NegotiatedChild{ID: c.ID, Mode: c.Mode, Selectors: sels, Peer: c.Peer, In: &c.In, Out: &c.Out, Lifetime: c.Lifetime}
	if c.Mode == sad.Transport {
		nc.InnerLocal, nc.InnerRemote = c.Local[0].Start, c.Remote[0].Start
	}
	return nc, nil
}

func (i *ikeInstaller) Install(c *ike.ChildSA) error {
	nc, err := negotiated(c)
	if err != nil {
		return err
	}
	return i.e.InstallNegotiated(nc)
}

func (i *ikeInstaller) InstallInbound(c *ike.ChildSA) error {
	nc, err := negotiated(c)
	if err != nil {
		return err
	}
	return i.e.InstallNegotiatedInbound(nc)
}

func (i *ikeInstaller) SwitchOutbound(c *ike.ChildSA) error {
	nc, err := negotiated(c)
	if err != nil {
		return err
	}
	return i.e.SwitchNegotiatedOutbound(nc)
}

func (i *ikeInstaller) RemoveInbound(id sad.ChildID, spi uint32) {
	i.e.RemoveNegotiatedInbound(id, spi)
}

func (i *ikeInstaller) Remove(id sad.ChildID) { i.e.RemoveNegotiated(id) }

func (i *ikeInstaller) Trap(id sad.ChildID, name string, local, remote []ts.Selector) error {
	sels := spdSelectors(local, remote)
	if len(sels) == 0 {
		return fmt.Errorf("selectors %v === %v give no policy", local, remote)
	}
	return i.e.InstallTrap(id, sels, 0)
}

func (i *ikeInstaller) InboundPackets(id sad.ChildID) uint64 { return i.e.InboundPackets(id) }

func (i *ikeInstaller) UpdatePeer(id sad.ChildID, peer netip.AddrPort) { i.e.UpdatePeer(id, peer) }

// spdSelectors turns negotiated traffic selectors into SPD selectors: one
// for all of them when none restricts protocol or ports, else one per
// pair of local and remote selector.
func spdSelectors(local, remote []ts.Selector) []spd.Selector {
	plain := func(s ts.Selector) bool {
		return s.Protocol == 0 && s.StartPort == 0 && s.EndPort == 0xffff
	}
	rng := func(s ts.Selector) spd.AddrRange { return spd.AddrRange{From: s.Start, To: s.End} }
	all := true
	for _, s := range append(append([]ts.Selector(nil), local...), remote...) {
		all = all && plain(s)
	}
	if all {
		var sel spd.Selector
		for _, s := range local {
			sel.Local = append(sel.Local, rng(s))
		}
		for _, s := range remote {
			sel.Remote = append(sel.Remote, rng(s))
		}
		return []spd.Selector{sel}
	}
	var out []spd.Selector
	for _, l := range local {
		for _, r := range remote {
			if l.Type != r.Type || (l.Protocol != 0 && r.Protocol != 0 && l.Protocol != r.Protocol) {
				continue
			}
			sel := spd.Selector{Local: []spd.AddrRange{rng(l)}, Remote: []spd.AddrRange{rng(r)}, Proto: max(l.Protocol, r.Protocol)}
			if sel.Proto != 0 {
				if sel.Proto == 1 || sel.Proto == 58 {
					// ICMP type and code travel in the port fields (type
					// in the high octet), from the sender's side.
					p := l
					if plain(l) || (l.StartPort == 0 && l.EndPort == 0xffff) {
						p = r
					}
					if !(p.StartPort == 0 && p.EndPort == 0xffff) {
						sel.ICMPType = spd.Ports(p.StartPort>>8, p.EndPort>>8)
						if p.StartPort>>8 == p.EndPort>>8 {
							sel.ICMPCode = spd.Ports(p.StartPort&0xff, p.EndPort&0xff)
						}
					}
				} else {
					sel.LocalPorts, sel.RemotePorts = portRange(l), portRange(r)
				}
			}
			if sel.Validate() == nil {
				out = append(out, sel)
			}
		}
	}
	return out
}

func portRange(s ts.Selector) spd.PortRange {
	switch {
	case s.StartPort == 0xffff && s.EndPort == 0:
		return spd.OpaquePort()
	case s.StartPort == 0 && s.EndPort == 0xffff:
		return spd.AnyPort()
	}
	return spd.Ports(s.StartPort, s.EndPort)
}

// ikeRoutes are the configured remote selectors of the IKE children with
// the peer behind them, for the TUN device's routes (dynamic selectors are
// the peer's address).
func (d *Daemon) ikeRoutes() []protectedRoute {
	if d.ike == nil {
		return nil
	}
	var out []protectedRoute
	for _, c := range d.ike.cfg.Connections {
		var peer netip.Addr
		for _, p := range c.RemoteAddrs {
			if p.IsSingleIP() {
				peer = p.Addr()
				break
			}
		}
		for _, ch := range c.Children {
			if ch.RemoteTS == nil {
				if peer.IsValid() {
					out = append(out, protectedRoute{netip.PrefixFrom(peer, peer.BitLen()), peer})
				}
				continue
			}
			for _, s := range ch.RemoteTS {
				if p, ok := s.Prefix(); ok {
					out = append(out, protectedRoute{p, peer})
				}
			}
		}
	}
	return out
}

// protectedRoute is a remote network a child protects and the peer's
// underlay address.
type protectedRoute struct {
	prefix netip.Prefix
	peer   netip.Addr
}

// protectedRoutes lists the remote networks of static and IKE children.
func (d *Daemon) protectedRoutes() []protectedRoute {
	var out []protectedRoute
	for _, sc := range d.statics {
		for _, p := range sc.Remote {
			out = append(out, protectedRoute{p, sc.Peer.Addr()})
		}
	}
	return append(out, d.ikeRoutes()...)
}

// ikeChildren counts the configured IKE children.
func (d *Daemon) ikeChildren() int {
	if d.ike == nil {
		return 0
	}
	n := 0
	for _, c := range d.ike.cfg.Connections {
		n += len(c.Children)
	}
	return n
}

// childName returns the configured names of a child, static or IKE.
func (d *Daemon) childName(id sad.ChildID) childName {
	if n, ok := d.names[id]; ok {
		return n
	}
	if m := d.IKE(); m != nil {
		if c, ch, ok := m.ChildName(id); ok {
			return childName{c, ch}
		}
	}
	return childName{}
}

// ikeInitiate brings up an IKE connection or child and waits for the
// outcome; found is false if the name is not an IKE one.
func (d *Daemon) ikeInitiate(ctx context.Context, name string) (found bool, err error) {
	m := d.IKE()
	if m == nil {
		return false, nil
	}
	done, err := m.Initiate(name)
	if errors.Is(err, ike.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	var errs []error
	for range cap(done) {
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return true, fmt.Errorf("%s: still negotiating: %w", name, ctx.Err())
		}
	}
	return true, errors.Join(errs...)
}

// ikeTerminate takes down an IKE connection or child; found is false if
// the name is not an IKE one.
func (d *Daemon) ikeTerminate(name string) (found bool, err error) {
	m := d.IKE()
	if m == nil {
		return false, nil
	}
	n, err := m.Terminate(name)
	if errors.Is(err, ike.ErrNotFound) {
		return false, nil
	}
	if err == nil && n == 0 {
		return true, fmt.Errorf("%w: %s is not up", control.ErrConflict, name)
	}
	return true, err
}
