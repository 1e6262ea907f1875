package spd

import (
	"math"
	"math/bits"
	"slices"
)

// The compiled structure, per direction and address family, is a tuple
// space: one tuple per pair of prefix lengths (of the flow's source and
// destination: local and remote outbound, the reverse inbound) that some
// policy uses, each a hash table keyed by the masked address pair and
// holding the rules for that pair in policy order. A lookup probes the tuples
// in order of the best rule each holds and stops as soon as the next tuple
// cannot beat what it has found. A tuple's hash table is split into shards so
// that an update copies one shard and the shard directory, not the table.
//
// Every node carries the generation of the snapshot that created it. A
// writer building generation g modifies nodes of generation g in place and
// copies any other node before changing it, so published snapshots are never
// written to.

// order is a policy's place in the ordered SPD: priority, then insertion.
type order struct {
	prio uint32
	seq  uint64
}

var maxOrder = order{math.MaxUint32, math.MaxUint64}

func (a order) less(b order) bool {
	return a.prio < b.prio || a.prio == b.prio && a.seq < b.seq
}

// rule is a policy compiled for one direction: what is left to check once
// the addresses matched, and what to return.
type rule struct {
	ord    order
	pol    *Policy
	ref    uint64
	sp, dp PortRange // matched against Flow.SrcPort and Flow.DstPort
	proto  uint8
	action Action
}

func (r *rule) matches(proto uint8, sport, dport uint16, opaque bool) bool {
	return (r.proto == 0 || r.proto == proto) &&
		r.sp.matches(sport, opaque) && r.dp.matches(dport, opaque)
}

// rrule is a rule of the residue: a policy whose prefix expansion is too big
// for the tuple space, matched by scanning its address ranges.
type rrule struct {
	rule
	src, dst []r128
}

// insertRule returns rs with r in its place by order: a new slice, unless
// inPlace allows rs's array to be written to.
func insertRule[R interface{ rule | rrule }](rs []R, r R, ord func(*R) order, inPlace bool) []R {
	o := ord(&r)
	i := len(rs)
	for i > 0 && o.less(ord(&rs[i-1])) {
		i--
	}
	if inPlace {
		return slices.Insert(rs, i, r)
	}
	out := make([]R, len(rs)+1)
	copy(out, rs[:i])
	out[i] = r
	copy(out[i+1:], rs[i:])
	return out
}

// removeRule returns a new slice: rs without the rule of pol, and whether
// it was there.
func removeRule[R interface{ rule | rrule }](rs []R, pol *Policy, get func(*R) *Policy) ([]R, bool) {
	for i := range rs {
		if get(&rs[i]) == pol {
			out := make([]R, 0, len(rs)-1)
			out = append(out, rs[:i]...)
			return append(out, rs[i+1:]...), true
		}
	}
	return rs, false
}

func rruleOrder(r *rrule) order { return r.ord }
func rrulePol(r *rrule) *Policy { return r.pol }
func ruleOrder(r *rule) order   { return r.ord }
func rulePol(r *rule) *Policy   { return r.pol }

type key struct{ s, d u128 }

// slot is a hash table entry: a key and its bucket, the rules for the key in
// order, the first one inline. first.pol == nil marks an empty slot.
type slot struct {
	h     uint64
	k     key
	first rule
	rest  []rule // never written to once published
}

func (s *slot) used() bool { return s.first.pol != nil }

// insert adds r to the bucket in its place, writing to the array of rest
// only if inPlace.
func (s *slot) insert(r rule, inPlace bool) {
	if r.ord.less(s.first.ord) {
		if inPlace {
			s.rest = slices.Insert(s.rest, 0, s.first)
			s.first = r
			return
		}
		rest := make([]rule, len(s.rest)+1)
		rest[0] = s.first
		copy(rest[1:], s.rest)
		s.first, s.rest = r, rest
		return
	}
	s.rest = insertRule(s.rest, r, ruleOrder, inPlace)
}

// remove takes the rule of pol out of the bucket and reports whether it was
// there; the bucket may become empty (an unused slot).
func (s *slot) remove(pol *Policy) bool {
	if s.first.pol == pol {
		if len(s.rest) == 0 {
			s.first = rule{}
		} else {
			s.first, s.rest = s.rest[0], s.rest[1:]
		}
	} else {
		var ok bool
		if s.rest, ok = removeRule(s.rest, pol, rulePol); !ok {
			return false
		}
	}
	if len(s.rest) == 0 {
		s.rest = nil
	}
	return true
}

// shard is an open-addressing hash table with linear probing, at most half
// full. A byte of each key's hash, kept apart from the slots, lets a probe
// for an absent key touch only that small array, which stays in cache.
type shard struct {
	gen   uint64
	tags  []uint8 // tagOf(slot's hash); 0 for an empty slot
	slots []slot  // as many as tags, a power of two
	n     int
	min   order // best rule in the shard; maxOrder if empty
	dirty bool  // min must be recomputed
}

func tagOf(h uint64) uint8 { return uint8(h>>32) | 1 }

const minShardSlots = 8

func newShard(gen uint64, n int) *shard {
	size := minShardSlots
	for size < 2*n+2 {
		size *= 2
	}
	return &shard{gen: gen, tags: make([]uint8, size), slots: make([]slot, size), min: maxOrder}
}

