package spd

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
)

// result is a Decision reduced to what the reference scan can reproduce.
type result struct {
	Action Action
	Ref    uint64
	ID     uint64
}

func (r result) String() string { return fmt.Sprintf("%v ref %d policy %d", r.Action, r.Ref, r.ID) }

func resultOf(d Decision) result {
	r := result{Action: d.Action, Ref: d.Ref}
	if d.Policy != nil {
		r.ID = d.Policy.ID
	}
	return r
}

// reference is the specification: RFC 4301's ordered SPD as a linear scan
// of the policies in order, with the exported Selector matchers.
type reference struct {
	def Action
	ps  []Policy // as Policies returns them: outbound, then inbound, each in order
}

func refOf(db *DB) reference { return reference{def: db.Default(), ps: db.Policies()} }

func (r reference) lookup(dir Direction, f *packet.Flow) result {
	if !(f.Src.Is4() && f.Dst.Is4() || f.Src.Is6() && f.Dst.Is6()) {
		return result{Action: Discard}
	}
	for i := range r.ps {
		p := &r.ps[i]
		if p.Dir != dir {
			continue
		}
		if refMatch(&p.Selector, dir, f) {
			res := result{Action: p.Action, ID: p.ID}
			if p.Action == Protect {
				res.Ref = p.Ref
			}
			return res
		}
	}
	return result{Action: r.def}
}

// refMatch is RFC 4301 selector matching written plainly, with netip's
// comparisons, independently of the package's own code.
func refMatch(s *Selector, dir Direction, f *packet.Flow) bool {
	local, remote, lport, rport := f.Src, f.Dst, f.SrcPort, f.DstPort
	if dir == Inbound {
		local, remote, lport, rport = f.Dst, f.Src, f.DstPort, f.SrcPort
	}
	in := func(l []AddrRange, a netip.Addr) bool {
		if len(l) == 0 {
			return true
		}
		for _, r := range l {
			if r.Contains(a) {
				return true
			}
		}
		return false
	}
	port := func(r PortRange, v uint16) bool {
		lo, hi := r.Bounds()
		switch {
		case r.IsAny():
			return true
		case r.IsOpaque():
			return f.Opaque
		}
		return !f.Opaque && lo <= v && v <= hi
	}
	if !(f.Src.Is4() && f.Dst.Is4() || f.Src.Is6() && f.Dst.Is6()) {
		return false
	}
	if s.Proto != 0 && s.Proto != f.Proto || !in(s.Local, local) || !in(s.Remote, remote) {
		return false
	}
	if s.Proto == 1 || s.Proto == 58 {
		return port(s.ICMPType, f.SrcPort) && port(s.ICMPCode, f.DstPort)
	}
	return port(s.LocalPorts, lport) && port(s.RemotePorts, rport)
}

