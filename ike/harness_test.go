package ike

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/ike/ts"
	"github.com/goipsec/goipsec/sad"
)

// fakeClock is a manual clock: timers fire only in Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	when    time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time forward by d, firing due timers in order; after each
// it lets net deliver what the timer sent (if net is not nil).
func (c *fakeClock) Advance(d time.Duration, net *fakeNet) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].when.Before(c.timers[j].when) })
		var next *fakeTimer
		for len(c.timers) > 0 {
			t := c.timers[0]
			if t.stopped {
				c.timers = c.timers[1:]
				continue
			}
			if t.when.After(end) {
				break
			}
			next = t
			c.timers = c.timers[1:]
			break
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.stopped = true
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.mu.Unlock()
		next.f()
		if net != nil {
			net.Pump()
		}
	}
}

// packet is one datagram in flight on the fake network.
type packet struct {
	src, dst netip.AddrPort
	natt     bool
	data     []byte
}

// fakeNet carries IKE messages between Managers, in order, with optional
// loss. Delivery happens in Pump, so a test sees every step.
type fakeNet struct {
	t       testing.TB
	mu      sync.Mutex
	queue   []packet
	hosts   map[netip.Addr]*Manager
	drop    func(p packet) bool
	mutate  func(p *packet) // changes a message in flight
	log     []packet        // everything sent
	dropped int
}

func newFakeNet(t testing.TB) *fakeNet { return &fakeNet{t: t, hosts: map[netip.Addr]*Manager{}} }

// transport returns the Transport of the host at addr.
func (n *fakeNet) transport(addr netip.Addr) Transport { return &fakeTransport{n, addr} }

type fakeTransport struct {
	n    *fakeNet
	addr netip.Addr
}

func (t *fakeTransport) Send(b []byte, to netip.AddrPort, natt bool) error {
	port := uint16(500)
	if natt {
		port = 4500
	}
	p := packet{src: netip.AddrPortFrom(t.addr, port), dst: to, natt: natt, data: append([]byte(nil), b...)}
	t.n.mu.Lock()
	defer t.n.mu.Unlock()
	t.n.log = append(t.n.log, p)
	t.n.queue = append(t.n.queue, p)
	return nil
}

// Pump delivers queued packets until none are left.
func (n *fakeNet) Pump() {
	for i := 0; ; i++ {
		if i > 10000 {
			n.t.Fatal("fakeNet: message storm")
		}
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.mu.Unlock()
			return
		}
		p := n.queue[0]
		n.queue = n.queue[1:]
		drop := n.drop != nil && n.drop(p)
		if drop {
			n.dropped++
		}
		if n.mutate != nil && !drop {
			n.mutate(&p)
		}
		m := n.hosts[p.dst.Addr()]
		n.mu.Unlock()
		if drop || m == nil {
			continue
		}
		wantPort := uint16(500)
		if p.natt {
			wantPort = 4500
		}
		if p.dst.Port() != wantPort {
			n.t.Errorf("message to port %d sent on the %s socket", p.dst.Port(), map[bool]string{true: "NAT-T", false: "plain"}[p.natt])
		}
		m.HandleMessage(p.data, p.src, p.natt)
	}
}

// sent returns the IKE headers of all messages sent so far.
func (n *fakeNet) sent() []*message.Header {
	n.mu.Lock()
	defer n.mu.Unlock()
	var hs []*message.Header
	for _, p := range n.log {
		h, err := message.ParseHeader(p.data)
		if err == nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// fakeInstaller records what a Manager installs.
type fakeInstaller struct {
	mu        sync.Mutex
	installed map[sad.ChildID]*ChildSA
	traps     map[sad.ChildID][2][]ts.Selector
	history   []*ChildSA
	removed   []sad.ChildID
	inbound   map[sad.ChildID]uint64
	spis      map[uint32]bool
	ins       map[sad.ChildID]map[uint32]esp.Config
	switches  int
	// peer, when set, is the other end's installer: every outbound SA
	// switched to must already be an inbound SA there, and no inbound SA
	// the peer sends on may go (make-before-break).
	peer       *fakeInstaller
	violations []string
}

// checkOut records a violation if the peer cannot receive on spi yet.
func (f *fakeInstaller) checkOut(spi uint32) {
	if f.peer == nil {
		return
	}
	f.peer.mu.Lock()
	ok := f.peer.spis[spi]
	f.peer.mu.Unlock()
	if !ok {
		f.violations = append(f.violations, fmt.Sprintf("sending on %08x before the peer accepts it", spi))
	}
}

// checkIn records a violation if the peer still sends on spi.
func (f *fakeInstaller) checkIn(id sad.ChildID, spi uint32) {
	if f.peer == nil {
		return
	}
	f.peer.mu.Lock()
	defer f.peer.mu.Unlock()
	for _, c := range f.peer.installed {
		if c.Out.SPI == spi {
			f.violations = append(f.violations, fmt.Sprintf("inbound SA %08x removed while the peer sends on it", spi))
		}
	}
}

func newFakeInstaller() *fakeInstaller {
	return &fakeInstaller{installed: map[sad.ChildID]*ChildSA{}, traps: map[sad.ChildID][2][]ts.Selector{},
		inbound: map[sad.ChildID]uint64{}, spis: map[uint32]bool{}}
}

func (f *fakeInstaller) AllocateSPI(taken func(uint32) bool) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		var b [4]byte
		rand.Read(b[:])
		spi := binary.BigEndian.Uint32(b[:]) | 0xc0000000
		if !f.spis[spi] && !taken(spi) {
			return spi, nil
		}
	}
}

