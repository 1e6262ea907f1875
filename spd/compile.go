package spd

import "slices"

// A policy whose address lists expand to more prefix pairs than
// maxExpansion, or to more pairs of prefix lengths than maxPolicyTuples, goes
// to the residue instead of the tuple space: it would cost too much memory,
// or too many tuples for every lookup to probe. Prefixes and ranges that
// are prefixes, as IKE and configurations produce, stay far below both.
const (
	maxExpansion    = 4096
	maxPolicyTuples = 16
)

// draft is a snapshot under construction. It owns, and changes in place, the
// nodes of its generation; it copies any other node before changing it.
type draft struct {
	fresh   bool // built from nothing: every node, and every array, is owned
	gen     uint64
	s       *Snapshot
	touched [2][2]bool
	// scratch space for apply
	sr, dr []r128
	sp, dp []pfx
}

// newDraft starts the successor of base, empty if fresh.
func newDraft(base *Snapshot, fresh bool) *draft {
	s := &Snapshot{gen: base.gen + 1, def: base.def, h: base.h, sets: base.sets, ported: base.ported}
	d := &draft{gen: s.gen, s: s, fresh: fresh}
	if fresh {
		s.ported = [2][2]int{}
		for dir := range s.sets {
			for fam := range s.sets[dir] {
				s.sets[dir][fam] = &tupleSet{gen: d.gen}
				d.touched[dir][fam] = true
			}
		}
	}
	return d
}

func (d *draft) set(dir Direction, fam int) *tupleSet {
	ts := d.s.sets[dir][fam]
	if ts.gen != d.gen {
		ts = &tupleSet{gen: d.gen, tuples: slices.Clone(ts.tuples)}
		d.s.sets[dir][fam] = ts
	}
	d.touched[dir][fam] = true
	return ts
}

// tuple returns the owned tuple for the prefix lengths, or the residue;
// absent, it creates it if create is set and returns nil otherwise.
func (d *draft) tuple(ts *tupleSet, fam int, slen, dlen uint8, residue, create bool) *tuple {
	for i, t := range ts.tuples {
		if t.residue == residue && (residue || t.slen == slen && t.dlen == dlen) {
			if t.gen != d.gen {
				t = t.clone(d.gen)
				ts.tuples[i] = t
			}
			return t
		}
	}
	if !create {
		return nil
	}
	t := &tuple{gen: d.gen, residue: residue, shift: 64, min: maxOrder}
	if !residue {
		t.slen, t.dlen = slen, dlen
		t.sm, t.dm = prefixMask(fam, uint(slen)), prefixMask(fam, uint(dlen))
		t.shards = []*shard{newShard(d.gen, 0)}
	}
	ts.tuples = append(ts.tuples, t)
	return t
}

// compileRule returns what a lookup checks and returns for e once the
// addresses matched.
func compileRule(e *entry) rule {
	p := &e.p
	r := rule{ord: order{p.Priority, e.seq}, pol: p, action: p.Action, proto: p.Selector.Proto}
	if p.Action == Protect {
		r.ref = p.Ref
	}
	switch {
	case isICMP(p.Selector.Proto):
		r.sp, r.dp = p.Selector.ICMPType, p.Selector.ICMPCode
	case p.Dir == Outbound:
		r.sp, r.dp = p.Selector.LocalPorts, p.Selector.RemotePorts
	default:
		r.sp, r.dp = p.Selector.RemotePorts, p.Selector.LocalPorts
	}
	return r
}

