package ike

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/ts"
	"github.com/goipsec/goipsec/sad"
)

// Transport sends IKE messages. The Manager calls it without holding its
// lock, possibly from several goroutines.
type Transport interface {
	// Send sends one IKE message to the peer. natt selects the NAT-T
	// socket, where the message goes with the 4-octet non-ESP marker
	// (RFC 3948); otherwise it goes as is from the plain IKE socket.
	Send(msg []byte, to netip.AddrPort, natt bool) error
}

// ChildSA is a negotiated Child SA pair, as the Manager hands it to the
// Installer. Its keys are the Manager's copies: the Installer must not keep
// the slices, which are zeroed after the call.
type ChildSA struct {
	// ID names the child in the SAD and SPD; it stays the same for a
	// trapped child's policies and its SAs.
	ID sad.ChildID
	// Connection and Child are the configured names.
	Connection, Child string
	Mode              sad.Mode
	// Local and Remote are the negotiated traffic selectors from the local
	// host's point of view.
	Local, Remote []ts.Selector
	// Peer is the peer's UDP endpoint for ESP in UDP.
	Peer netip.AddrPort
	// In and Out are the inbound and outbound ESP SAs.
	In, Out esp.Config
	// Lifetime is the SAD lifetime of each of the two SAs (volume limits
	// and the hard time limit).
	Lifetime sad.Lifetime
}

// Installer is the Manager's way into the dataplane: it installs and
// removes negotiated Child SAs and trap policies. The Manager calls it with
// its lock held; it must not call back into the Manager.
type Installer interface {
	// AllocateSPI returns a free inbound ESP SPI that taken does not
	// report as reserved.
	AllocateSPI(taken func(uint32) bool) (uint32, error)
	// Install installs (or, for an ID that has SAs, updates) a Child SA
	// pair and its policies.
	Install(c *ChildSA) error
	// InstallInbound adds the inbound SA of c to a child whose SAs are
	// installed (the responder of a rekey, make-before-break); c.Out is
	// not used yet.
	InstallInbound(c *ChildSA) error
	// SwitchOutbound replaces the child's outbound SA with c.Out; c.In is
	// not used.
	SwitchOutbound(c *ChildSA) error
	// RemoveInbound removes one inbound SA of a child (one a rekey
	// replaced), leaving its other SAs and its policies alone.
	RemoveInbound(id sad.ChildID, spi uint32)
	// Remove removes a child's SAs and policies.
	Remove(id sad.ChildID)
	// Trap installs policies for a child without SAs whose traffic raises
	// acquires (start_action trap); Remove removes them.
	Trap(id sad.ChildID, name string, local, remote []ts.Selector) error
	// InboundPackets returns how many packets the child's inbound SAs
	// accepted, for dead peer detection.
	InboundPackets(id sad.ChildID) uint64
	// UpdatePeer moves the child's SAs to the peer's new endpoint.
	UpdatePeer(id sad.ChildID, peer netip.AddrPort)
}

// Retransmission defaults, strongSwan's (charon.retransmit_*): requests are
// resent after 4 s, 7.2 s, 13 s, 23 s and 42 s, and given up after 165 s.
const (
	DefaultRetransmitTimeout = 4 * time.Second
	DefaultRetransmitBase    = 1.8
	DefaultRetransmitTries   = 5
	DefaultHalfOpenTimeout   = 30 * time.Second
	DefaultCookieThreshold   = 30
)

