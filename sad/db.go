package sad

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goipsec/goipsec/esp"
)

// Defaults for Options.
const (
	DefaultSweepInterval = time.Second
	DefaultGrace         = 2 * time.Second
	DefaultEventBuffer   = 1024
)

// Errors returned by the database's update methods.
var (
	ErrExists = errors.New("sad: SA already present")
	ErrClosed = errors.New("sad: database closed")
)

// Options configure a DB; the zero value selects the defaults.
type Options struct {
	// Now is the clock for lifetimes and idle detection; nil means time.Now.
	Now func() time.Time
	// SweepInterval is how often Run checks time limits and idleness,
	// re-raises undelivered events and zeroes retired SAs.
	SweepInterval time.Duration
	// Grace is how long a removed SA's keys are kept for packets already
	// in flight before the engine is zeroed; negative means zero at once.
	Grace time.Duration
	// EventBuffer is the capacity of the event channel.
	EventBuffer int
}

// DB is the Security Association Database. Lookups are lock-free and do
// not allocate; updates are serialised by a mutex and never block lookups.
type DB struct {
	now      func() time.Time
	interval time.Duration
	grace    time.Duration

	in  *table // inbound SAs by inKey(proto, SPI)
	out *table // current outbound SA by child

	mu      sync.Mutex // serialises updates
	retired []*SA      // removed, waiting for zeroing or event delivery
	closed  bool

	sweepMu sync.Mutex // serialises sweeps
	expired []*SA      // scratch of the sweep

	events  chan Event
	dropped atomic.Uint64
	kickc   chan struct{}
	done    chan struct{}
}

// New returns an empty database.
func New(opts Options) *DB {
	db := &DB{
		now:      opts.Now,
		interval: opts.SweepInterval,
		grace:    opts.Grace,
		in:       newTable(),
		out:      newTable(),
		events:   make(chan Event, cmp.Or(opts.EventBuffer, DefaultEventBuffer)),
		kickc:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.interval <= 0 {
		db.interval = DefaultSweepInterval
	}
	if db.grace == 0 {
		db.grace = DefaultGrace
	}
	return db
}

func inKey(p Proto, spi uint32) uint64 { return uint64(p)<<32 | uint64(spi) }

func (sa *SA) key() uint64 {
	if sa.dir == Inbound {
		return inKey(sa.proto, sa.engine.SPI())
	}
	return uint64(sa.child)
}

func (db *DB) table(d Dir) *table {
	if d == Inbound {
		return db.in
	}
	return db.out
}

// Inbound returns the inbound SA with the given protocol and SPI, or nil.
func (db *DB) Inbound(p Proto, spi uint32) *SA { return db.in.get(inKey(p, spi)) }

// Outbound returns the current outbound SA of child, or nil.
func (db *DB) Outbound(child ChildID) *SA { return db.out.get(uint64(child)) }

// Events returns the channel on which lifetime events are delivered.
func (db *DB) Events() <-chan Event { return db.events }

// DroppedEvents returns how many times an event found the channel full;
// each such event is raised again by a later sweep.
func (db *DB) DroppedEvents() uint64 { return db.dropped.Load() }

func (db *DB) emit(ev Event) bool {
	select {
	case db.events <- ev:
		return true
	default:
		db.dropped.Add(1)
		return false
	}
}

// kick asks Run for a sweep soon, to remove a hard-expired SA.
func (db *DB) kick() {
	select {
	case db.kickc <- struct{}{}:
	default:
	}
}

func check(cfg *Config) error {
	switch {
	case cfg.Engine == nil:
		return errors.New("sad: no engine")
	case cfg.Proto != ESP && cfg.Proto != AH:
		return fmt.Errorf("sad: bad protocol %d", cfg.Proto)
	case cfg.Dir != Inbound && cfg.Dir != Outbound:
		return fmt.Errorf("sad: bad direction %d", cfg.Dir)
	case cfg.Mode != Tunnel && cfg.Mode != Transport:
		return fmt.Errorf("sad: bad mode %d", cfg.Mode)
	case cfg.Dir == Outbound && cfg.Child == 0:
		return errors.New("sad: outbound SA without a child")
	case cfg.Dir == Inbound && cfg.Selector == nil:
		return errors.New("sad: inbound SA without a selector")
	case cfg.Endpoint != nil && cfg.Peer.IsValid():
		return errors.New("sad: both Peer and Endpoint set")
	}
	if _, ok := cfg.Engine.(*esp.SA); ok && cfg.Proto != ESP {
		return fmt.Errorf("sad: ESP engine on a %s SA", cfg.Proto)
	}
	if spi := cfg.Engine.SPI(); spi < 256 {
		return fmt.Errorf("sad: SPI %#x is reserved (0-255)", spi)
	}
	return nil
}

// Add installs a new SA. An inbound SA is found by its protocol and SPI,
// an outbound SA by its child; Add fails with ErrExists if that place is
// taken (use Replace to swap).
func (db *DB) Add(cfg Config) (*SA, error) {
	if err := check(&cfg); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return nil, ErrClosed
	}
	sa := newSA(db, &cfg, db.now())
	t := db.table(sa.dir)
	if old := t.get(sa.key()); old != nil {
		return nil, fmt.Errorf("sad: %s %s spi %#08x child %d: %w", sa.proto, sa.dir, sa.SPI(), sa.child, ErrExists)
	}
	t.put(sa.key(), sa)
	return sa, nil
}

