package aesgcm

import "encoding/binary"

// elem is a GHASH field element as the vector code holds it: the 16-byte
// block read as one big-endian 128-bit integer (byte-reflected), hi and lo
// its two halves.
type elem struct{ hi, lo uint64 }

// polyHi is the high half of the reduction constant x^128 + x^127 + x^126 +
// x^121 + 1 in the reflected representation (the low half is 1).
const polyHi = 0xc200000000000000

func loadElem(b []byte) elem {
	return elem{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:16])}
}

// clmul64 is the carry-less product of a and b, in constant time.
func clmul64(a, b uint64) (hi, lo uint64) {
	for i := range 64 {
		m := -(b >> i & 1)
		lo ^= a << i & m
		hi ^= a >> (64 - i) & m // a>>64 is 0 for i = 0
	}
	return hi, lo
}

// mulX returns h·x, the form of H the multiplication below takes so that
// the product of two reflected values needs no extra 1-bit shift.
func mulX(h elem) elem {
	m := -(h.hi >> 63)
	return elem{hi: (h.hi<<1 | h.lo>>63) ^ polyHi&m, lo: h.lo<<1 ^ 1&m}
}

// reduceRound folds the low 64 bits of a into the rest (one of the two
// steps reducing a 256-bit product modulo the GCM polynomial).
func reduceRound(a elem) elem {
	th, tl := clmul64(a.lo, polyHi)
	return elem{hi: a.lo ^ th, lo: a.hi ^ tl}
}

// gfMul is what the assembly computes per block: for a = X·x (see mulX)
// and b = Y it returns X·Y, and for b = Y·x it returns (X·Y)·x.
func gfMul(a, b elem) elem {
	h1, l1 := clmul64(a.lo, b.lo)
	h2, l2 := clmul64(a.hi, b.hi)
	h3, l3 := clmul64(a.lo, b.hi)
	h4, l4 := clmul64(a.hi, b.lo)
	mh, ml := h3^h4, l3^l4
	lo := elem{hi: h1 ^ ml, lo: l1}
	hi := elem{hi: h2, lo: l2 ^ mh}
	lo = reduceRound(reduceRound(lo))
	return elem{hi: lo.hi ^ hi.hi, lo: lo.lo ^ hi.lo}
}

// hashBlocks is how many blocks the assembly's GHASH sums before one
// reduction: it needs H^1..H^hashBlocks.
const hashBlocks = 32

// hashPowers fills tab with H^hashBlocks·x ... H^1·x (descending, the order
// the assembly reads them in) for the hash key h = E_K(0^128).
func hashPowers(h []byte, tab *[hashBlocks][16]byte) {
	h1 := mulX(loadElem(h))
	p := h1
	for n := 1; n <= hashBlocks; n++ {
		if n > 1 {
			p = gfMul(p, h1)
		}
		binary.LittleEndian.PutUint64(tab[hashBlocks-n][:8], p.lo)
		binary.LittleEndian.PutUint64(tab[hashBlocks-n][8:], p.hi)
	}
}