// Options configure a Manager.
type Options struct {
	// Log receives the Manager's log lines; nil discards them. Keys are
	// never logged.
	Log *zap.Logger
	// Transport sends messages; Installer reaches the dataplane. Both are
	// required.
	Transport Transport
	Installer Installer
	// PlainIKE says that a plain IKE socket (port 500) exists besides the
	// NAT-T one: connections to port 500 start there and float to 4500.
	// Without it every message goes through the NAT-T socket.
	PlainIKE bool
	// NATTPort is the local port of the NAT-T socket (for NAT detection
	// only); 0 means 4500.
	NATTPort uint16
	// Clock drives timers; nil means the system clock.
	Clock Clock
	// RetransmitTimeout, RetransmitBase and RetransmitTries shape the
	// retransmission of requests (exponential backoff); zero values mean
	// the defaults.
	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int
	// FragmentTimeout is how long an incomplete fragmented message is
	// kept; 0 means DefaultFragmentTimeout.
	FragmentTimeout time.Duration
	// HalfOpenTimeout bounds how long a responder keeps an IKE SA that
	// completed IKE_SA_INIT but not IKE_AUTH; 0 means the default.
	HalfOpenTimeout time.Duration
	// CookieThreshold is the number of half-open IKE SAs beyond which
	// IKE_SA_INIT requests must return a cookie (RFC 7296 section 2.6); 0
	// means the default, negative never asks.
	CookieThreshold int
	// RekeyGrace is how long the inbound SA a rekey replaced keeps
	// accepting packets after the old SA is deleted; 0 means
	// DefaultRekeyGrace.
	RekeyGrace time.Duration
	// FirstChildID is the lowest Child ID the Manager hands out (the
	// daemon keeps lower ones for static children); 0 means 1.
	FirstChildID sad.ChildID
	// LocalAddr, if set, returns the source address the system would use
	// to reach a peer (for dynamic traffic selectors and identities of
	// connections without local addresses); nil leaves them unknown.
	LocalAddr func(remote netip.Addr) (netip.Addr, bool)
	// KeyHook, for tests only, receives copies of every derived key as it
	// is made. It must be nil in production; keys are never logged.
	KeyHook func(KeyMaterial)
	// Observer, if set, is told of handshakes, rekeys and dead peers
	// (observer.go), for metrics.
	Observer Observer
}

// Manager runs IKEv2 (RFC 7296) for a set of connections: it initiates and
// responds, authenticates with pre-shared keys, negotiates Child SAs and
// installs them through the Installer, detects dead peers and deletes SAs.
// It is safe for concurrent use.
type Manager struct {
	cfg   *Config
	obs   Observer
	log   *zap.Logger
	tr    Transport
	inst  Installer
	clock Clock
	opts  Options

	mu       sync.Mutex
	closed   bool
	outbox   []outMsg
	sas      map[uint64]*ikeSA   // by our SPI
	halfOpen map[initKey]*ikeSA  // responder SAs by the peer's IKE_SA_INIT
	children map[sad.ChildID]any // IDs in use: *childSA or trap marker
	traps    map[*Child]sad.ChildID
	nextID   sad.ChildID
	reserved map[uint32]bool // inbound SPIs allocated but not installed yet
	cookie   [32]byte        // secret of the COOKIE challenge
	nHalf    int             // responder SAs past IKE_SA_INIT, before IKE_AUTH
	serial   uint64          // numbers the IKE SAs for logs
	stats    Stats
	life     lifecycle // restarts after dead peers (dpd.go)

	fragLogAt    time.Time // last log line about a rejected fragment
	fragLogMuted int       // rejected fragments not logged since
	fragBytes    int       // octets held by all incomplete fragment sets
}

// Stats count what the Manager did.
type Stats struct {
	Received, Sent, Retransmits, Dropped uint64
	Established, Failed, Deleted         uint64
	// IKE fragmentation (RFC 7383): fragments sent and received (those
	// that passed their integrity check), received ones dropped (also in
	// Dropped), and messages reassembled.
	FragmentsSent, FragmentsReceived, FragmentsRejected, Reassembled uint64
	// AuthFailed counts the IKE SAs of Failed that failed authentication
	// (ours refused by the peer, or the peer's by us).
	AuthFailed uint64
}

// outMsg is a message queued for sending once the lock is released.
type outMsg struct {
	b    []byte
	to   netip.AddrPort
	natt bool
}