// Replace installs a new SA in the place of the one with the same key (for
// an outbound SA, the child's current one: a rekey), atomically for
// lookups. The displaced SA, returned as old (nil if none), raises no more
// events and is zeroed after the grace.
func (db *DB) Replace(cfg Config) (sa, old *SA, err error) {
	if err := check(&cfg); err != nil {
		return nil, nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return nil, nil, ErrClosed
	}
	sa = newSA(db, &cfg, db.now())
	if old = db.table(sa.dir).put(sa.key(), sa); old != nil {
		db.retireLocked(old, false)
	}
	return sa, old, nil
}

// Delete removes sa, if it is still in the database, and reports whether it
// did. The SA refuses further packets at once, raises no more events, and
// is zeroed after the grace.
func (db *DB) Delete(sa *SA) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.deleteLocked(sa)
}

func (db *DB) deleteLocked(sa *SA) bool {
	if sa == nil || sa.db != db || !db.table(sa.dir).remove(sa.key(), sa) {
		return false
	}
	db.retireLocked(sa, true)
	return true
}

// DeleteChild removes every SA of child and returns how many it removed.
func (db *DB) DeleteChild(child ChildID) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	var victims []*SA
	collect := func(sa *SA) {
		if sa.child == child {
			victims = append(victims, sa)
		}
	}
	db.in.each(collect)
	db.out.each(collect)
	n := 0
	for _, sa := range victims {
		if db.deleteLocked(sa) {
			n++
		}
	}
	return n
}

// retireLocked records an SA just removed from the tables: it raises no
// more events and its engine is zeroed after the grace.
func (db *DB) retireLocked(sa *SA, dead bool) {
	f := uint32(flagSoft | flagHard | flagIdle | flagRemoved)
	if dead {
		f |= flagDead
	}
	sa.flags.Or(f)
	sa.retiredAt = db.now()
	if db.grace < 0 {
		sa.engine.Zero()
		sa.zeroed = true
	}
	db.retired = append(db.retired, sa)
}

// Len returns the number of inbound and outbound SAs in the database.
func (db *DB) Len() (in, out int) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.in.n, db.out.n
}

// Range calls f for every SA in the database, without locks, until f
// returns false. SAs added or removed during the walk may be missed.
func (db *DB) Range(f func(*SA) bool) {
	stop := false
	visit := func(sa *SA) {
		if !stop && !f(sa) {
			stop = true
		}
	}
	db.in.each(visit)
	db.out.each(visit)
}

// List returns snapshots of all SAs, ordered by child, direction and SPI.
func (db *DB) List() []Snapshot {
	var l []Snapshot
	db.Range(func(sa *SA) bool {
		l = append(l, sa.Snapshot())
		return true
	})
	slices.SortFunc(l, func(a, b Snapshot) int {
		return cmp.Or(cmp.Compare(a.Child, b.Child), cmp.Compare(a.Dir, b.Dir), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.SPI, b.SPI))
	})
	return l
}