// checkInvariants verifies the compiled structure of s against itself.
func checkInvariants(t testing.TB, s *Snapshot) {
	t.Helper()
	for dir := range s.sets {
		for fam := range s.sets[dir] {
			ts := s.sets[dir][fam]
			for i, tp := range ts.tuples {
				where := fmt.Sprintf("dir %d fam %d tuple %d (/%d,/%d residue %v)", dir, fam, i, tp.slen, tp.dlen, tp.residue)
				if i > 0 && tp.min.less(ts.tuples[i-1].min) {
					t.Fatalf("%s: tuples not sorted by min", where)
				}
				if tp.dirty {
					t.Fatalf("%s: dirty tuple published", where)
				}
				if tp.empty() {
					t.Fatalf("%s: empty tuple published", where)
				}
				min := maxOrder
				if tp.residue {
					for j := range tp.rrules {
						if j > 0 && !tp.rrules[j-1].ord.less(tp.rrules[j].ord) {
							t.Fatalf("%s: residue out of order", where)
						}
					}
					min = tp.rrules[0].ord
				} else {
					n := 0
					if len(tp.shards) != 1<<(64-int(tp.shift)) {
						t.Fatalf("%s: %d shards, shift %d", where, len(tp.shards), tp.shift)
					}
					for si, sh := range tp.shards {
						if sh.dirty {
							t.Fatalf("%s: dirty shard", where)
						}
						smin, sn := maxOrder, 0
						for j := range sh.slots {
							sl := &sh.slots[j]
							if len(sh.tags) != len(sh.slots) || (sh.tags[j] != 0) != sl.used() || sl.used() && sh.tags[j] != tagOf(sl.h) {
								t.Fatalf("%s: bad tag", where)
							}
							if !sl.used() {
								if sl.rest != nil || sl.h != 0 || sl.k != (key{}) {
									t.Fatalf("%s: unclean empty slot", where)
								}
								continue
							}
							sn++
							if sl.h != s.h.hash(&sl.k) || int(sl.h>>tp.shift) != si {
								t.Fatalf("%s: key in wrong place", where)
							}
							if sl.k.s.and(tp.sm) != sl.k.s || sl.k.d.and(tp.dm) != sl.k.d {
								t.Fatalf("%s: unmasked key", where)
							}
							k := sl.k
							if got := sh.get(&k, sl.h); got != sl {
								t.Fatalf("%s: key not reachable", where)
							}
							if sl.rest != nil && len(sl.rest) == 0 {
								t.Fatalf("%s: empty rest", where)
							}
							prev := sl.first.ord
							for x := range sl.rest {
								if !prev.less(sl.rest[x].ord) || sl.rest[x].pol == nil {
									t.Fatalf("%s: bucket out of order", where)
								}
								prev = sl.rest[x].ord
							}
							if sl.first.ord.less(smin) {
								smin = sl.first.ord
							}
						}
						if sn != sh.n || smin != sh.min || 2*sh.n > len(sh.slots) {
							t.Fatalf("%s shard %d: n %d/%d min %v/%v slots %d", where, si, sh.n, sn, sh.min, smin, len(sh.slots))
						}
						n += sn
						if smin.less(min) {
							min = smin
						}
					}
					if n != tp.n {
						t.Fatalf("%s: n %d, counted %d", where, tp.n, n)
					}
				}
				if min != tp.min {
					t.Fatalf("%s: min %v, actual %v", where, tp.min, min)
				}
			}
		}
	}
}

// gen turns bytes into policies and flows. Addresses and ports come mostly
// from small universes so that policies overlap and flows hit them.
type gen struct {
	b []byte
	i int
}

func (g *gen) u8() byte {
	if g.i >= len(g.b) {
		return 0
	}
	v := g.b[g.i]
	g.i++
	return v
}

func (g *gen) u16() uint16 { return uint16(g.u8())<<8 | uint16(g.u8()) }
func (g *gen) n(k int) int { return int(g.u8()) % k }
func (g *gen) more() bool  { return g.i < len(g.b) }

func (g *gen) addr(fam int) netip.Addr {
	if fam == famV4 {
		switch g.n(8) {
		case 0:
			return netip.AddrFrom4([4]byte{g.u8(), g.u8(), g.u8(), g.u8()})
		case 1:
			return netip.AddrFrom4([4]byte{10, g.u8(), g.u8(), g.u8()})
		default:
			return netip.AddrFrom4([4]byte{10, 0, g.u8() & 1, g.u8() & 0x1f})
		}
	}
	var b [16]byte
	switch g.n(8) {
	case 0:
		for i := range b {
			b[i] = g.u8()
		}
	case 1: // IPv4-mapped
		b[10], b[11] = 0xff, 0xff
		b[12], b[13], b[14], b[15] = 10, 0, g.u8()&1, g.u8()&0x1f
	default:
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		b[13] = g.u8() & 1
		b[15] = g.u8() & 0x1f
	}
	return netip.AddrFrom16(b)
}