// initKey identifies an IKE_SA_INIT request: the peer's endpoint and SPI.
type initKey struct {
	from netip.AddrPort
	spii uint64
}

// trapMarker marks a child ID held by a trap policy.
type trapMarker struct{ ch *Child }

// NewManager returns a Manager for cfg. It does nothing until Start,
// Initiate or HandleMessage.
func NewManager(cfg *Config, opts Options) (*Manager, error) {
	if opts.Transport == nil || opts.Installer == nil {
		return nil, errors.New("ike: Options need a Transport and an Installer")
	}
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.RetransmitTimeout <= 0 {
		opts.RetransmitTimeout = DefaultRetransmitTimeout
	}
	if opts.RetransmitBase < 1 {
		opts.RetransmitBase = DefaultRetransmitBase
	}
	if opts.RetransmitTries <= 0 {
		opts.RetransmitTries = DefaultRetransmitTries
	}
	if opts.FragmentTimeout <= 0 {
		opts.FragmentTimeout = DefaultFragmentTimeout
	}
	if opts.HalfOpenTimeout <= 0 {
		opts.HalfOpenTimeout = DefaultHalfOpenTimeout
	}
	if opts.CookieThreshold == 0 {
		opts.CookieThreshold = DefaultCookieThreshold
	}
	if opts.NATTPort == 0 {
		opts.NATTPort = 4500
	}
	if opts.RekeyGrace <= 0 {
		opts.RekeyGrace = DefaultRekeyGrace
	}
	if opts.FirstChildID == 0 {
		opts.FirstChildID = 1
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	m := &Manager{
		cfg: cfg, obs: opts.Observer, log: opts.Log, tr: opts.Transport, inst: opts.Installer, clock: opts.Clock, opts: opts,
		sas: map[uint64]*ikeSA{}, halfOpen: map[initKey]*ikeSA{}, children: map[sad.ChildID]any{},
		traps: map[*Child]sad.ChildID{}, nextID: opts.FirstChildID, reserved: map[uint32]bool{},
	}
	if _, err := rand.Read(m.cookie[:]); err != nil {
		return nil, err
	}
	return m, nil
}

// lock and unlock guard the Manager's state; unlock sends what was queued
// meanwhile, without the lock.
func (m *Manager) lock() { m.mu.Lock() }

func (m *Manager) unlock() {
	out := m.outbox
	m.outbox = nil
	m.mu.Unlock()
	for _, o := range out {
		if err := m.tr.Send(o.b, o.to, o.natt); err != nil {
			m.log.Debug("sending IKE message failed", zap.Stringer("to", o.to), zap.Error(err))
		}
	}
}

// queueAll schedules datagrams for sending, in order.
func (m *Manager) queueAll(bs [][]byte, to netip.AddrPort, natt bool) {
	for _, b := range bs {
		m.queue(b, to, natt)
	}
}

// queue schedules a message for sending.
func (m *Manager) queue(b []byte, to netip.AddrPort, natt bool) {
	m.stats.Sent++
	m.outbox = append(m.outbox, outMsg{b, to, natt})
}

// Start installs the trap policies and initiates the children with
// start_action start.
func (m *Manager) Start() {
	m.lock()
	defer m.unlock()
	for _, c := range m.cfg.Connections {
		m.startConnection(c)
	}
}

// Close deletes every IKE SA (telling the peers, without waiting for their
// answers), removes the Child SAs and trap policies and stops the timers.
func (m *Manager) Close() {
	m.lock()
	defer m.unlock()
	if m.closed {
		return
	}
	for _, sa := range m.sortedSAs() {
		if sa.state == stateEstablished {
			sa.sendDeleteIKE()
		}
		sa.destroy(errClosed)
	}
	for ch, id := range m.traps {
		m.inst.Remove(id)
		delete(m.children, id)
		delete(m.traps, ch)
	}
	m.closed = true
}

var errClosed = errors.New("ike: manager closed")

// ErrNotFound reports a name that is no connection or child.
var ErrNotFound = errors.New("ike: no such connection or child")

// resolve finds the children a name stands for: "conn", "conn.child" or a
// child name unique among the connections.
func (m *Manager) resolve(name string) ([]*Child, error) {
	var out []*Child
	for _, c := range m.cfg.Connections {
		if c.Name == name {
			return c.Children, nil
		}
		for _, ch := range c.Children {
			if ch.FullName() == name || ch.Name == name {
				out = append(out, ch)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return out, nil
}

// Has reports whether name is a connection or child of the Manager.
func (m *Manager) Has(name string) bool {
	_, err := m.resolve(name)
	return err == nil
}

// Initiate brings up the named connection or child ("conn", "conn.child" or
// a child name): it establishes an IKE SA with the peer (or reuses an
// established one) and negotiates the Child SA. The channel has room for,
// and receives, one result per child: nil once the child is installed, or
// the reason it failed.
func (m *Manager) Initiate(name string) (<-chan error, error) {
	m.lock()
	defer m.unlock()
	if m.closed {
		return nil, errClosed
	}
	chs, err := m.resolve(name)
	if err != nil {
		return nil, err
	}
	done := make(chan error, len(chs))
	for _, ch := range chs {
		if _, err := m.initiateLocked(ch, done); err != nil {
			done <- err
		}
	}
	return done, nil
}

// Terminate deletes the named connection's IKE SAs (and with them their
// Child SAs), or the named child's Child SAs, telling the peer. It reports
// ErrNotFound for an unknown name and how many SAs it deleted.
func (m *Manager) Terminate(name string) (int, error) {
	m.lock()
	defer m.unlock()
	chs, err := m.resolve(name)
	if err != nil {
		return 0, err
	}
	isConn := false
	for _, c := range m.cfg.Connections {
		if c.Name == name {
			isConn = true
		}
	}
	n := 0
	for _, ch := range chs {
		m.cancelRestart(ch.conn)
	}
	for _, sa := range m.sortedSAs() {
		if sa.conn == nil || sa.state == stateDead || sa.state == stateDeleting {
			continue // being deleted already: not up
		}
		if isConn && sa.conn == chs[0].conn {
			m.log.Info("deleting IKE SA on request", sa.logFields()...)
			sa.deleteIKE()
			n++
			continue
		}
		for _, c := range sa.childList() {
			for _, ch := range chs {
				if c.cfg == ch {
					sa.deleteChild(c)
					n++
				}
			}
		}
	}
	return n, nil
}

// Acquire handles an acquire from the dataplane: traffic hit the trap
// policy of a child without SAs. It initiates the child unless that is
// under way.
func (m *Manager) Acquire(id sad.ChildID) {
	m.lock()
	defer m.unlock()
	if m.closed {
		return
	}
	v, ok := m.children[id]
	t, isTrap := v.(trapMarker)
	if !ok || !isTrap {
		return
	}
	for _, sa := range m.sas {
		if sa.state == stateDead || sa.state == stateDeleting {
			continue
		}
		if sa.negotiating(t.ch) {
			return
		}
		for _, c := range sa.childList() {
			if c.cfg == t.ch && c.state != childDead {
				return
			}
		}
	}
	m.log.Info("acquire: traffic for a trapped child, initiating", zap.String("child", t.ch.FullName()))
	if _, err := m.initiateLocked(t.ch, nil); err != nil {
		m.log.Error("initiating on acquire failed", zap.String("child", t.ch.FullName()), zap.Error(err))
	}
}

// installTrap installs a child's trap policies.
func (m *Manager) installTrap(ch *Child) {
	id, ok := m.traps[ch]
	if !ok {
		id = m.allocChildID()
	}
	local, remote, err := m.trapSelectors(ch)
	if err == nil {
		err = m.inst.Trap(id, ch.FullName(), local, remote)
	}
	if err != nil {
		m.log.Error("installing trap policy failed", zap.String("child", ch.FullName()), zap.Error(err))
		if !ok {
			delete(m.children, id)
		}
		return
	}
	m.traps[ch] = id
	m.children[id] = trapMarker{ch}
	m.log.Info("trap policy installed", zap.String("child", ch.FullName()), zap.Uint32("child_id", uint32(id)),
		zap.Stringers("local_ts", local), zap.Stringers("remote_ts", remote))
}

// trapSelectors returns the configured selectors with dynamic ones
// resolved to the connection's addresses.
func (m *Manager) trapSelectors(ch *Child) (local, remote []ts.Selector, err error) {
	raddr, _ := ch.conn.remoteAddr()
	laddr, ok := ch.conn.firstLocal()
	if !ok && m.opts.LocalAddr != nil {
		laddr, ok = m.opts.LocalAddr(raddr)
	}
	if local = ch.LocalTS; local == nil {
		if !ok {
			return nil, nil, errors.New("local_ts dynamic needs a local address")
		}
		local = []ts.Selector{ts.Host(laddr)}
	}
	if remote = ch.RemoteTS; remote == nil {
		remote = []ts.Selector{ts.Host(raddr)}
	}
	return local, remote, nil
}

// allocChildID returns an unused child ID and marks it used.
func (m *Manager) allocChildID() sad.ChildID {
	for {
		id := m.nextID
		m.nextID++
		if m.nextID == 0 {
			m.nextID = m.opts.FirstChildID
		}
		if _, used := m.children[id]; !used && id != 0 {
			m.children[id] = nil
			return id
		}
	}
}

// newSPI returns a fresh random IKE SPI not in use.
func (m *Manager) newSPI() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		spi := binary.BigEndian.Uint64(b[:])
		if _, used := m.sas[spi]; spi != 0 && !used {
			return spi
		}
	}
}

// sortedSAs returns the IKE SAs in a stable order (by creation).
func (m *Manager) sortedSAs() []*ikeSA {
	out := make([]*ikeSA, 0, len(m.sas))
	seen := map[*ikeSA]bool{}
	for _, sa := range m.sas {
		if !seen[sa] {
			seen[sa] = true
			out = append(out, sa)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].serial < out[j].serial })
	return out
}

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// HandleMessage processes one IKE message received from the peer at from:
// natt says whether it came through the NAT-T socket (with its non-ESP
// marker already removed). b is not retained.
func (m *Manager) HandleMessage(b []byte, from netip.AddrPort, natt bool) {
	m.lock()
	defer m.unlock()
	if m.closed {
		return
	}
	m.stats.Received++
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	h, err := message.ParseHeader(b)
	if err != nil {
		m.drop(from, "malformed IKE header", err)
		return
	}
	if h.Exchange == message.IKESAInit && !h.IsResponse() {
		m.handleInitRequest(b, h, from, natt)
		return
	}
	ours := h.SPIi
	if h.IsInitiator() {
		ours = h.SPIr // the sender is the original initiator: we responded
	}
	sa := m.sas[ours]
	if sa == nil || sa.state == stateDead || sa.initiator == h.IsInitiator() {
		m.drop(from, "message for an unknown IKE SA", fmt.Errorf("SPIs %016x_i %016x_r, %v", h.SPIi, h.SPIr, h.Exchange))
		return
	}
	if h.Exchange != message.IKESAInit && (sa.spiI != h.SPIi || sa.spiR != h.SPIr) {
		m.drop(from, "SPIs do not match the IKE SA", fmt.Errorf("SPIs %016x_i %016x_r, %v", h.SPIi, h.SPIr, h.Exchange))
		return
	}
	sa.receive(b, h, from, natt)
}

// drop counts and logs (at debug level: anyone can send garbage) a message
// that is ignored.
func (m *Manager) drop(from netip.AddrPort, why string, err error) {
	m.stats.Dropped++
	m.log.Debug("IKE message dropped: "+why, zap.Stringer("from", from), zap.Error(err))
}