func (f *fakeInstaller) Install(c *ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := *c
	cp.In.EncKey, cp.In.IntegKey = clone(c.In.EncKey), clone(c.In.IntegKey)
	cp.Out.EncKey, cp.Out.IntegKey = clone(c.Out.EncKey), clone(c.Out.IntegKey)
	if f.spis[c.In.SPI] {
		return fmt.Errorf("inbound SPI %08x already installed", c.In.SPI)
	}
	f.checkOut(c.Out.SPI)
	f.spis[c.In.SPI] = true
	f.addIn(c.ID, cp.In)
	delete(f.traps, c.ID)
	f.installed[c.ID] = &cp
	f.history = append(f.history, &cp)
	return nil
}

func (f *fakeInstaller) addIn(id sad.ChildID, c esp.Config) {
	if f.ins == nil {
		f.ins = map[sad.ChildID]map[uint32]esp.Config{}
	}
	if f.ins[id] == nil {
		f.ins[id] = map[uint32]esp.Config{}
	}
	f.ins[id][c.SPI] = c
}

func (f *fakeInstaller) InstallInbound(c *ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.installed[c.ID]
	if cur == nil {
		return fmt.Errorf("child %d not installed", c.ID)
	}
	if f.spis[c.In.SPI] {
		return fmt.Errorf("inbound SPI %08x already installed", c.In.SPI)
	}
	f.spis[c.In.SPI] = true
	cur.In = c.In
	cur.In.EncKey, cur.In.IntegKey = clone(c.In.EncKey), clone(c.In.IntegKey)
	f.addIn(c.ID, cur.In)
	return nil
}

func (f *fakeInstaller) SwitchOutbound(c *ChildSA) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.installed[c.ID]
	if cur == nil {
		return fmt.Errorf("child %d not installed", c.ID)
	}
	f.checkOut(c.Out.SPI)
	cur.Out = c.Out
	cur.Out.EncKey, cur.Out.IntegKey = clone(c.Out.EncKey), clone(c.Out.IntegKey)
	f.switches++
	return nil
}

func (f *fakeInstaller) RemoveInbound(id sad.ChildID, spi uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ins[id][spi]; ok {
		f.checkIn(id, spi)
		delete(f.ins[id], spi)
		delete(f.spis, spi)
	}
}

// inSAs returns the inbound SAs installed for a child.
func (f *fakeInstaller) inSAs(id sad.ChildID) map[uint32]esp.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[uint32]esp.Config{}
	for spi, c := range f.ins[id] {
		out[spi] = c
	}
	return out
}

func (f *fakeInstaller) Remove(id sad.ChildID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for spi := range f.ins[id] {
		delete(f.spis, spi)
	}
	delete(f.ins, id)
	delete(f.installed, id)
	delete(f.traps, id)
	f.removed = append(f.removed, id)
}

func (f *fakeInstaller) Trap(id sad.ChildID, name string, local, remote []ts.Selector) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.traps[id] = [2][]ts.Selector{local, remote}
	return nil
}

func (f *fakeInstaller) InboundPackets(id sad.ChildID) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inbound[id]
}

func (f *fakeInstaller) UpdatePeer(id sad.ChildID, peer netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.installed[id]; c != nil {
		c.Peer = peer
	}
}

