package sad

import (
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
)

// Engine is the crypto engine of one unidirectional SA, such as *esp.SA or
// *ah.SA. The dataplane reaches the engine's own methods through a type
// switch on SA.Engine.
type Engine interface {
	// SPI returns the SA's Security Parameters Index.
	SPI() uint32
	// Zero drops the key state; the engine is not used afterwards.
	Zero()
}

// seqEngine is an engine that reports its sequence number space, as
// *esp.SA does; outbound SAs without ESN get their packet limits capped by it.
type seqEngine interface {
	ESN() bool
	LastSeq() uint64
}

// namedEngine is an engine that can name its transform for listings.
type namedEngine interface {
	Name() string
}

// Selector decides the inbound policy check of RFC 4301 section 5.2: whether
// a decrypted packet may arrive through the SA. In f, Src is the remote end
// and Dst the local end.
type Selector interface {
	AllowsInbound(f packet.Flow) bool
}

// AnyTraffic is the Selector that accepts every packet.
var AnyTraffic Selector = anyTraffic{}

type anyTraffic struct{}

func (anyTraffic) AllowsInbound(packet.Flow) bool { return true }

// Endpoint is the peer's outer address and port, updated atomically when
// the peer's NAT mapping changes. The SAs of one child (both directions and
// their rekeyed successors) may share one Endpoint.
type Endpoint struct {
	p atomic.Pointer[netip.AddrPort]
}

// NewEndpoint returns an Endpoint holding ap.
func NewEndpoint(ap netip.AddrPort) *Endpoint {
	e := new(Endpoint)
	e.Store(ap)
	return e
}

