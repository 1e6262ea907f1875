//go:build amd64 && !purego

package aesgcm

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"

	"golang.org/x/sys/cpu"
)

// hasVector: VAES on YMM registers (AVX2) for the keystream, VPCLMULQDQ on
// ZMM registers (AVX-512 F and BW) for GHASH. x/sys/cpu reports these only
// when the OS saves the YMM and ZMM state (and it reports the VAES and
// VPCLMULQDQ bits only with AVX-512 enabled, so CPUs with VAES but no
// AVX-512 take the standard library's path anyway).
var hasVector = cpu.X86.HasAVX2 && cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ &&
	cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW &&
	cpu.X86.HasAVX512VAES && cpu.X86.HasAVX512VPCLMULQDQ

// ctrXor XORs n bytes (a multiple of 16) of src with the AES-CTR keystream
// into dst, starting at the counter block *ctr (GCM's inc32 on its last 4
// bytes), and leaves the next counter block in *ctr.
//
//go:noescape
func ctrXor(rk *[15][32]byte, nr int, ctr *[16]byte, dst, src *byte, n int)

// ghash folds n bytes (a multiple of 16) at p into the GHASH accumulator
// *acc (held byte-reflected, as the field model's elem in little-endian).
//
//go:noescape
func ghash(tab *[hashBlocks][16]byte, acc *[16]byte, p *byte, n int)

// gcmVector is AES-GCM with VAES and VPCLMULQDQ.
type gcmVector struct {
	rk  [15][32]byte         // round keys, each twice (both 128-bit lanes)
	tab [hashBlocks][16]byte // H^32·x ... H^1·x
	nr  int
}

var zeroBlock [16]byte

func newVector(key []byte) cipher.AEAD {
	if !hasVector {
		return nil
	}
	g := &gcmVector{}
	var rk [15][16]byte
	g.nr = expandKey(key, &rk)
	for i := range rk {
		copy(g.rk[i][:16], rk[i][:])
		copy(g.rk[i][16:], rk[i][:])
	}
	clear(rk[:])
	var h, ctr [16]byte
	ctrXor(&g.rk, g.nr, &ctr, &h[0], &zeroBlock[0], 16) // H = E_K(0^128): counter 0, zero input
	hashPowers(h[:], &g.tab)
	clear(h[:])
	return g
}

// NonceSize returns 12.
func (g *gcmVector) NonceSize() int { return NonceSize }

// Overhead returns the tag length, 16.
func (g *gcmVector) Overhead() int { return TagSize }

// start sets *ctr to the first data counter block for nonce and *mask to
// E_K(J0), the value the tag is masked with.
func (g *gcmVector) start(nonce []byte, ctr, mask *[16]byte) {
	copy(ctr[:], nonce)
	ctr[15] = 1
	ctrXor(&g.rk, g.nr, ctr, &mask[0], &zeroBlock[0], 16)
}

// crypt XORs src with the keystream from *ctr into dst (same length).
func (g *gcmVector) crypt(ctr *[16]byte, dst, src []byte) {
	n := len(src) &^ 15
	if n > 0 {
		ctrXor(&g.rk, g.nr, ctr, &dst[0], &src[0], n)
	}
	if r := len(src) - n; r > 0 {
		var b [16]byte
		copy(b[:], src[n:])
		ctrXor(&g.rk, g.nr, ctr, &b[0], &b[0], 16)
		copy(dst[n:], b[:r])
		clear(b[:])
	}
}

// hash folds p, zero-padded to whole blocks, into *acc.
func (g *gcmVector) hash(acc *[16]byte, p []byte) {
	n := len(p) &^ 15
	if n > 0 {
		ghash(&g.tab, acc, &p[0], n)
	}
	if r := len(p) - n; r > 0 {
		var b [16]byte
		copy(b[:], p[n:])
		ghash(&g.tab, acc, &b[0], 16)
	}
}

// tag computes the tag over aad and the ciphertext ct into out.
func (g *gcmVector) tag(out *[16]byte, mask *[16]byte, aad, ct []byte) {
	var acc, lens [16]byte
	g.hash(&acc, aad)
	g.hash(&acc, ct)
	binary.BigEndian.PutUint64(lens[:8], uint64(len(aad))*8)
	binary.BigEndian.PutUint64(lens[8:], uint64(len(ct))*8)
	ghash(&g.tab, &acc, &lens[0], 16)
	for i := range out {
		out[i] = acc[15-i] ^ mask[i]
	}
}

// Seal encrypts and authenticates plaintext, authenticates aad, and appends
// the ciphertext and tag to dst (dst may be plaintext[:0]).
func (g *gcmVector) Seal(dst, nonce, plaintext, aad []byte) []byte {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	if uint64(len(plaintext)) > maxPlain {
		panic("aesgcm: message too large for GCM")
	}
	ret, out := sliceForAppend(dst, len(plaintext)+TagSize)
	if inexactOverlap(out, plaintext) {
		panic("aesgcm: invalid buffer overlap")
	}
	var ctr, mask, t [16]byte
	g.start(nonce, &ctr, &mask)
	ct := out[:len(plaintext)]
	g.crypt(&ctr, ct, plaintext)
	g.tag(&t, &mask, aad, ct)
	copy(out[len(plaintext):], t[:])
	return ret
}

// Open authenticates ciphertext (with its tag) and aad and, only if the tag
// is right, decrypts into dst (dst may be ciphertext[:0]); on failure dst is
// left untouched.
func (g *gcmVector) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	if len(ciphertext) < TagSize || uint64(len(ciphertext)) > maxPlain+TagSize {
		return nil, errOpen
	}
	ct, tag := ciphertext[:len(ciphertext)-TagSize], ciphertext[len(ciphertext)-TagSize:]
	ret, out := sliceForAppend(dst, len(ct))
	if inexactOverlap(out, ciphertext) {
		panic("aesgcm: invalid buffer overlap")
	}
	var ctr, mask, want [16]byte
	g.start(nonce, &ctr, &mask)
	g.tag(&want, &mask, aad, ct)
	if subtle.ConstantTimeCompare(want[:], tag) != 1 {
		return nil, errOpen
	}
	g.crypt(&ctr, out, ct)
	return ret, nil
}

// gcmVectorType names the vector AEAD for tests on every platform.
type gcmVectorType = gcmVector