func (f *fakeInstaller) list() []*ChildSA {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*ChildSA
	for _, c := range f.installed {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// peer is one side of a test: a Manager with its fakes and log.
type peer struct {
	m     *Manager
	inst  *fakeInstaller
	logs  *observer.ObservedLogs
	addr  netip.Addr
	keys  []KeyMaterial
	keyMu sync.Mutex
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

// side describes one end's configuration for newPair.
type side struct {
	id, peerID   string
	psk          string
	proposals    []string
	esp          []string
	localTS      []string // nil: dynamic
	remoteTS     []string
	mode         sad.Mode
	start        string
	dpd          time.Duration
	remoteAddrs  []string // nil: the other side's address
	extraConns   []*Connection
	childName    string
	extraSecrets []*Secret
	tweak        func(*Connection) // changes the connection (certificates, ...)
}

func mustList(t testing.TB, proto message.ProtocolID, list []string) []message.Proposal {
	t.Helper()
	if len(list) == 0 {
		return nil
	}
	ps, err := proposal.ParseList(proto, list)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func mustTS(t testing.TB, list []string) []ts.Selector {
	t.Helper()
	if list == nil {
		return nil
	}
	s, err := ts.ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s side) config(t testing.TB, local, remote netip.Addr) *Config {
	t.Helper()
	name := s.childName
	if name == "" {
		name = "net"
	}
	ch := &Child{Name: name, Mode: s.mode, LocalTS: mustTS(t, s.localTS), RemoteTS: mustTS(t, s.remoteTS),
		Proposals: mustList(t, message.ProtoESP, s.esp), StartAction: s.start}
	ra := []netip.Prefix{netip.PrefixFrom(remote, 32)}
	if s.remoteAddrs != nil {
		ra = nil
		for _, a := range s.remoteAddrs {
			ra = append(ra, netip.MustParsePrefix(a))
		}
	}
	conn := &Connection{Name: "conn", LocalAddrs: []netip.Addr{local}, RemoteAddrs: ra,
		Proposals: mustList(t, message.ProtoIKE, s.proposals), DPDDelay: s.dpd, LocalID: s.id, RemoteID: s.peerID,
		Children: []*Child{ch}}
	if s.tweak != nil {
		s.tweak(conn)
	}
	psk := s.psk
	if psk == "" {
		psk = "correct horse battery staple"
	}
	cfg := &Config{Connections: append([]*Connection{conn}, s.extraConns...),
		Secrets: append([]*Secret{{IDs: []string{s.id, s.peerID}, Key: []byte(psk)}}, s.extraSecrets...)}
	return cfg
}

// pair is two Managers wired back to back.
type pair struct {
	t     testing.TB
	net   *fakeNet
	clock *fakeClock
	a, b  *peer
}

func newPeer(t testing.TB, n *fakeNet, clock *fakeClock, cfg *Config, addr netip.Addr, name string, opts Options) *peer {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	p := &peer{inst: newFakeInstaller(), logs: logs, addr: addr}
	log := zap.New(core)
	if testing.Verbose() {
		log = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core())).Named(name)
	}
	opts.Log = log
	opts.Transport = n.transport(addr)
	opts.Installer = p.inst
	opts.Clock = clock
	opts.PlainIKE = true
	opts.KeyHook = func(k KeyMaterial) {
		p.keyMu.Lock()
		defer p.keyMu.Unlock()
		p.keys = append(p.keys, k)
	}
	m, err := NewManager(cfg, opts)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p.m = m
	n.hosts[addr] = m
	return p
}

func newPair(t testing.TB, sa, sb side, opts Options) *pair {
	t.Helper()
	if sa.id == "" {
		sa.id, sa.peerID = "a.example.org", "b.example.org"
	}
	if sb.id == "" {
		sb.id, sb.peerID = "b.example.org", "a.example.org"
	}
	n := newFakeNet(t)
	clock := newFakeClock()
	p := &pair{t: t, net: n, clock: clock}
	p.a = newPeer(t, n, clock, sa.config(t, addrA, addrB), addrA, "a", opts)
	p.b = newPeer(t, n, clock, sb.config(t, addrB, addrA), addrB, "b", opts)
	t.Cleanup(func() {
		p.a.m.Close()
		p.b.m.Close()
	})
	return p
}

// initiate starts name at a and runs the exchange to its end.
func (p *pair) initiate(name string) error {
	p.t.Helper()
	done, err := p.a.m.Initiate(name)
	if err != nil {
		return err
	}
	p.net.Pump()
	select {
	case err := <-done:
		return err
	default:
		p.t.Fatal("initiation did not finish after the messages were delivered")
		return nil
	}
}

// logged reports whether p logged a line containing s (at warn or above
// when serious).
func (p *peer) logged(s string) bool {
	for _, e := range p.logs.All() {
		line := e.Message
		for _, f := range e.Context {
			if f.String != "" {
				line += " " + f.String
			}
			if f.Interface != nil {
				line += " " + fmt.Sprint(f.Interface)
			}
		}
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (p *peer) dumpLogs() string {
	var b strings.Builder
	for _, e := range p.logs.All() {
		fmt.Fprintf(&b, "%s %s", e.Level, e.Message)
		for _, f := range e.Context {
			if f.String != "" {
				fmt.Fprintf(&b, " %s=%s", f.Key, f.String)
			} else if f.Interface != nil {
				fmt.Fprintf(&b, " %s=%v", f.Key, f.Interface)
			} else {
				fmt.Fprintf(&b, " %s=%d", f.Key, f.Integer)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// checkChildPair checks that a's and b's installed Child SAs mirror each
// other: SPIs, algorithms, keys and selectors.
func checkChildPair(t *testing.T, a, b *ChildSA) {
	t.Helper()
	if a.In.SPI != b.Out.SPI || a.Out.SPI != b.In.SPI {
		t.Errorf("SPIs: a in %08x out %08x, b in %08x out %08x", a.In.SPI, a.Out.SPI, b.In.SPI, b.Out.SPI)
	}
	if !bytes.Equal(a.Out.EncKey, b.In.EncKey) || !bytes.Equal(a.In.EncKey, b.Out.EncKey) ||
		!bytes.Equal(a.Out.IntegKey, b.In.IntegKey) || !bytes.Equal(a.In.IntegKey, b.Out.IntegKey) {
		t.Error("Child SA keys differ between the ends")
	}
	if bytes.Equal(a.Out.EncKey, a.In.EncKey) {
		t.Error("both directions use the same key")
	}
	if a.Out.Enc != b.In.Enc || a.Out.Integ != b.In.Integ || a.Out.ESN != b.In.ESN {
		t.Error("Child SA algorithms differ between the ends")
	}
	if a.Out.Enc == nil || len(a.Out.EncKey) != a.Out.Enc.KeyLen() {
		t.Errorf("encryption key of %d octets for %v", len(a.Out.EncKey), a.Out.Enc)
	}
	if a.Out.Integ != nil && len(a.Out.IntegKey) != a.Out.Integ.KeyLen {
		t.Errorf("integrity key of %d octets for %s", len(a.Out.IntegKey), a.Out.Integ.Name)
	}
	if fmt.Sprint(a.Local) != fmt.Sprint(b.Remote) || fmt.Sprint(a.Remote) != fmt.Sprint(b.Local) {
		t.Errorf("selectors: a %v === %v, b %v === %v", a.Local, a.Remote, b.Local, b.Remote)
	}
	if a.Mode != b.Mode {
		t.Errorf("modes %v and %v", a.Mode, b.Mode)
	}
}

// established returns the single installed child of each side.
func (p *pair) established(t *testing.T) (*ChildSA, *ChildSA) {
	t.Helper()
	la, lb := p.a.inst.list(), p.b.inst.list()
	if len(la) != 1 || len(lb) != 1 {
		t.Fatalf("installed children: a %d, b %d\n--- a:\n%s--- b:\n%s", len(la), len(lb), p.a.dumpLogs(), p.b.dumpLogs())
	}
	checkChildPair(t, la[0], lb[0])
	return la[0], lb[0]
}

// noState checks that a peer keeps no IKE SA and no Child SA.
func (p *peer) noState(t *testing.T, who string) {
	t.Helper()
	if sas := p.m.IKESAs(); len(sas) != 0 {
		t.Errorf("%s keeps %d IKE SAs: %+v", who, len(sas), sas)
	}
	if l := p.inst.list(); len(l) != 0 {
		t.Errorf("%s keeps %d Child SAs", who, len(l))
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	if len(p.m.reserved) != 0 || p.m.nHalf != 0 || len(p.m.halfOpen) != 0 {
		t.Errorf("%s keeps reserved SPIs %d, half-open %d/%d", who, len(p.m.reserved), p.m.nHalf, len(p.m.halfOpen))
	}
	for id, v := range p.m.children {
		if _, ok := v.(trapMarker); !ok {
			t.Errorf("%s keeps child ID %d in use (%T)", who, id, v)
		}
	}
}
