//go:build amd64 && !purego

package aesgcm

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasVector: VAES on YMM registers (AVX2) for the keystream, VPCLMULQDQ on
// ZMM registers (AVX-512 F and BW) for GHASH, byte-masked loads and stores
// (AVX-512 BW and VL) for partial blocks. x/sys/cpu reports these only
// when the OS saves the YMM and ZMM state (and it reports the VAES and
// VPCLMULQDQ bits only with AVX-512 enabled, so CPUs with VAES but no
// AVX-512 take the standard library's path anyway).
var hasVector = cpu.X86.HasAVX2 && cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ &&
	cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL &&
	cpu.X86.HasAVX512VAES && cpu.X86.HasAVX512VPCLMULQDQ

// ctrXor XORs n bytes of src with the AES-CTR keystream into dst, starting
// at the counter block made of the nonce (its first 4 bytes as salt and its
// last 8 as iv, both little-endian: see nonceOf) and ctr (big-endian),
// GCM's inc32 on its last 4 bytes.
//
//go:noescape
func ctrXor(rk *[15][32]byte, nr int, salt uint32, iv uint64, ctr uint32, dst, src *byte, n int)

// ghashSeg folds into the GHASH accumulator *acc (held byte-reflected, as
// the field model's elem in little-endian) npre bytes at pre (0 to 16,
// zero-padded), nmid at mid (a multiple of 16), npost at post (0 to 15,
// zero-padded) and, with tag non-nil, the length block of aadBits and
// ctBits; then, with tag non-nil, it writes the GCM tag for the nonce
// salt, iv (as in ctrXor) into *tag.
//
//go:noescape
func ghashSeg(tab *[hashBlocks][16]byte, acc *[16]byte, pre *byte, npre int, mid *byte, nmid int, post *byte, npost int,
	aadBits, ctBits uint64, rk *[15][32]byte, nr int, salt uint32, iv uint64, tag *[16]byte)

// gcmVector is AES-GCM with VAES and VPCLMULQDQ.
type gcmVector struct {
	rk  [15][32]byte         // round keys, each twice (both 128-bit lanes)
	tab [hashBlocks][16]byte // H^64·x ... H^1·x
	nr  int
}

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
	var h [16]byte
	ctrXor(&g.rk, g.nr, 0, 0, 0, &h[0], &h[0], 16) // H = E_K(0^128): zero nonce and counter, zero input
	g.hashPowers(&h)
	clear(h[:])
	return g
}

// hashPowers fills g.tab with H^hashBlocks·x ... H^1·x for the hash key
// h: H^1·x in Go, then each next power with the assembly (one block, the
// previous power, hashed with H: P·H), so that setup takes microseconds.
func (g *gcmVector) hashPowers(h *[16]byte) {
	putElem(g.tab[hashBlocks-1][:], mulX(loadElem(h[:])))
	p := *h
	for n := 2; n <= hashBlocks; n++ {
		var acc [16]byte
		ghashSeg(&g.tab, &acc, nil, 0, &p[0], 16, nil, 0, 0, 0, nil, 0, 0, 0, nil)
		e := elem{lo: binary.LittleEndian.Uint64(acc[:8]), hi: binary.LittleEndian.Uint64(acc[8:])}
		putElem(g.tab[hashBlocks-n][:], mulX(e))
		p = blockOf(e)
	}
	clear(p[:])
}

// NonceSize returns 12.
func (g *gcmVector) NonceSize() int { return NonceSize }

// Overhead returns the tag length, 16.
func (g *gcmVector) Overhead() int { return TagSize }

// ptr is &b[0], or nil for an empty b.
func ptr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

// tag computes GCM's tag for the nonce salt, iv over aad and the
// ciphertext ct into out. ESP's short AAD (up to 16 bytes), the ciphertext
// and the length block go to the assembly in one call; so do GMAC's AAD
// and length block.
func (g *gcmVector) tag(out *[16]byte, salt uint32, iv uint64, aad, ct []byte) {
	var acc [16]byte
	var pre []byte
	body := ct
	switch {
	case len(ct) == 0:
		body = aad
	case len(aad) <= 16:
		pre = aad
	default: // a long AAD and a ciphertext: the AAD first, on its own
		n := len(aad) &^ 15
		ghashSeg(&g.tab, &acc, nil, 0, &aad[0], n, ptr(aad[n:]), len(aad)-n, 0, 0, nil, 0, 0, 0, nil)
	}
	n := len(body) &^ 15
	ghashSeg(&g.tab, &acc, ptr(pre), len(pre), ptr(body[:n]), n, ptr(body[n:]), len(body)-n,
		uint64(len(aad))*8, uint64(len(ct))*8, &g.rk, g.nr, salt, iv, out)
}