// apply installs (add) or uninstalls e.
func (d *draft) apply(e *entry, add bool) {
	p := &e.p
	r := compileRule(e)
	src, dst := p.Selector.Local, p.Selector.Remote
	if p.Dir == Inbound {
		src, dst = dst, src
	}
	for fam := range 2 {
		d.sr, d.dr = familyRanges(d.sr[:0], src, fam), familyRanges(d.dr[:0], dst, fam)
		sr, dr := d.sr, d.dr
		if len(sr) == 0 || len(dr) == 0 {
			continue // the policy selects nothing of this family
		}
		ts := d.set(p.Dir, fam)
		if r.proto != 0 || !r.sp.IsAny() || !r.dp.IsAny() {
			if add {
				d.s.ported[p.Dir][fam]++
			} else {
				d.s.ported[p.Dir][fam]--
			}
		}
		d.sp, d.dp = prefixesOf(d.sp[:0], sr, fam), prefixesOf(d.dp[:0], dr, fam)
		sp, dp := d.sp, d.dp
		if tooBig(sp, dp) {
			t := d.tuple(ts, fam, 0, 0, true, add)
			switch {
			case add:
				t.rrules = insertRule(t.rrules, rrule{rule: r, src: slices.Clone(sr), dst: slices.Clone(dr)}, rruleOrder, d.fresh)
				if r.ord.less(t.min) {
					t.min = r.ord
				}
			case t != nil:
				t.rrules, _ = removeRule(t.rrules, p, rrulePol)
				t.dirty = true
			}
			continue
		}
		var t *tuple
		for _, a := range sp {
			for _, b := range dp {
				if t == nil || t.slen != a.bits || t.dlen != b.bits {
					t = d.tuple(ts, fam, a.bits, b.bits, false, add)
					if t == nil {
						continue
					}
				}
				k := key{a.a, b.a}
				if add {
					d.addKey(t, k, r)
				} else {
					d.delKey(t, k, p, r.ord)
				}
			}
		}
	}
}

func tooBig(sp, dp []pfx) bool {
	if len(sp)*len(dp) > maxExpansion {
		return true
	}
	lens := func(ps []pfx) int {
		var seen [129]bool
		n := 0
		for _, p := range ps {
			if !seen[p.bits] {
				seen[p.bits] = true
				n++
			}
		}
		return n
	}
	return lens(sp)*lens(dp) > maxPolicyTuples
}

// ownShard returns the owned shard of t for hash h.
func (d *draft) ownShard(t *tuple, h uint64) *shard {
	i := h >> t.shift
	sh := t.shards[i]
	if sh.gen != d.gen {
		sh = sh.clone(d.gen)
		t.shards[i] = sh
	}
	return sh
}

func (d *draft) addKey(t *tuple, k key, r rule) {
	h := d.s.h.hash(&k)
	sh := d.ownShard(t, h)
	if s := sh.get(&k, h); s != nil {
		s.insert(r, d.fresh)
		if r.ord.less(sh.min) {
			sh.min = r.ord
		}
	} else {
		sh.put(&slot{h: h, k: k, first: r})
		t.n++
	}
	if r.ord.less(t.min) {
		t.min = r.ord
	}
	if t.n > maxShardLoad*len(t.shards) && 64-int(t.shift) < maxShardBits {
		t.split(d.gen)
	}
}

func (d *draft) delKey(t *tuple, k key, pol *Policy, o order) {
	h := d.s.h.hash(&k)
	if t.shards[h>>t.shift].get(&k, h) == nil {
		return
	}
	sh := d.ownShard(t, h)
	s := sh.get(&k, h)
	if !s.remove(pol) {
		return
	}
	if !s.used() {
		sh.del(s)
		t.n--
	}
	if !sh.min.less(o) {
		sh.dirty, t.dirty = true, true
	}
}

// finish settles the tuples' minimums, drops empty tuples, sorts the touched
// tuple sets and returns the snapshot.
func (d *draft) finish() *Snapshot {
	for dir := range d.touched {
		for fam := range d.touched[dir] {
			if !d.touched[dir][fam] {
				continue
			}
			ts := d.s.sets[dir][fam]
			out := ts.tuples[:0]
			for _, t := range ts.tuples {
				if t.gen == d.gen && t.dirty {
					t.recomputeMin()
				}
				if !t.empty() {
					out = append(out, t)
				}
			}
			clear(ts.tuples[len(out):])
			ts.tuples = out
			slices.SortStableFunc(out, func(a, b *tuple) int {
				switch {
				case a.min.less(b.min):
					return -1
				case b.min.less(a.min):
					return 1
				}
				return 0
			})
		}
	}
	return d.s
}
