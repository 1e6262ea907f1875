package spd

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
)

// realistic returns about n policies as a gateway holding many tunnels has
// them: IKE bypasses first, then for each tunnel an outbound and an inbound
// policy, mostly IPv4 host-to-host (/32 to /32) and site-to-site (/24 to
// /24), some host-to-site limited to a TCP port, some IPv6 host pairs.
// It also returns flows: nine in ten inside some tunnel, the rest random.
func realistic(n int) ([]Policy, []packet.Flow) {
	r := rand.New(rand.NewPCG(uint64(n), 42))
	ps := []Policy{
		{ID: 1, Dir: Outbound, Selector: Selector{Proto: udp, LocalPorts: Port(500)}, Action: Bypass},
		{ID: 2, Dir: Inbound, Selector: Selector{Proto: udp, LocalPorts: Port(500)}, Action: Bypass},
		{ID: 3, Dir: Outbound, Selector: Selector{Proto: udp, LocalPorts: Port(4500)}, Action: Bypass},
		{ID: 4, Dir: Inbound, Selector: Selector{Proto: udp, LocalPorts: Port(4500)}, Action: Bypass},
	}
	v4 := func(a, b, c, d int) netip.Addr { return netip.AddrFrom4([4]byte{byte(a), byte(b), byte(c), byte(d)}) }
	type tunnel struct {
		local, remote AddrRange
		sel           Selector
	}
	var tunnels []tunnel
	for i := 0; len(ps) < n; i++ {
		var sel Selector
		prio := uint32(1000)
		switch k := i % 20; {
		case k < 12:
			sel = Selector{Local: []AddrRange{HostRange(v4(10, i>>16, i>>8, i))}, Remote: []AddrRange{HostRange(v4(172, 16+i>>16&15, i>>8, i))}}
		case k < 18:
			sel = Selector{Local: []AddrRange{PrefixRange(netip.PrefixFrom(v4(100, i>>8, i, 0), 24))}, Remote: []AddrRange{PrefixRange(netip.PrefixFrom(v4(198, i>>8, i, 0), 24))}}
			prio = 2000
		case k < 19:
			sel = Selector{Local: []AddrRange{HostRange(v4(10, 128+i>>16&127, i>>8, i))}, Remote: []AddrRange{PrefixRange(netip.PrefixFrom(v4(192, 168, i>>8, 0), 24))}, Proto: tcp, RemotePorts: Port(443)}
			prio = 1500
		default:
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 10: byte(i >> 16), 11: byte(i >> 8), 15: byte(i)})
			b := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 10: byte(i >> 16), 11: byte(i >> 8), 15: byte(i)})
			sel = Selector{Local: []AddrRange{HostRange(a)}, Remote: []AddrRange{HostRange(b)}}
		}
		id := uint64(len(ps) + 1)
		ps = append(ps,
			Policy{ID: id, Dir: Outbound, Priority: prio, Selector: sel, Action: Protect, Ref: id},
			Policy{ID: id + 1, Dir: Inbound, Priority: prio, Selector: sel, Action: Protect, Ref: id},
		)
		tunnels = append(tunnels, tunnel{sel.Local[0], sel.Remote[0], sel})
	}
	pick := func(r *rand.Rand, ar AddrRange) netip.Addr {
		if ar.From == ar.To {
			return ar.From
		}
		b := ar.From.As4()
		b[3] = byte(r.IntN(256))
		return netip.AddrFrom4(b)
	}
	flows := make([]packet.Flow, 8192)
	for i := range flows {
		f := &flows[i]
		f.Proto, f.SrcPort, f.DstPort = tcp, uint16(30000+r.IntN(30000)), 443
		if r.IntN(10) == 0 || len(tunnels) == 0 {
			f.Src, f.Dst = v4(10, r.IntN(256), r.IntN(256), r.IntN(256)), v4(172, 16+r.IntN(16), r.IntN(256), r.IntN(256))
			continue
		}
		tn := &tunnels[r.IntN(len(tunnels))]
		f.Src, f.Dst = pick(r, tn.local), pick(r, tn.remote)
		if i&1 == 1 { // inbound: the other way round
			f.Src, f.Dst, f.SrcPort, f.DstPort = f.Dst, f.Src, f.DstPort, f.SrcPort
		}
	}
	return ps, flows
}

