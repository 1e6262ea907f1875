package spd

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
)

// compare checks db's compiled lookups against the reference scan for flows,
// both directions, and the structure's invariants.
func compare(t testing.TB, db *DB, flows []packet.Flow) {
	t.Helper()
	checkInvariants(t, db.Snapshot())
	ref := refOf(db)
	for i := range flows {
		f := &flows[i]
		if i < 64 && len(ref.ps) <= 5000 {
			for j := range ref.ps {
				s := &ref.ps[j].Selector
				if s.MatchOutbound(f) != refMatch(s, Outbound, f) || s.MatchInbound(f) != refMatch(s, Inbound, f) {
					t.Fatalf("Selector %v and flow %+v: MatchOutbound %v, MatchInbound %v, reference disagrees", s, *f, s.MatchOutbound(f), s.MatchInbound(f))
				}
			}
		}
		for dir := Outbound; dir <= Inbound; dir++ {
			want := ref.lookup(dir, f)
			if got := resultOf(db.Lookup(dir, f)); got != want {
				t.Fatalf("%v %+v: compiled %v, reference %v\npolicies:\n%s", dir, *f, got, want, dump(ref.ps))
			}
		}
	}
}

func dump(ps []Policy) string {
	s := ""
	for _, p := range ps {
		s += "  " + p.String() + "\n"
	}
	return s
}

// flowsFor returns random flows plus, for each policy, flows built from its
// own addresses and ports, so that edges of ranges are hit.
func flowsFor(g *gen, ps []Policy, n int) []packet.Flow {
	var fs []packet.Flow
	for range n {
		fs = append(fs, g.flow())
	}
	for _, p := range ps {
		s := &p.Selector
		pick := func(l []AddrRange, other netip.Addr) netip.Addr {
			if len(l) == 0 {
				return other
			}
			r := l[g.n(len(l))]
			if g.n(2) == 0 {
				return r.From
			}
			return r.To
		}
		f := g.flow()
		f.Src, f.Dst = pick(s.Local, f.Src), pick(s.Remote, f.Dst)
		if p.Dir == Inbound {
			f.Src, f.Dst = f.Dst, f.Src
		}
		if s.Proto != 0 {
			f.Proto = s.Proto
		}
		if lo, hi := s.LocalPorts.Bounds(); g.n(2) == 0 && lo <= hi {
			f.SrcPort = []uint16{lo, hi, lo - 1, hi + 1}[g.n(4)]
		}
		fs = append(fs, f)
	}
	return fs
}

// runOps installs and changes policies as g dictates and compares after
// every step.
func runOps(t testing.TB, g *gen, steps, nflows int) {
	db := New(Action(g.n(3)))
	var ids []uint64
	next := uint64(1)
	var old *Snapshot
	var oldFlows []packet.Flow
	var oldWant []Decision
	for step := 0; step < steps && (step == 0 || g.more()); step++ {
		var b Batch
		nops := 1
		if g.n(4) == 0 {
			nops = 1 + g.n(40)
		}
		if step == 0 {
			nops = g.n(64)
		}
		live := append([]uint64(nil), ids...)
		for range nops {
			switch op := g.n(8); {
			case op < 4 || len(live) == 0:
				b.Add(g.policy(next))
				live = append(live, next)
				next++
			case op < 6:
				i := g.n(len(live))
				b.Remove(live[i])
				live = append(live[:i], live[i+1:]...)
			default:
				b.Replace(g.policy(live[g.n(len(live))]))
			}
		}
		if g.n(32) == 0 {
			b.Remove(1 << 40) // fails: the batch must change nothing
		}
		before := db.Snapshot()
		if err := db.Apply(&b); err != nil {
			if db.Snapshot() != before {
				t.Fatalf("failed Apply (%v) changed the snapshot", err)
			}
		} else {
			ids = live
		}
		if g.n(16) == 0 {
			if err := db.SetDefault(Action(g.n(3))); err != nil {
				t.Fatal(err)
			}
		}
		if db.Len() != len(ids) {
			t.Fatalf("Len %d, want %d", db.Len(), len(ids))
		}
		ps := db.Policies()
		compare(t, db, flowsFor(g, ps, nflows))
		// Snapshots once published never change.
		for i := range oldFlows {
			if got := old.Lookup(Direction(i&1), &oldFlows[i]); got != oldWant[i] {
				t.Fatalf("step %d: old snapshot changed: %+v became %+v", step, oldWant[i], got)
			}
		}
		if g.n(4) == 0 {
			old = db.Snapshot()
			oldFlows = flowsFor(g, ps, 8)
			oldWant = make([]Decision, len(oldFlows))
			for i := range oldFlows {
				oldWant[i] = old.Lookup(Direction(i&1), &oldFlows[i])
			}
		}
	}
}

