package aesgcm

// A Go model of the assembly's GHASH arithmetic (slow, constant time),
// checked against crypto/cipher and against the tables the assembly
// builds.

// clmul64 is the carry-less product of a and b, in constant time.
func clmul64(a, b uint64) (hi, lo uint64) {
	for i := range 64 {
		m := -(b >> i & 1)
		lo ^= a << i & m
		hi ^= a >> (64 - i) & m // a>>64 is 0 for i = 0
	}
	return hi, lo
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

// hashPowers is the model of the assembly's table: H^hashBlocks·x ...
// H^1·x (descending, the order the assembly reads them in) for the hash
// key h = E_K(0^128).
func hashPowers(h []byte, tab *[hashBlocks][16]byte) {
	h1 := mulX(loadElem(h))
	p := h1
	for n := 1; n <= hashBlocks; n++ {
		if n > 1 {
			p = gfMul(p, h1)
		}
		putElem(tab[hashBlocks-n][:], p)
	}
}
