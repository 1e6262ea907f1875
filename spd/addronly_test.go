package spd

import (
	"math/rand/v2"
	"testing"
)

// refAddrOnly is AddrOnly from the policy list: no policy of dir that
// selects addresses of the family names a protocol or ports.
func refAddrOnly(db *DB, dir Direction, is4 bool) bool {
	covers := func(l []AddrRange) bool {
		if len(l) == 0 {
			return true
		}
		for _, r := range l {
			if r.From.Is4() == is4 {
				return true
			}
		}
		return false
	}
	for _, p := range db.Policies() {
		s := &p.Selector
		if p.Dir == dir && covers(s.Local) && covers(s.Remote) &&
			(s.Proto != 0 || !s.LocalPorts.IsAny() || !s.RemotePorts.IsAny()) {
			return false
		}
	}
	return true
}

// TestAddrOnly follows random changes, small ones (applied one by one to
// the snapshot) and large ones (rebuilt), and checks AddrOnly against the
// policy list after each.
func TestAddrOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	ranges := []AddrRange{
		MustParseAddrRange("10.0.0.0/8"), MustParseAddrRange("192.0.2.1"),
		MustParseAddrRange("2001:db8::/32"), MustParseAddrRange("2001:db8::1"),
	}
	randPolicy := func(id uint64) Policy {
		p := Policy{ID: id, Dir: Direction(rng.IntN(2)), Priority: uint32(rng.IntN(4)), Action: Action(rng.IntN(3))}
		if p.Action == Protect {
			p.Ref = 1
		}
		if rng.IntN(3) > 0 {
			p.Selector.Local = []AddrRange{ranges[rng.IntN(len(ranges))]}
		}
		if rng.IntN(3) > 0 {
			p.Selector.Remote = []AddrRange{ranges[rng.IntN(len(ranges))]}
		}
		switch rng.IntN(6) {
		case 0:
			p.Selector.Proto = 6
		case 1:
			p.Selector.Proto, p.Selector.RemotePorts = 17, Port(53)
		case 2:
			p.Selector.Proto, p.Selector.LocalPorts = 6, Ports(1000, 2000)
		}
		return p
	}
	db := New(Discard)
	var ids []uint64
	next := uint64(1)
	seen := map[bool]int{}
	for step := range 400 {
		var b Batch
		ops := 1
		if step%25 == 0 {
			ops = 20 // large enough to rebuild
		}
		for range ops {
			k := rng.IntN(3)
			if len(ids) > 16 {
				k = 0 // keep the list short: AddrOnly is true now and then
			}
			switch {
			case k == 0 && len(ids) > 0:
				i := rng.IntN(len(ids))
				b.Remove(ids[i])
				ids = append(ids[:i], ids[i+1:]...)
			case k == 1 && len(ids) > 0:
				b.Replace(randPolicy(ids[rng.IntN(len(ids))]))
			default:
				b.Add(randPolicy(next))
				ids = append(ids, next)
				next++
			}
		}
		if err := db.Apply(&b); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		s := db.Snapshot()
		for dir := range Direction(2) {
			for _, is4 := range []bool{true, false} {
				got, want := s.AddrOnly(dir, is4), refAddrOnly(db, dir, is4)
				if got != want {
					t.Fatalf("step %d: AddrOnly(%v, v4 %v) = %v, want %v", step, dir, is4, got, want)
				}
				seen[got]++
			}
		}
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("AddrOnly results %v: both answers must occur", seen)
	}
	t.Logf("AddrOnly results %v", seen)
}
