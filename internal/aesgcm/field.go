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

// mulX returns h·x, the form of H the multiplication below takes so that
// the product of two reflected values needs no extra 1-bit shift.
func mulX(h elem) elem {
	m := -(h.hi >> 63)
	return elem{hi: (h.hi<<1 | h.lo>>63) ^ polyHi&m, lo: h.lo<<1 ^ 1&m}
}

// putElem stores e as the assembly reads a table entry: lo then hi,
// little-endian.
func putElem(b []byte, e elem) {
	binary.LittleEndian.PutUint64(b[:8], e.lo)
	binary.LittleEndian.PutUint64(b[8:16], e.hi)
}

// blockOf is e back in GCM's byte order.
func blockOf(e elem) (b [16]byte) {
	binary.BigEndian.PutUint64(b[:8], e.hi)
	binary.BigEndian.PutUint64(b[8:], e.lo)
	return b
}

// hashBlocks is how many blocks the assembly's GHASH sums before one
// reduction: it needs H^1..H^hashBlocks.
const hashBlocks = 64
