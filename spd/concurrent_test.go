package spd

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
)

// TestConcurrent runs writers that replace, swap and churn policies while
// readers look up. Under -race it also checks that lookups share nothing
// unsynchronised with writers. Readers check that
//   - a policy replaced in place is always found, with a Ref that never goes back;
//   - a policy swapped for another in one batch is never missing;
//   - a snapshot answers the same way however often it is asked.
func TestConcurrent(t *testing.T) {
	db := New(Discard)
	g := &gen{b: seq(1 << 20)}
	var b Batch
	for id := uint64(1000); id < 3000; id++ {
		p := g.policy(id)
		p.Priority += 10
		b.Add(p)
	}
	if err := db.Apply(&b); err != nil {
		t.Fatal(err)
	}
	selA := Selector{Local: pfxList("10.0.0.1"), Remote: pfxList("10.0.1.0/24")}
	selB := Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("10.0.1.2")}
	fA := flow("10.0.0.1", "10.0.1.1", tcp, 1, 2)
	fB := flow("10.0.0.2", "10.0.1.2", udp, 1, 2)
	mustAdd(t, db,
		Policy{ID: 1, Priority: 1, Selector: selA, Action: Protect, Ref: 1},
		Policy{ID: 2, Priority: 1, Selector: selB, Action: Protect, Ref: 2},
	)

	updates := 2000
	if testing.Short() {
		updates = 200
	}
	var done atomic.Bool
	var writers, readers sync.WaitGroup
	writers.Add(3)
	go func() { // replace in place
		defer writers.Done()
		for ref := uint64(2); ref < uint64(updates); ref++ {
			if err := db.Replace(Policy{ID: 1, Priority: 1, Selector: selA, Action: Protect, Ref: ref}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // make before break, atomically
		defer writers.Done()
		cur := uint64(2)
		for i := range updates {
			next := cur ^ 1<<40
			var b Batch
			b.Remove(cur)
			b.Add(Policy{ID: next, Priority: uint32(i % 3), Selector: selB, Action: Protect, Ref: next})
			if err := db.Apply(&b); err != nil {
				t.Error(err)
				return
			}
			cur = next
		}
	}()
	go func() { // churn below
		defer writers.Done()
		r := rand.New(rand.NewPCG(3, 4))
		next := uint64(5000)
		for range updates {
			var b Batch
			for range 1 + r.IntN(8) {
				if r.IntN(2) == 0 {
					b.Remove(1000 + r.Uint64N(2000))
				} else {
					p := g.policy(next)
					p.Priority += 10
					next++
					b.Add(p)
				}
			}
			_ = db.Apply(&b) // may fail on a removed ID: then nothing changed
		}
	}()
	for i := range 8 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := rand.New(rand.NewPCG(uint64(i), 9))
			var lastRef uint64
			flows := make([]packet.Flow, 64)
			for j := range flows {
				flows[j] = packet.Flow{Src: netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(2)), byte(r.IntN(32))}), Dst: netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(2)), byte(r.IntN(32))}), Proto: tcp}
			}
			for n := 0; !done.Load() || n < 1000; n++ {
				s := db.Snapshot()
				a := s.Lookup(Outbound, fA)
				if a.Action != Protect || a.Policy == nil || a.Policy.ID != 1 || a.Ref < lastRef {
					t.Errorf("replaced policy: %+v after ref %d", a, lastRef)
					return
				}
				lastRef = a.Ref
				d := s.Lookup(Outbound, fB)
				if d.Action != Protect || d.Policy == nil || d.Ref != d.Policy.ID || d.Ref&^(1<<40) != 2 {
					t.Errorf("swapped policy: %+v", d)
					return
				}
				f := &flows[n%len(flows)]
				x := s.Lookup(Direction(n&1), f)
				if y := s.Lookup(Direction(n&1), f); x != y {
					t.Errorf("snapshot answered %+v then %+v", x, y)
					return
				}
				_ = db.Lookup(Inbound, f)
			}
		}()
	}
	writers.Wait()
	done.Store(true)
	readers.Wait()
	checkInvariants(t, db.Snapshot())
	compare(t, db, flowsFor(g, db.Policies(), 200))
}
