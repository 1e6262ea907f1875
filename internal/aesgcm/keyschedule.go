package aesgcm

import (
	"encoding/binary"
	"math/bits"
)

// gfMul8 multiplies in AES's GF(2^8) (x^8+x^4+x^3+x+1) without branches or
// tables on the operands, so that the key schedule runs in constant time.
func gfMul8(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= a & -(b & 1)
		b >>= 1
		a = a<<1 ^ 0x1b&-(a>>7)
	}
	return p
}

// sbox is AES's S-box computed (x^254, then the affine map), not looked up.
func sbox(x byte) byte {
	s, r := x, byte(1)
	for range 7 {
		s = gfMul8(s, s)
		r = gfMul8(r, s)
	}
	return r ^ bits.RotateLeft8(r, 1) ^ bits.RotateLeft8(r, 2) ^ bits.RotateLeft8(r, 3) ^ bits.RotateLeft8(r, 4) ^ 0x63
}

func subWord(w uint32) uint32 {
	return uint32(sbox(byte(w>>24)))<<24 | uint32(sbox(byte(w>>16)))<<16 | uint32(sbox(byte(w>>8)))<<8 | uint32(sbox(byte(w)))
}

// expandKey writes the encryption round keys of a 16-, 24- or 32-byte AES key
// (FIPS 197 KeyExpansion) into rk, in the byte order AES-NI takes, and
// returns the number of rounds.
func expandKey(key []byte, rk *[15][16]byte) int {
	nk := len(key) / 4
	nr := nk + 6
	var w [60]uint32
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := byte(1)
	for i := nk; i < 4*(nr+1); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(bits.RotateLeft32(t, 8)) ^ uint32(rcon)<<24
			rcon = gfMul8(rcon, 2)
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	for i := range 4 * (nr + 1) {
		binary.BigEndian.PutUint32(rk[i/4][4*(i%4):], w[i])
	}
	clear(w[:])
	return nr
}