func TestDifferential(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 5
	}
	for s := range seeds {
		r := rand.New(rand.NewPCG(uint64(s), 1))
		b := make([]byte, 200000)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		runOps(t, &gen{b: b}, 60, 50)
	}
}

// TestDifferentialLarge exercises tuples big enough to be split into shards,
// with small incremental changes on top.
func TestDifferentialLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	db := New(Discard)
	var b Batch
	var ps []Policy
	addr := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	host := func() []AddrRange { return []AddrRange{HostRange(addr())} }
	net24 := func() []AddrRange { return []AddrRange{PrefixRange(netip.PrefixFrom(addr(), 24))} }
	for id := uint64(1); id <= 20000; id++ {
		p := Policy{ID: id, Priority: uint32(r.IntN(3)), Action: Protect, Ref: id}
		switch r.IntN(4) {
		case 0:
			p.Selector = Selector{Local: net24(), Remote: net24()}
		case 1:
			p.Selector = Selector{Local: host(), Remote: net24(), Proto: tcp, RemotePorts: Port(uint16(r.IntN(3)))}
		default:
			p.Selector = Selector{Local: host(), Remote: host()}
		}
		b.Add(p)
		ps = append(ps, p)
	}
	if err := db.Apply(&b); err != nil {
		t.Fatal(err)
	}
	flows := func() []packet.Flow {
		var fs []packet.Flow
		for range 400 {
			p := &ps[r.IntN(len(ps))]
			f := packet.Flow{Src: p.Selector.Local[0].From, Dst: p.Selector.Remote[0].To, Proto: tcp, DstPort: uint16(r.IntN(3))}
			if r.IntN(4) == 0 {
				f.Src = addr()
			}
			fs = append(fs, f)
		}
		return fs
	}
	compare(t, db, flows())
	if maxShards(db.Snapshot()) < 64 {
		t.Fatalf("tuples not split: %d shards at most", maxShards(db.Snapshot()))
	}
	for round := range 12 {
		var b Batch
		for range 1 + r.IntN(20) {
			i := r.IntN(len(ps))
			switch r.IntN(3) {
			case 0:
				p := ps[i]
				p.Priority = uint32(r.IntN(3))
				p.Selector.Local = host()
				b.Replace(p)
				ps[i] = p
			default:
				b.Remove(ps[i].ID)
				p := ps[i]
				p.ID += 1 << 32 * uint64(round+1)
				b.Add(p)
				ps[i] = p
			}
		}
		if err := db.Apply(&b); err != nil {
			t.Fatal(err)
		}
		compare(t, db, flows())
	}
}

func maxShards(s *Snapshot) int {
	n := 0
	for dir := range s.sets {
		for fam := range s.sets[dir] {
			for _, tp := range s.sets[dir][fam].tuples {
				n = max(n, len(tp.shards))
			}
		}
	}
	return n
}