// Load returns the current address and port.
func (e *Endpoint) Load() netip.AddrPort {
	if p := e.p.Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

// Store sets the address and port.
func (e *Endpoint) Store(ap netip.AddrPort) {
	e.p.Store(&ap)
}

// Update sets the address and port if they differ from the current ones and
// reports whether they did. It allocates only on a change.
func (e *Endpoint) Update(ap netip.AddrPort) bool {
	old := e.p.Load()
	if old != nil && *old == ap {
		return false
	}
	return e.swap(old, ap)
}

// swap is Update's slow path, apart so that ap is copied to the heap only
// on a change.
//
//go:noinline
func (e *Endpoint) swap(old *netip.AddrPort, ap netip.AddrPort) bool {
	p := &ap
	for !e.p.CompareAndSwap(old, p) {
		if old = e.p.Load(); old != nil && *old == ap {
			return false
		}
	}
	return true
}

// Config describes an SA to add to the database.
type Config struct {
	Proto  Proto
	Dir    Dir
	Mode   Mode
	Engine Engine  // the crypto engine; its SPI is the SA's
	Child  ChildID // the owning child; required for outbound SAs
	// Peer is the peer's outer address and port. Endpoint, if set instead,
	// is a cell shared with other SAs (see Endpoint).
	Peer     netip.AddrPort
	Endpoint *Endpoint
	// Selector is the inbound policy check; required for inbound SAs (use
	// AnyTraffic to accept everything).
	Selector Selector
	Lifetime Lifetime
}

// Flag bits of SA.flags.
const (
	flagSoft        = 1 << iota // SoftExpire raised (or suppressed)
	flagHard                    // HardExpire raised (or suppressed)
	flagIdle                    // Idle raised (or suppressed)
	flagSoftPending             // SoftExpire could not be delivered yet
	flagHardPending             // HardExpire could not be delivered yet
	flagIdlePending             // Idle could not be delivered yet
	flagDead                    // hard expired or deleted: refuse packets
	flagRemoved                 // no longer in the lookup tables
)

// SA is one unidirectional security association in the database. Its
// methods are safe for concurrent use; the packet path calls Count, CountRun,
// Drop and CheckInbound without locks.
type SA struct {
	proto   Proto
	dir     Dir
	mode    Mode
	child   ChildID
	engine  Engine
	sel     Selector
	peer    *Endpoint
	life    Lifetime // effective limits
	created time.Time
	db      *DB

	// Packet and byte limits for the packet path, 0 turned into MaxUint64,
	// soft no greater than hard.
	softPk, softBy, hardPk, hardBy uint64

	// Owned by the sweep (DB.sweepMu).
	idleSeen   uint64
	lastActive time.Time
	// Owned by DB.mu.
	retiredAt time.Time
	zeroed    bool

	_       [64]byte // keep the read-only fields above off the counters' cache line
	flags   atomic.Uint32
	softWhy atomic.Uint32
	hardWhy atomic.Uint32
	packets atomic.Uint64
	bytes   atomic.Uint64
	_       [64]byte
	drops   [NumDropReasons]atomic.Uint64
}

func newSA(db *DB, cfg *Config, now time.Time) *SA {
	sa := &SA{
		proto:      cfg.Proto,
		dir:        cfg.Dir,
		mode:       cfg.Mode,
		child:      cfg.Child,
		engine:     cfg.Engine,
		sel:        cfg.Selector,
		peer:       cfg.Endpoint,
		life:       cfg.Lifetime,
		created:    now,
		db:         db,
		lastActive: now,
	}
	if sa.peer == nil {
		sa.peer = NewEndpoint(cfg.Peer)
	}
	if se, ok := sa.engine.(seqEngine); ok && sa.dir == Outbound && !se.ESN() {
		capSeqSpace(&sa.life, se.LastSeq())
	}
	sa.hardPk = limit(sa.life.Hard.Packets)
	sa.hardBy = limit(sa.life.Hard.Bytes)
	sa.softPk = min(limit(sa.life.Soft.Packets), sa.hardPk)
	sa.softBy = min(limit(sa.life.Soft.Bytes), sa.hardBy)
	return sa
}

// capSeqSpace caps the packet limits of an outbound SA with 32-bit sequence
// numbers, whose last sequence number sent is last, so that the SA is
// rekeyed (at 7/8 of the space) and expires before the counter would cycle
// (RFC 4303 section 3.3.3).
func capSeqSpace(l *Lifetime, last uint64) {
	remaining := uint64(math.MaxUint32) - min(last, math.MaxUint32)
	if l.Hard.Packets != 0 && l.Hard.Packets <= remaining {
		return
	}
	l.Hard.Packets = max(remaining, 1) // 0 would mean no limit
	if soft := remaining - remaining/8; l.Soft.Packets == 0 || l.Soft.Packets > soft {
		l.Soft.Packets = soft
	}
}

func limit(v uint64) uint64 {
	if v == 0 {
		return math.MaxUint64
	}
	return v
}

// SPI returns the SA's Security Parameters Index.
func (sa *SA) SPI() uint32 { return sa.engine.SPI() }

// Proto returns the SA's protocol.
func (sa *SA) Proto() Proto { return sa.proto }

// Dir returns the SA's direction.
func (sa *SA) Dir() Dir { return sa.dir }

// Mode returns the SA's mode.
func (sa *SA) Mode() Mode { return sa.mode }

// Child returns the child that owns the SA.
func (sa *SA) Child() ChildID { return sa.child }

// Selector returns the SA's inbound policy check (nil for outbound SAs).
func (sa *SA) Selector() Selector { return sa.sel }

// Engine returns the SA's crypto engine.
func (sa *SA) Engine() Engine { return sa.engine }

// ESP returns the SA's engine if it is an ESP engine, else nil.
func (sa *SA) ESP() *esp.SA {
	e, _ := sa.engine.(*esp.SA)
	return e
}

// Created returns when the SA was added to the database.
func (sa *SA) Created() time.Time { return sa.created }

// Lifetime returns the SA's effective limits.
func (sa *SA) Lifetime() Lifetime { return sa.life }

// Peer returns the peer's current outer address and port.
func (sa *SA) Peer() netip.AddrPort { return sa.peer.Load() }

// Endpoint returns the SA's peer endpoint cell, to share with other SAs.
func (sa *SA) Endpoint() *Endpoint { return sa.peer }

// UpdatePeer records a new peer address and port (NAT rebinding, seen on an
// authenticated packet) and reports whether it changed.
func (sa *SA) UpdatePeer(ap netip.AddrPort) bool { return sa.peer.Update(ap) }

// Alive reports whether the SA still takes packets: not hard expired, not
// deleted.
func (sa *SA) Alive() bool { return sa.flags.Load()&flagDead == 0 }

// Count accounts one packet of n bytes (outbound before sealing, inbound
// after the ICV verified) and checks the byte and packet limits. It returns
// false if the SA is dead or the packet would pass its hard limit: the
// packet must then be dropped (it is counted as DropExpired).
func (sa *SA) Count(n int) bool {
	if sa.flags.Load()&flagDead != 0 {
		sa.drops[DropExpired].Add(1)
		return false
	}
	p := sa.packets.Add(1)
	b := sa.bytes.Add(uint64(n))
	if p < sa.softPk && b < sa.softBy {
		return true
	}
	return sa.countSlow(p, b, uint64(n))
}

func (sa *SA) countSlow(p, b, n uint64) bool {
	why := ReasonBytes
	if p > sa.hardPk || b > sa.hardBy {
		if p > sa.hardPk {
			why = ReasonPackets
		}
		// Over the hard limit: refuse the packet and take it back out.
		sa.packets.Add(^uint64(0))
		sa.bytes.Add(-n)
		sa.drops[DropExpired].Add(1)
		sa.expire(why)
		return false
	}
	if p >= sa.hardPk || b >= sa.hardBy {
		if p >= sa.hardPk {
			why = ReasonPackets
		}
		sa.expire(why) // this was the last packet
		return true
	}
	if p >= sa.softPk {
		why = ReasonPackets
	}
	sa.raise(SoftExpire, why)
	return true
}

// CountRun accounts a run of packets of the given sizes in bytes, in
// order, as Count would one by one, with one atomic update of each counter
// while the run stays clear of the limits. Count refuses every packet after
// the first it refuses (the SA is then dead), so the packets accepted are a
// prefix of the run: CountRun returns its length.
func (sa *SA) CountRun(sizes []int) int {
	if len(sizes) == 0 {
		return 0
	}
	if sa.flags.Load()&flagDead != 0 {
		sa.drops[DropExpired].Add(uint64(len(sizes)))
		return 0
	}
	var total uint64
	for _, n := range sizes {
		total += uint64(n)
	}
	n := uint64(len(sizes))
	p := sa.packets.Add(n)
	b := sa.bytes.Add(total)
	if p < sa.softPk && b < sa.softBy {
		return len(sizes)
	}
	// Near a limit: walk the run, each packet at its place in the
	// counters, as Count would have seen them.
	p, b = p-n, b-total
	for i, size := range sizes {
		p++
		b += uint64(size)
		if p < sa.softPk && b < sa.softBy {
			continue
		}
		why := ReasonBytes
		if p > sa.hardPk || b > sa.hardBy {
			if p > sa.hardPk {
				why = ReasonPackets
			}
			sa.takeBack(sizes[i:])
			sa.expire(why)
			return i
		}
		if p >= sa.hardPk || b >= sa.hardBy {
			if p >= sa.hardPk {
				why = ReasonPackets
			}
			sa.takeBack(sizes[i+1:]) // this was the last packet
			sa.expire(why)
			return i + 1
		}
		if p >= sa.softPk {
			why = ReasonPackets
		}
		sa.raise(SoftExpire, why)
	}
	return len(sizes)
}

// takeBack removes refused packets, counted by CountRun, from the counters
// and counts them as DropExpired.
func (sa *SA) takeBack(sizes []int) {
	if len(sizes) == 0 {
		return
	}
	var total uint64
	for _, n := range sizes {
		total += uint64(n)
	}
	sa.packets.Add(-uint64(len(sizes)))
	sa.bytes.Add(-total)
	sa.drops[DropExpired].Add(uint64(len(sizes)))
}

// Drop counts a packet dropped for reason r.
func (sa *SA) Drop(r DropReason) {
	if r >= NumDropReasons {
		r = DropOther
	}
	sa.drops[r].Add(1)
}

// DropErr counts a packet dropped for the engine error err (see DropReasonOf).
func (sa *SA) DropErr(err error) { sa.drops[DropReasonOf(err)].Add(1) }

// CheckInbound reports whether a decrypted packet with flow f matches the
// SA's selectors; if not, it counts the packet as DropPolicy.
func (sa *SA) CheckInbound(f packet.Flow) bool {
	if sa.sel != nil && sa.sel.AllowsInbound(f) {
		return true
	}
	sa.drops[DropPolicy].Add(1)
	return false
}

// Packets returns the number of packets counted.
func (sa *SA) Packets() uint64 { return sa.packets.Load() }

// Bytes returns the number of bytes counted.
func (sa *SA) Bytes() uint64 { return sa.bytes.Load() }

// Drops returns the number of packets dropped for reason r.
func (sa *SA) Drops(r DropReason) uint64 {
	if r >= NumDropReasons {
		return 0
	}
	return sa.drops[r].Load()
}

// expire marks the SA dead and raises HardExpire once, from the packet
// path; it wakes Run to remove the SA from the tables.
func (sa *SA) expire(why Reason) {
	if sa.markExpired(why) {
		sa.db.kick()
	}
}

// markExpired marks the SA dead and raises HardExpire unless it was already
// raised (or suppressed); it reports whether it raised it.
func (sa *SA) markExpired(why Reason) bool {
	if sa.flags.Or(flagHard|flagSoft|flagDead)&flagHard != 0 {
		return false
	}
	sa.hardWhy.Store(uint32(why))
	if !sa.db.emit(sa.event(HardExpire, why)) {
		sa.flags.Or(flagHardPending)
	}
	return true
}

// raise raises SoftExpire or Idle once.
func (sa *SA) raise(k EventKind, why Reason) {
	bit, pending := uint32(flagSoft), uint32(flagSoftPending)
	if k == Idle {
		bit, pending = flagIdle, flagIdlePending
	}
	if sa.flags.Load()&bit != 0 || sa.flags.Or(bit)&bit != 0 {
		return // the load keeps packets past the soft limit off the atomic RMW
	}
	if k == SoftExpire {
		sa.softWhy.Store(uint32(why))
	}
	if !sa.db.emit(sa.event(k, why)) {
		sa.flags.Or(pending)
	}
}

func (sa *SA) event(k EventKind, why Reason) Event {
	return Event{Kind: k, Reason: why, Proto: sa.proto, SPI: sa.engine.SPI(), Dir: sa.dir, Child: sa.child, SA: sa}
}

// Snapshot is a point-in-time copy of an SA's identity, state and counters.
type Snapshot struct {
	Proto     Proto
	SPI       uint32
	Dir       Dir
	Mode      Mode
	Child     ChildID
	Transform string // the engine's name, e.g. "aes128gcm16"
	Peer      netip.AddrPort
	Created   time.Time
	Lifetime  Lifetime
	Packets   uint64
	Bytes     uint64
	Drops     [NumDropReasons]uint64 // indexed by DropReason
	// SoftExpired, HardExpired and Idle report the events raised;
	// Removed that the SA is no longer in the database.
	SoftExpired, HardExpired, Idle, Removed bool
}

// Snapshot returns the SA's current state.
func (sa *SA) Snapshot() Snapshot {
	s := Snapshot{
		Proto:    sa.proto,
		SPI:      sa.engine.SPI(),
		Dir:      sa.dir,
		Mode:     sa.mode,
		Child:    sa.child,
		Peer:     sa.peer.Load(),
		Created:  sa.created,
		Lifetime: sa.life,
		Packets:  sa.packets.Load(),
		Bytes:    sa.bytes.Load(),
	}
	if n, ok := sa.engine.(namedEngine); ok {
		s.Transform = n.Name()
	}
	for i := range s.Drops {
		s.Drops[i] = sa.drops[i].Load()
	}
	f := sa.flags.Load()
	s.SoftExpired = f&flagSoft != 0 && sa.softWhy.Load() != 0
	s.HardExpired = f&flagHard != 0 && sa.hardWhy.Load() != 0
	s.Idle = f&flagIdle != 0 && f&flagRemoved == 0
	s.Removed = f&flagRemoved != 0
	return s
}