// get returns the slot of k, or nil.
func (sh *shard) get(k *key, h uint64) *slot {
	m := uint64(len(sh.tags) - 1)
	tag := tagOf(h)
	for i := h & m; ; i = (i + 1) & m {
		switch sh.tags[i] {
		case 0:
			return nil
		case tag:
			if s := &sh.slots[i]; s.h == h && s.k == *k {
				return s
			}
		}
	}
}

// put stores a new key with its bucket; the shard must be owned and the key
// absent.
func (sh *shard) put(s *slot) {
	if 2*(sh.n+1) > len(sh.slots) {
		old := sh.slots
		sh.tags = make([]uint8, 2*len(old))
		sh.slots = make([]slot, 2*len(old))
		sh.n = 0
		for i := range old {
			if old[i].used() {
				sh.put(&old[i])
			}
		}
	}
	m := uint64(len(sh.slots) - 1)
	i := s.h & m
	for sh.tags[i] != 0 {
		i = (i + 1) & m
	}
	sh.tags[i] = tagOf(s.h)
	sh.slots[i] = *s
	sh.n++
	if s.first.ord.less(sh.min) {
		sh.min = s.first.ord
	}
}

// del empties slot s by backward shift; the shard must be owned.
func (sh *shard) del(s *slot) {
	m := len(sh.slots) - 1
	i := int(s.h) & m
	for &sh.slots[i] != s {
		i = (i + 1) & m
	}
	j := i
	for {
		j = (j + 1) & m
		if sh.tags[j] == 0 {
			break
		}
		home := int(sh.slots[j].h) & m
		// The entry at j may move to i unless its home lies cyclically in (i, j].
		if i <= j {
			if i < home && home <= j {
				continue
			}
		} else if i < home || home <= j {
			continue
		}
		sh.tags[i], sh.slots[i] = sh.tags[j], sh.slots[j]
		i = j
	}
	sh.tags[i], sh.slots[i] = 0, slot{}
	sh.n--
}

func (sh *shard) clone(gen uint64) *shard {
	if 8*sh.n >= len(sh.slots) || len(sh.slots) == minShardSlots {
		c := *sh
		c.gen = gen
		c.tags = append([]uint8(nil), sh.tags...)
		c.slots = append([]slot(nil), sh.slots...)
		return &c
	}
	c := newShard(gen, sh.n+1) // shrink
	for i := range sh.slots {
		if s := &sh.slots[i]; s.used() {
			c.put(s)
		}
	}
	c.min, c.dirty = sh.min, sh.dirty
	return c
}

func (sh *shard) recomputeMin() {
	sh.min = maxOrder
	for i := range sh.slots {
		if s := &sh.slots[i]; s.used() && s.first.ord.less(sh.min) {
			sh.min = s.first.ord
		}
	}
	sh.dirty = false
}

// Shards are split when they average more than maxShardLoad keys, up to
// maxShardBits bits of shard index.
const (
	maxShardLoad = 128
	maxShardBits = 16
)

// tuple holds the rules for one pair of prefix lengths, or the residue.
type tuple struct {
	gen        uint64
	sm, dm     u128 // source and destination masks
	slen, dlen uint8
	residue    bool
	dirty      bool  // min must be recomputed
	shift      uint8 // shard index is h >> shift (64 for a single shard)
	min        order // best rule in the tuple; maxOrder if empty
	n          int   // keys
	shards     []*shard
	rrules     []rrule // the residue's rules, in order
}

func (t *tuple) empty() bool {
	if t.residue {
		return len(t.rrules) == 0
	}
	return t.n == 0
}

func (t *tuple) clone(gen uint64) *tuple {
	c := *t
	c.gen = gen
	c.shards = append([]*shard(nil), t.shards...)
	return &c
}

func (t *tuple) recomputeMin() {
	t.min = maxOrder
	if t.residue {
		if len(t.rrules) > 0 {
			t.min = t.rrules[0].ord
		}
	} else {
		for _, sh := range t.shards {
			if sh.dirty {
				sh.recomputeMin()
			}
			if sh.min.less(t.min) {
				t.min = sh.min
			}
		}
	}
	t.dirty = false
}

// split doubles the number of shards; the tuple must be owned.
func (t *tuple) split(gen uint64) {
	nb := 64 - int(t.shift) + 1
	shards := make([]*shard, 1<<nb)
	for i := range shards {
		shards[i] = newShard(gen, t.n/len(shards))
	}
	shift := uint8(64 - nb)
	for _, sh := range t.shards {
		for i := range sh.slots {
			if s := &sh.slots[i]; s.used() {
				shards[s.h>>shift].put(s)
			}
		}
	}
	t.shards, t.shift = shards, shift
}

// tupleSet is the tuple space of one direction and family.
type tupleSet struct {
	gen    uint64
	tuples []*tuple // by min, ascending
}

// hasher hashes keys with a per-DB random seed.
type hasher [5]uint64

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (s *hasher) hash(k *key) uint64 {
	a := mum(k.s.lo^s[0], k.d.lo^s[1])
	b := mum(k.s.hi^s[2], k.d.hi^s[3])
	return mum(a^s[4], b^0x9e3779b97f4a7c15)
}