// TestIncrementalSplit grows a tuple one policy at a time past the point
// where its shards split, and shrinks it again.
func TestIncrementalSplit(t *testing.T) {
	db := New(Discard)
	var b Batch
	pol := func(id uint64) Policy {
		a := netip.AddrFrom4([4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)})
		return Policy{ID: id, Priority: uint32(id % 3), Selector: Selector{Local: []AddrRange{HostRange(a)}, Remote: pfxList("192.168.0.1")}, Action: Protect, Ref: id}
	}
	for id := uint64(1); id <= 1000; id++ {
		b.Add(pol(id))
	}
	if err := db.Apply(&b); err != nil {
		t.Fatal(err)
	}
	before := maxShards(db.Snapshot())
	g := &gen{b: seq(1 << 12)}
	var fs []packet.Flow
	for id := uint64(1); id <= 1200; id += 7 {
		fs = append(fs, *flow(pol(id).Selector.Local[0].From.String(), "192.168.0.1", 0, 0, 0))
	}
	for range 100 {
		fs = append(fs, g.flow())
	}
	for id := uint64(1001); id <= 1200; id++ {
		mustAdd(t, db, pol(id))
		if id%20 == 0 {
			compare(t, db, fs)
		}
	}
	if after := maxShards(db.Snapshot()); after <= before {
		t.Fatalf("no split: %d shards before, %d after", before, after)
	}
	for id := uint64(1); id <= 1200; id += 2 {
		if err := db.Remove(id); err != nil {
			t.Fatal(err)
		}
		if id%50 == 1 {
			compare(t, db, fs)
		}
	}
	compare(t, db, fs)
}

// TestResidue covers policies that are too wide to expand into prefixes.
func TestResidue(t *testing.T) {
	db := New(Bypass)
	wide := []AddrRange{
		MustParseAddrRange("10.0.0.1-10.255.255.254"),
		MustParseAddrRange("2001:db8::1-2001:db8:ffff::fffe"),
	}
	wide2 := []AddrRange{
		MustParseAddrRange("11.0.0.3-11.0.200.1"),
		MustParseAddrRange("2001:db9::3-2001:db9::ff:1"),
	}
	mustAdd(t, db,
		Policy{ID: 1, Priority: 2, Selector: Selector{Local: wide, Remote: wide2}, Action: Protect, Ref: 1},
		Policy{ID: 2, Priority: 1, Selector: Selector{Local: pfxList("10.0.0.0/30"), Remote: wide2}, Action: Discard},
		Policy{ID: 3, Priority: 3, Selector: Selector{Local: wide, Remote: wide2, Proto: tcp}, Action: Protect, Ref: 3},
		Policy{ID: 4, Priority: 0, Dir: Inbound, Selector: Selector{Local: wide, Remote: wide2}, Action: Protect, Ref: 4},
	)
	s := db.Snapshot()
	nres := 0
	for dir := range s.sets {
		for fam := range s.sets[dir] {
			for _, tp := range s.sets[dir][fam].tuples {
				if tp.residue {
					nres += len(tp.rrules)
				}
			}
		}
	}
	if nres != 6 {
		t.Fatalf("%d residue rules, want 6", nres)
	}
	g := &gen{b: seq(1 << 14)}
	var fs []packet.Flow
	for _, a := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.4", "10.255.255.254", "10.255.255.255", "11.0.0.2", "11.0.0.3", "11.0.200.1", "11.0.200.2",
		"2001:db8::", "2001:db8::1", "2001:db8:ffff::fffe", "2001:db8:ffff::ffff", "2001:db9::2", "2001:db9::3", "2001:db9::ff:1", "2001:db9::ff:2"} {
		for _, b := range []string{"11.0.0.3", "11.0.100.100", "11.0.200.2", "10.0.0.1", "2001:db9::3", "2001:db9::ff:2", "2001:db8::1"} {
			fs = append(fs, *flow(a, b, tcp, 1, 2), *flow(b, a, udp, 1, 2))
		}
	}
	for range 200 {
		fs = append(fs, g.flow())
	}
	compare(t, db, fs)
	if got := db.Lookup(Outbound, flow("10.0.0.5", "11.0.0.3", udp, 1, 2)); got.Ref != 1 {
		t.Fatalf("residue lookup: %+v", got)
	}
	if err := db.Remove(1); err != nil {
		t.Fatal(err)
	}
	compare(t, db, fs)
	if got := db.Lookup(Outbound, flow("10.0.0.5", "11.0.0.3", tcp, 1, 2)); got.Ref != 3 {
		t.Fatalf("residue lookup: %+v", got)
	}
}

func FuzzLookup(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x02\x10\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"))
	f.Add(seq(64))
	f.Add(seq(512))
	f.Add(seq(4096))
	for i := range 4 {
		b := seq(2048 + i)
		b[0] = byte(i)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		runOps(t, &gen{b: b}, 8, 16)
	})
}
