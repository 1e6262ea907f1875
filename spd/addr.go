package spd

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
)

// Address families, as indexes into per-family tables.
const (
	famV4 = 0
	famV6 = 1
)

// famWidth is the address width in bits of each family.
var famWidth = [2]uint{32, 128}

// u128 is an address as a number: an IPv4 address in the low 32 bits of lo,
// an IPv6 address (IPv4-mapped ones included) in all 128 bits.
type u128 struct{ hi, lo uint64 }

func u128FromAddr(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr6() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) and(m u128) u128 { return u128{u.hi & m.hi, u.lo & m.lo} }
func (u u128) or(m u128) u128  { return u128{u.hi | m.hi, u.lo | m.lo} }

func (u u128) cmp(v u128) int {
	if c := cmp.Compare(u.hi, v.hi); c != 0 {
		return c
	}
	return cmp.Compare(u.lo, v.lo)
}

func (u u128) add1() (u128, bool) {
	lo, c := bits.Add64(u.lo, 1, 0)
	hi, c := bits.Add64(u.hi, 0, c)
	return u128{hi, lo}, c != 0
}

func (u u128) trailingZeros() uint {
	if u.lo != 0 {
		return uint(bits.TrailingZeros64(u.lo))
	}
	return 64 + uint(bits.TrailingZeros64(u.hi)) // 128 for zero
}

// lowMask64 returns n (0..64) low one bits.
func lowMask64(n uint) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// lowMask128 returns n (0..128) low one bits.
func lowMask128(n uint) u128 {
	if n <= 64 {
		return u128{lo: lowMask64(n)}
	}
	return u128{hi: lowMask64(n - 64), lo: ^uint64(0)}
}

// prefixMask returns the mask of a prefix of length n in family fam.
func prefixMask(fam int, n uint) u128 {
	w := famWidth[fam]
	all := lowMask128(w)
	low := lowMask128(w - n)
	return u128{all.hi &^ low.hi, all.lo &^ low.lo}
}

// r128 is an inclusive address range within one family.
type r128 struct{ lo, hi u128 }

func (r r128) contains(a u128) bool { return r.lo.cmp(a) <= 0 && a.cmp(r.hi) <= 0 }

// pfx is a prefix: a masked address and a length.
type pfx struct {
	a    u128
	bits uint8
}

// familyRanges appends to rs the ranges of l in family fam, sorted, merged
// and disjoint; an empty l is ANY, the whole family. Nothing appended means
// that l selects nothing of that family.
func familyRanges(rs []r128, l []AddrRange, fam int) []r128 {
	if len(l) == 0 {
		return append(rs, r128{hi: lowMask128(famWidth[fam])})
	}
	base := len(rs)
	for _, r := range l {
		if (fam == famV4) != r.From.Is4() {
			continue
		}
		rs = append(rs, r128{u128FromAddr(r.From), u128FromAddr(r.To)})
	}
	if len(rs)-base <= 1 {
		return rs
	}
	slices.SortFunc(rs[base:], func(a, b r128) int { return a.lo.cmp(b.lo) })
	out := rs[:base+1]
	for _, r := range rs[base+1:] {
		last := &out[len(out)-1]
		next, wrap := last.hi.add1()
		if wrap || r.lo.cmp(next) <= 0 { // overlapping or adjacent
			if r.hi.cmp(last.hi) > 0 {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// appendPrefixes appends the smallest list of prefixes that covers r
// exactly, in address order.
func appendPrefixes(dst []pfx, r r128, fam int) []pfx {
	w := famWidth[fam]
	a := r.lo
	for {
		k := min(a.trailingZeros(), w)
		for k > 0 && a.or(lowMask128(k)).cmp(r.hi) > 0 {
			k--
		}
		dst = append(dst, pfx{a: a, bits: uint8(w - k)})
		end := a.or(lowMask128(k))
		if end.cmp(r.hi) >= 0 {
			return dst
		}
		a, _ = end.add1()
	}
}

func prefixesOf(out []pfx, rs []r128, fam int) []pfx {
	for _, r := range rs {
		out = appendPrefixes(out, r, fam)
	}
	return out
}

func inRanges(rs []r128, a u128) bool {
	for i := range rs {
		if rs[i].contains(a) {
			return true
		}
	}
	return false
}
