package spd

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/goipsec/goipsec/internal/packet"
)

// Errors that DB updates return, wrapped with details.
var (
	// ErrInvalid reports a policy that fails validation.
	ErrInvalid = errors.New("invalid policy")
	// ErrExists reports an Add with an ID that is already installed.
	ErrExists = errors.New("policy ID already in use")
	// ErrNotFound reports a Remove or Replace of an ID that is not installed.
	ErrNotFound = errors.New("no policy with that ID")
)

// Policy is one entry of the ordered SPD.
type Policy struct {
	// ID names the policy to Remove, Replace and Get: nonzero, unique in
	// the DB, chosen by the caller.
	ID uint64
	// Dir is the traffic the policy applies to.
	Dir Direction
	// Priority places the policy among those of its direction: lower
	// first; equal priorities keep insertion order.
	Priority uint32
	// Selector is the traffic the policy matches.
	Selector Selector
	// Action is the decision for matching packets.
	Action Action
	// Ref, for Protect, is an opaque reference to the SA (bundle) the
	// dataplane must use, such as the IKE child SA's ID; spd only returns it.
	Ref uint64
}

// Validate reports why p cannot be installed, or nil.
func (p *Policy) Validate() error {
	var err error
	switch {
	case p.ID == 0:
		err = errors.New("zero ID")
	case !p.Dir.valid():
		err = fmt.Errorf("bad direction %v", p.Dir)
	case !p.Action.valid():
		err = fmt.Errorf("bad action %v", p.Action)
	default:
		err = p.Selector.Validate()
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// String returns a one-line description of p for logs.
func (p Policy) String() string {
	s := fmt.Sprintf("#%d %v prio %d %v: %v", p.ID, p.Dir, p.Priority, p.Selector, p.Action)
	if p.Action == Protect {
		s += fmt.Sprintf(" ref %d", p.Ref)
	}
	return s
}

// Decision is the outcome of a lookup.
type Decision struct {
	// Action is the matching policy's action, or the default.
	Action Action
	// Ref is the matching policy's Ref when Action is Protect, else 0.
	Ref uint64
	// Policy is the matching policy, nil when the default applied; it
	// belongs to the DB and must not be modified.
	Policy *Policy
}

// Snapshot is an immutable, consistent view of a DB, safe for concurrent use.
// The datapath may load one per batch of packets.
type Snapshot struct {
	gen  uint64
	def  Action
	n    int
	h    hasher
	sets [2][2]*tupleSet // [Direction][family]
	// ported counts, by [Direction][family], the policies that name a
	// protocol or ports: while it is 0, lookups depend on addresses only.
	ported [2][2]int
}

// Generation counts the updates that led to s; it grows with every change.
func (s *Snapshot) Generation() uint64 { return s.gen }

// Default returns the action for traffic that no policy matches.
func (s *Snapshot) Default() Action { return s.def }

// Len returns the number of policies, both directions.
func (s *Snapshot) Len() int { return s.n }

// AddrOnly reports whether Lookup(dir, f) depends on f's addresses only
// for flows of f's family (IPv4 when is4): no policy of that direction and
// family names a protocol or ports, so flows between the same addresses
// share one decision.
func (s *Snapshot) AddrOnly(dir Direction, is4 bool) bool {
	fam := famV6
	if is4 {
		fam = famV4
	}
	return dir.valid() && s.ported[dir][fam] == 0
}

// Lookup returns the decision of the first policy of direction dir, in SPD
// order, that matches f, or the default action. A flow without valid
// addresses of a single family gets Discard. It does not allocate.
func (s *Snapshot) Lookup(dir Direction, f *packet.Flow) Decision {
	fam, ok := flowFamily(f)
	if !ok || !dir.valid() {
		return Decision{Action: Discard}
	}
	src, dst := u128FromAddr(f.Src), u128FromAddr(f.Dst)
	proto, sport, dport, opaque := f.Proto, f.SrcPort, f.DstPort, f.Opaque
	var best *rule
	bo := maxOrder
	for _, t := range s.sets[dir][fam].tuples {
		if !t.min.less(bo) {
			break // tuples are sorted by min: none of the rest can win
		}
		if t.residue {
			for i := range t.rrules {
				r := &t.rrules[i]
				if !r.ord.less(bo) {
					break
				}
				if r.matches(proto, sport, dport, opaque) && inRanges(r.src, src) && inRanges(r.dst, dst) {
					best, bo = &r.rule, r.ord
					break
				}
			}
			continue
		}
		k := key{src.and(t.sm), dst.and(t.dm)}
		h := s.h.hash(&k)
		sl := t.shards[h>>t.shift].get(&k, h)
		if sl == nil || !sl.first.ord.less(bo) {
			continue
		}
		if sl.first.matches(proto, sport, dport, opaque) {
			best, bo = &sl.first, sl.first.ord
			continue
		}
		for i := range sl.rest {
			r := &sl.rest[i]
			if !r.ord.less(bo) {
				break
			}
			if r.matches(proto, sport, dport, opaque) {
				best, bo = r, r.ord
				break
			}
		}
	}
	if best == nil {
		return Decision{Action: s.def}
	}
	return Decision{Action: best.action, Ref: best.ref, Policy: best.pol}
}

// DB is the Security Policy Database, made by New. Lookups may run in any
// number of goroutines, without locking, while others update it.
type DB struct {
	mu   sync.Mutex // serializes writers
	cur  atomic.Pointer[Snapshot]
	byID map[uint64]*entry // writer state, under mu
	seq  uint64            // last insertion sequence number, under mu
}

// entry is an installed policy: a private copy and its insertion number.
type entry struct {
	p   Policy
	seq uint64
}

func (e *entry) order() order { return order{e.p.Priority, e.seq} }

// New returns an empty DB whose unmatched traffic gets def; an invalid def
// is taken as Discard.
func New(def Action) *DB {
	if !def.valid() {
		def = Discard
	}
	s := &Snapshot{gen: 1, def: def}
	for i := range s.h {
		s.h[i] = rand.Uint64()
	}
	for d := range s.sets {
		for f := range s.sets[d] {
			s.sets[d][f] = &tupleSet{gen: s.gen}
		}
	}
	db := &DB{byID: make(map[uint64]*entry)}
	db.cur.Store(s)
	return db
}

// Snapshot returns the current view of the database.
func (db *DB) Snapshot() *Snapshot { return db.cur.Load() }

// Lookup is db.Snapshot().Lookup(dir, f).
func (db *DB) Lookup(dir Direction, f *packet.Flow) Decision {
	return db.cur.Load().Lookup(dir, f)
}

// Len returns the number of installed policies.
func (db *DB) Len() int { return db.cur.Load().n }

// Default returns the action for traffic that no policy matches.
func (db *DB) Default() Action { return db.cur.Load().def }

// SetDefault changes the action for traffic that no policy matches.
func (db *DB) SetDefault(a Action) error {
	if !a.valid() {
		return fmt.Errorf("spd: bad default action %v", a)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	s := *db.cur.Load()
	s.gen++
	s.def = a
	db.cur.Store(&s)
	return nil
}

// Add installs p; its ID must be new.
func (db *DB) Add(p Policy) error { return db.Apply(&Batch{ops: []batchOp{{opAdd, p}}}) }

// Remove uninstalls the policy with the given ID.
func (db *DB) Remove(id uint64) error {
	return db.Apply(&Batch{ops: []batchOp{{opRemove, Policy{ID: id}}}})
}

// Replace swaps the installed policy with p's ID for p, atomically; p keeps
// the old policy's place among equal priorities.
func (db *DB) Replace(p Policy) error { return db.Apply(&Batch{ops: []batchOp{{opReplace, p}}}) }

// Get returns a copy of the policy with the given ID.
func (db *DB) Get(id uint64) (Policy, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	e, ok := db.byID[id]
	if !ok {
		return Policy{}, false
	}
	return copyPolicy(&e.p), true
}

// Policies returns copies of all policies, outbound then inbound, each in
// SPD order.
func (db *DB) Policies() []Policy {
	db.mu.Lock()
	es := make([]*entry, 0, len(db.byID))
	for _, e := range db.byID {
		es = append(es, e)
	}
	db.mu.Unlock()
	slices.SortFunc(es, func(a, b *entry) int {
		switch {
		case a.p.Dir != b.p.Dir:
			return int(a.p.Dir) - int(b.p.Dir)
		case a.order().less(b.order()):
			return -1
		}
		return 1
	})
	out := make([]Policy, len(es))
	for i, e := range es {
		out[i] = copyPolicy(&e.p)
	}
	return out
}

func copyPolicy(p *Policy) Policy {
	c := *p
	c.Selector = p.Selector.clone()
	return c
}

type opKind uint8

const (
	opAdd opKind = iota
	opRemove
	opReplace
)

type batchOp struct {
	kind opKind
	p    Policy // only p.ID for opRemove
}

// Batch is a list of changes that Apply installs atomically, in order: all
// of them or, on error, none. The zero Batch is empty and ready to use.
// Selectors' slices must not change until Apply returns; a Batch is not
// safe for concurrent use.
type Batch struct {
	ops []batchOp
}

// Add queues the installation of p.
func (b *Batch) Add(p Policy) { b.ops = append(b.ops, batchOp{opAdd, p}) }

// Remove queues the removal of the policy with the given ID.
func (b *Batch) Remove(id uint64) { b.ops = append(b.ops, batchOp{opRemove, Policy{ID: id}}) }

// Replace queues the replacement of the policy with p's ID by p.
func (b *Batch) Replace(p Policy) { b.ops = append(b.ops, batchOp{opReplace, p}) }

// Len returns the number of queued changes.
func (b *Batch) Len() int { return len(b.ops) }

// Apply makes the changes of b visible to lookups at once. A failing change
// leaves the DB as it was; the error names it. Earlier changes in b are seen
// by later ones (a policy added may be removed again).
func (db *DB) Apply(b *Batch) error {
	if b == nil || len(b.ops) == 0 {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.apply(b.ops)
}

// change is one resolved operation: old uninstalled, then new installed.
type change struct{ old, new *entry }

func (db *DB) apply(ops []batchOp) error {
	base := db.cur.Load()
	changes := make([]change, 0, len(ops))
	over := make(map[uint64]*entry, len(ops)) // IDs touched by ops; nil: removed
	get := func(id uint64) *entry {
		if e, ok := over[id]; ok {
			return e
		}
		return db.byID[id]
	}
	fail := func(i int, id uint64, err error) error {
		if len(ops) == 1 {
			return fmt.Errorf("spd: policy %d: %w", id, err)
		}
		return fmt.Errorf("spd: batch change %d, policy %d: %w", i, id, err)
	}
	seq, n := db.seq, base.n
	for i := range ops {
		op := &ops[i]
		id := op.p.ID
		if op.kind != opRemove {
			if err := op.p.Validate(); err != nil {
				return fail(i, id, err)
			}
		}
		old := get(id)
		switch {
		case op.kind == opAdd && old != nil:
			return fail(i, id, ErrExists)
		case op.kind != opAdd && old == nil:
			return fail(i, id, ErrNotFound)
		}
		var e *entry
		switch op.kind {
		case opAdd:
			seq++
			e = &entry{p: copyPolicy(&op.p), seq: seq}
			n++
		case opRemove:
			n--
		case opReplace:
			e = &entry{p: copyPolicy(&op.p), seq: old.seq}
		}
		over[id] = e
		changes = append(changes, change{old, e})
	}

	var d *draft
	if 8*len(changes) >= base.n {
		// Rebuilding costs about as much as changing an eighth of the
		// policies one at a time, and leaves tables tightly sized.
		d = newDraft(base, true)
		type ordered struct {
			o order
			e *entry
		}
		es := make([]ordered, 0, n)
		for id, e := range db.byID {
			if _, ok := over[id]; !ok {
				es = append(es, ordered{e.order(), e})
			}
		}
		for _, e := range over {
			if e != nil {
				es = append(es, ordered{e.order(), e})
			}
		}
		// In order, every rule lands at the end of its bucket.
		slices.SortFunc(es, func(a, b ordered) int {
			if c := cmp.Compare(a.o.prio, b.o.prio); c != 0 {
				return c
			}
			return cmp.Compare(a.o.seq, b.o.seq)
		})
		for _, x := range es {
			d.apply(x.e, true)
		}
	} else {
		d = newDraft(base, false)
		for _, c := range changes {
			if c.old != nil {
				d.apply(c.old, false)
			}
			if c.new != nil {
				d.apply(c.new, true)
			}
		}
	}
	s := d.finish()
	s.n = n
	db.cur.Store(s)

	if len(db.byID) == 0 {
		db.byID = make(map[uint64]*entry, len(over))
	}
	for id, e := range over {
		if e == nil {
			delete(db.byID, id)
		} else {
			db.byID[id] = e
		}
	}
	db.seq = seq
	return nil
}