// Sweep checks every SA's time limits and idleness, removes hard-expired
// SAs, re-raises events the channel had no room for and zeroes SAs whose
// grace has passed. Run calls it periodically; tests call it directly.
func (db *DB) Sweep() {
	db.sweepMu.Lock()
	defer db.sweepMu.Unlock()
	now := db.now()
	exp := db.expired[:0]
	visit := func(sa *SA) {
		if sa.checkTime(now) {
			exp = append(exp, sa)
		}
		db.retry(sa)
	}
	db.in.each(visit)
	db.out.each(visit)

	db.mu.Lock()
	defer db.mu.Unlock()
	for _, sa := range exp {
		if db.table(sa.dir).remove(sa.key(), sa) {
			db.retireLocked(sa, true)
		}
	}
	clear(exp)
	db.expired = exp[:0]
	keep := db.retired[:0]
	for _, sa := range db.retired {
		db.retry(sa)
		if !sa.zeroed && now.Sub(sa.retiredAt) >= db.grace {
			sa.engine.Zero()
			sa.zeroed = true
		}
		if sa.zeroed && sa.flags.Load()&(flagSoftPending|flagHardPending|flagIdlePending) == 0 {
			continue
		}
		keep = append(keep, sa)
	}
	clear(db.retired[len(keep):])
	db.retired = keep
}

// checkTime checks the time limits and idleness of a live SA at now and
// reports whether it is dead and must be removed.
func (sa *SA) checkTime(now time.Time) bool {
	if sa.flags.Load()&flagDead != 0 {
		return true
	}
	age := now.Sub(sa.created)
	if h := sa.life.Hard.Time; h > 0 && age >= h {
		sa.markExpired(ReasonTime)
		return true
	}
	if s := sa.life.Soft.Time; s > 0 && age >= s {
		sa.raise(SoftExpire, ReasonTime)
	}
	if sa.life.Idle > 0 {
		if p := sa.packets.Load(); p != sa.idleSeen {
			sa.idleSeen, sa.lastActive = p, now
			sa.flags.And(^uint32(flagIdle | flagIdlePending)) // traffic again: re-arm
		} else if now.Sub(sa.lastActive) >= sa.life.Idle {
			sa.raise(Idle, ReasonIdle)
		}
	}
	return false
}

// retry raises again, in order, the events of sa that found the channel full.
func (db *DB) retry(sa *SA) {
	f := sa.flags.Load()
	if f&(flagSoftPending|flagHardPending|flagIdlePending) == 0 {
		return
	}
	for _, p := range []struct {
		bit  uint32
		kind EventKind
		why  *atomic.Uint32
	}{
		{flagSoftPending, SoftExpire, &sa.softWhy},
		{flagHardPending, HardExpire, &sa.hardWhy},
		{flagIdlePending, Idle, nil},
	} {
		if f&p.bit == 0 {
			continue
		}
		why := ReasonIdle
		if p.why != nil {
			why = Reason(p.why.Load())
		}
		if !db.emit(sa.event(p.kind, why)) {
			return
		}
		sa.flags.And(^p.bit)
	}
}

// Run sweeps every SweepInterval, and soon after an SA hard-expires on the
// packet path, until ctx is done or the database is closed.
func (db *DB) Run(ctx context.Context) {
	t := time.NewTicker(db.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-db.done:
			return
		case <-t.C:
		case <-db.kickc:
		}
		db.Sweep()
	}
}

// Close removes every SA and zeroes all engines at once, without grace;
// call it after the dataplane has stopped. Run returns, and later updates
// fail with ErrClosed.
func (db *DB) Close() {
	db.sweepMu.Lock()
	defer db.sweepMu.Unlock()
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return
	}
	db.closed = true
	close(db.done)
	var all []*SA
	db.Range(func(sa *SA) bool {
		all = append(all, sa)
		return true
	})
	for _, sa := range all {
		db.deleteLocked(sa)
	}
	for _, sa := range db.retired {
		if !sa.zeroed {
			sa.engine.Zero()
			sa.zeroed = true
		}
	}
	db.retired = nil
}