func (g *gen) addrRange(fam int) AddrRange {
	a := g.addr(fam)
	switch g.n(4) {
	case 0: // single host
		return HostRange(a)
	case 1: // arbitrary range
		b := g.addr(fam)
		if b.Less(a) {
			a, b = b, a
		}
		return AddrRange{From: a, To: b}
	default:
		var bits int
		if fam == famV4 {
			bits = []int{0, 8, 16, 23, 24, 27, 28, 29, 30, 31, 32, 32, 32, 24, 16, 28}[g.n(16)]
		} else {
			bits = []int{0, 32, 64, 96, 112, 120, 123, 124, 125, 126, 127, 128, 128, 128, 120, 104}[g.n(16)]
		}
		return PrefixRange(netip.PrefixFrom(a, bits))
	}
}

func (g *gen) addrList(fam int) []AddrRange {
	k := g.n(6)
	if k == 0 {
		return nil // ANY
	}
	if k > 3 {
		k = 1
	}
	l := make([]AddrRange, k)
	for i := range l {
		f := fam
		if g.n(8) == 0 {
			f = 1 - fam
		}
		l[i] = g.addrRange(f)
	}
	return l
}

var genPorts = []uint16{0, 1, 2, 3, 4, 5, 6, 7, 500, 4500, 65535}

func (g *gen) port() uint16 {
	if g.n(8) == 0 {
		return g.u16()
	}
	return genPorts[g.n(len(genPorts))]
}

func (g *gen) portRange(max uint16) PortRange {
	switch g.n(6) {
	case 0, 1:
		return AnyPort()
	case 2:
		return OpaquePort()
	case 3:
		return Port(min(g.port(), max))
	default:
		a, b := min(g.port(), max), min(g.port(), max)
		if a > b {
			a, b = b, a
		}
		return Ports(a, b)
	}
}

var genProtos = []uint8{0, 0, 6, 17, 1, 58, 50}

func (g *gen) selector() Selector {
	fam := g.n(2)
	s := Selector{Local: g.addrList(fam), Remote: g.addrList(fam), Proto: genProtos[g.n(len(genProtos))]}
	switch {
	case isICMP(s.Proto):
		s.ICMPType, s.ICMPCode = g.portRange(255), g.portRange(255)
	case s.Proto != 0:
		s.LocalPorts, s.RemotePorts = g.portRange(65535), g.portRange(65535)
	}
	return s
}

func (g *gen) policy(id uint64) Policy {
	return Policy{
		ID:       id,
		Dir:      Direction(g.n(2)),
		Priority: uint32(g.n(4)),
		Selector: g.selector(),
		Action:   Action(g.n(3)),
		Ref:      uint64(g.n(4)),
	}
}

func (g *gen) flow() packet.Flow {
	fam := g.n(2)
	f := packet.Flow{Src: g.addr(fam), Dst: g.addr(fam), Proto: genProtos[g.n(len(genProtos))]}
	if f.Proto != 0 && f.Proto != 50 {
		f.SrcPort, f.DstPort = g.port(), g.port()
		if isICMP(f.Proto) {
			f.SrcPort, f.DstPort = f.SrcPort&0xff, f.DstPort&0xff
		}
	}
	if g.n(8) == 0 {
		f.Opaque, f.SrcPort, f.DstPort = true, 0, 0
	}
	if g.n(64) == 0 { // a mixed-family flow: always Discard
		f.Dst = g.addr(1 - fam)
	}
	return f
}

func mustAdd(t testing.TB, db *DB, ps ...Policy) {
	t.Helper()
	for _, p := range ps {
		if err := db.Add(p); err != nil {
			t.Fatal(err)
		}
	}
}

func pfxList(ss ...string) []AddrRange {
	l := make([]AddrRange, len(ss))
	for i, s := range ss {
		l[i] = MustParseAddrRange(s)
	}
	return l
}

func flow(src, dst string, proto uint8, sport, dport uint16) *packet.Flow {
	return &packet.Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, SrcPort: sport, DstPort: dport}
}