func loadDB(tb testing.TB, ps []Policy) *DB {
	db := New(Discard)
	var b Batch
	for _, p := range ps {
		b.Add(p)
	}
	if err := db.Apply(&b); err != nil {
		tb.Fatal(err)
	}
	return db
}

var sizes = []int{10, 1000, 100000}

func BenchmarkLookup(b *testing.B) {
	for _, n := range sizes {
		ps, flows := realistic(n)
		db := loadDB(b, ps)
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			hits := 0
			for b.Loop() {
				d := db.Lookup(Direction(i&1), &flows[i&(len(flows)-1)])
				if d.Policy != nil {
					hits++
				}
				i++
			}
			b.ReportMetric(float64(hits)/float64(i), "hit/op")
		})
	}
}

// BenchmarkLookupManyLengths is a harder case for the tuple space: 100,000
// site-to-site policies of one priority whose remote prefixes have every
// length from /16 to /32 and local ones /24 or /32, about 34 tuples per
// direction.
func BenchmarkLookupManyLengths(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 5))
	var ps []Policy
	var flows []packet.Flow
	for i := range 100000 {
		llen, rlen := 24+8*(i&1), 16+(i/2)%17
		l := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		rm := netip.AddrFrom4([4]byte{byte(128 + r.IntN(64)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		sel := Selector{Local: []AddrRange{PrefixRange(netip.PrefixFrom(l, llen))}, Remote: []AddrRange{PrefixRange(netip.PrefixFrom(rm, rlen))}}
		ps = append(ps, Policy{ID: uint64(i + 1), Dir: Direction(i & 1), Priority: 100, Selector: sel, Action: Protect, Ref: uint64(i)})
		if i < 8192 {
			f := packet.Flow{Src: sel.Local[0].From, Dst: sel.Remote[0].To, Proto: tcp}
			if i&1 == 1 {
				f.Src, f.Dst = f.Dst, f.Src
			}
			flows = append(flows, f)
		}
	}
	db := loadDB(b, ps)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		db.Lookup(Direction(i&1), &flows[i&(len(flows)-1)])
		i++
	}
}

// BenchmarkLookupLinear is the reference scan, for comparison.
func BenchmarkLookupLinear(b *testing.B) {
	for _, n := range sizes[:2] {
		ps, flows := realistic(n)
		ref := refOf(loadDB(b, ps))
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				ref.lookup(Direction(i&1), &flows[i&(len(flows)-1)])
				i++
			}
		})
	}
}

// BenchmarkBuild installs all policies in one batch, a full build.
func BenchmarkBuild(b *testing.B) {
	for _, n := range sizes {
		ps, _ := realistic(n)
		var bt Batch
		for _, p := range ps {
			bt.Add(p)
		}
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := New(Discard).Apply(&bt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUpdate is one IKE rekey or new tunnel on a loaded DB: a batch
// that removes a tunnel's two policies and installs them again, published
// as a new snapshot (an incremental update).
func BenchmarkUpdate(b *testing.B) {
	for _, n := range sizes {
		ps, _ := realistic(n)
		db := loadDB(b, ps)
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := 4 + 2*(i%((len(ps)-4)/2))
				var bt Batch
				bt.Remove(ps[k].ID)
				bt.Remove(ps[k+1].ID)
				bt.Add(ps[k])
				bt.Add(ps[k+1])
				if err := db.Apply(&bt); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkMatchInbound(b *testing.B) {
	s := Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("192.168.1.0/24"), Proto: tcp}
	f := flow("192.168.1.5", "10.0.0.5", tcp, 443, 40000)
	b.ReportAllocs()
	for b.Loop() {
		if !s.MatchInbound(f) {
			b.Fatal("no match")
		}
	}
}

// TestRealistic checks the benchmark's policy set against the reference.
func TestRealistic(t *testing.T) {
	ps, flows := realistic(3000)
	db := loadDB(t, ps)
	compare(t, db, flows[:500])
	hits := 0
	for i := range flows {
		if db.Lookup(Direction(i&1), &flows[i]).Policy != nil {
			hits++
		}
	}
	if hits < len(flows)*8/10 {
		t.Fatalf("only %d of %d flows hit a policy", hits, len(flows))
	}
}