// nonceOf splits a 12-byte nonce into the salt and IV parts the assembly
// takes: two loads, each of what one store may just have written.
func nonceOf(nonce []byte) (salt uint32, iv uint64) {
	if len(nonce) != NonceSize {
		panic("aesgcm: incorrect nonce length given to GCM")
	}
	return binary.LittleEndian.Uint32(nonce[:4]), binary.LittleEndian.Uint64(nonce[4:12])
}

// Seal encrypts and authenticates plaintext, authenticates aad, and appends
// the ciphertext and tag to dst (dst may be plaintext[:0]).
func (g *gcmVector) Seal(dst, nonce, plaintext, aad []byte) []byte {
	salt, iv := nonceOf(nonce)
	return g.seal(dst, salt, iv, plaintext, aad)
}

// SealIV is Seal with the nonce in its two RFC 4106 parts: the salt and
// the packet's explicit IV.
func (g *gcmVector) SealIV(dst []byte, salt *[4]byte, iv *[8]byte, plaintext, aad []byte) []byte {
	return g.seal(dst, binary.LittleEndian.Uint32(salt[:]), binary.LittleEndian.Uint64(iv[:]), plaintext, aad)
}

func (g *gcmVector) seal(dst []byte, salt uint32, iv uint64, plaintext, aad []byte) []byte {
	if uint64(len(plaintext)) > maxPlain {
		panic("aesgcm: message too large for GCM")
	}
	ret, out := sliceForAppend(dst, len(plaintext)+TagSize)
	if inexactOverlap(out, plaintext) {
		panic("aesgcm: invalid buffer overlap of output and input")
	}
	if anyOverlap(out, aad) {
		panic("aesgcm: invalid buffer overlap of output and additional data")
	}
	ct := out[:len(plaintext)]
	ctrXor(&g.rk, g.nr, salt, iv, 2, ptr(ct), ptr(plaintext), len(plaintext)) // from J0+1
	g.tag((*[16]byte)(out[len(plaintext):]), salt, iv, aad, ct)
	return ret
}

// Open authenticates ciphertext (with its tag) and aad and, only if the tag
// is right, decrypts into dst (dst may be ciphertext[:0]); on failure dst is
// left untouched.
func (g *gcmVector) Open(dst, nonce, ciphertext, aad []byte) ([]byte, error) {
	salt, iv := nonceOf(nonce)
	return g.open(dst, salt, iv, ciphertext, aad)
}

// OpenIV is Open with the nonce in its two RFC 4106 parts: the salt and
// the packet's explicit IV.
func (g *gcmVector) OpenIV(dst []byte, salt *[4]byte, iv *[8]byte, ciphertext, aad []byte) ([]byte, error) {
	return g.open(dst, binary.LittleEndian.Uint32(salt[:]), binary.LittleEndian.Uint64(iv[:]), ciphertext, aad)
}

func (g *gcmVector) open(dst []byte, salt uint32, iv uint64, ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < TagSize || uint64(len(ciphertext)) > maxPlain+TagSize {
		return nil, errOpen
	}
	ct, tag := ciphertext[:len(ciphertext)-TagSize], ciphertext[len(ciphertext)-TagSize:]
	ret, out := sliceForAppend(dst, len(ct))
	if inexactOverlap(out, ciphertext) {
		panic("aesgcm: invalid buffer overlap of output and input")
	}
	if anyOverlap(out, aad) {
		panic("aesgcm: invalid buffer overlap of output and additional data")
	}
	var want [16]byte
	g.tag(&want, salt, iv, aad, ct)
	// Constant time, a word at a time.
	d := (binary.LittleEndian.Uint64(want[:8]) ^ binary.LittleEndian.Uint64(tag[:8])) |
		(binary.LittleEndian.Uint64(want[8:]) ^ binary.LittleEndian.Uint64(tag[8:16]))
	if subtle.ConstantTimeEq(int32(uint32(d)|uint32(d>>32)), 0) != 1 {
		return nil, errOpen
	}
	ctrXor(&g.rk, g.nr, salt, iv, 2, ptr(out), ptr(ct), len(ct)) // from J0+1
	return ret, nil
}

// Wipe overwrites the expanded key and the hash key's powers with random
// bytes. A call still running on another goroutine then goes on under
// unknown random keys (its output is garbage no one can decrypt or
// forge), not under known zero ones. The AEAD must not be used afterwards.
func (g *gcmVector) Wipe() {
	rand.Read(unsafe.Slice((*byte)(unsafe.Pointer(&g.rk)), unsafe.Sizeof(g.rk)))
	rand.Read(unsafe.Slice((*byte)(unsafe.Pointer(&g.tab)), unsafe.Sizeof(g.tab)))
}

// gcmVectorType names the vector AEAD for tests on every platform.
type gcmVectorType = gcmVector
