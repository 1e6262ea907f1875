package aesgcm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

func stdGCM(t testing.TB, key []byte) cipher.AEAD {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func randBytes(r *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// implementations returns the AEADs under test for key: the default New
// and, as a second entry, the forced generic path.
func implementations(t testing.TB, key []byte) map[string]cipher.AEAD {
	t.Helper()
	a, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	forceGeneric = true
	g, err := New(key)
	forceGeneric = false
	if err != nil {
		t.Fatal(err)
	}
	return map[string]cipher.AEAD{"default": a, "generic": g}
}

// checkOne seals and opens one message with a and the standard library,
// out of place and in place, at an offset that misaligns the buffers, and
// checks tampering is refused.
func checkOne(t testing.TB, a, ref cipher.AEAD, nonce, pt, aad []byte, off int) {
	t.Helper()
	want := ref.Seal(nil, nonce, pt, aad)

	got := a.Seal(nil, nonce, pt, aad)
	if !bytes.Equal(got, want) {
		t.Fatalf("Seal(len %d, aad %d) = %x, want %x", len(pt), len(aad), got, want)
	}
	// In place, at an unaligned offset, with a prefix that must survive.
	buf := make([]byte, off+len(pt)+TagSize)
	for i := range off {
		buf[i] = 0xa5
	}
	copy(buf[off:], pt)
	got = a.Seal(buf[off:off], nonce, buf[off:off+len(pt)], aad)
	if !bytes.Equal(got, want) || !bytes.Equal(buf[off:], want) {
		t.Fatalf("in-place Seal(len %d, aad %d, off %d) = %x, want %x", len(pt), len(aad), off, got, want)
	}
	for i := range off {
		if buf[i] != 0xa5 {
			t.Fatalf("in-place Seal wrote before dst")
		}
	}
	// Appending to a non-empty dst.
	got = a.Seal([]byte{1, 2, 3}, nonce, pt, aad)
	if !bytes.Equal(got[:3], []byte{1, 2, 3}) || !bytes.Equal(got[3:], want) {
		t.Fatalf("Seal appending to dst = %x", got)
	}

	// The RFC 4106 form: the same nonce in its salt and IV parts.
	if iva, ok := a.(IVAEAD); ok {
		salt, iv := (*[4]byte)(nonce[:4]), (*[8]byte)(nonce[4:12])
		if got := iva.SealIV(nil, salt, iv, pt, aad); !bytes.Equal(got, want) {
			t.Fatalf("SealIV(len %d, aad %d) = %x, want %x", len(pt), len(aad), got, want)
		}
		in := bytes.Clone(want)
		if dec, err := iva.OpenIV(in[:0], salt, iv, in, aad); err != nil || !bytes.Equal(dec, pt) {
			t.Fatalf("OpenIV(len %d, aad %d) = %x, %v, want %x", len(pt), len(aad), dec, err, pt)
		}
		bad := bytes.Clone(want)
		bad[mrand.IntN(len(bad))] ^= 1 << mrand.IntN(8)
		if _, err := iva.OpenIV(nil, salt, iv, bad, aad); err == nil {
			t.Fatalf("OpenIV accepted a tampered message (len %d)", len(pt))
		}
		badIV := *iv
		badIV[mrand.IntN(8)] ^= 1
		if _, err := iva.OpenIV(nil, salt, &badIV, want, aad); err == nil {
			t.Fatalf("OpenIV accepted a wrong IV")
		}
		badSalt := *salt
		badSalt[mrand.IntN(4)] ^= 1
		if _, err := iva.OpenIV(nil, &badSalt, iv, want, aad); err == nil {
			t.Fatalf("OpenIV accepted a wrong salt")
		}
	}

	dec, err := a.Open(nil, nonce, want, aad)
	if err != nil || !bytes.Equal(dec, pt) {
		t.Fatalf("Open(len %d, aad %d) = %x, %v, want %x", len(pt), len(aad), dec, err, pt)
	}
	dec, err = a.Open(buf[off:off], nonce, buf[off:], aad)
	if err != nil || !bytes.Equal(dec, pt) || !bytes.Equal(buf[off:off+len(pt)], pt) {
		t.Fatalf("in-place Open(len %d, aad %d, off %d) = %x, %v", len(pt), len(aad), off, dec, err)
	}

	// Tampering: a bit of the ciphertext, the tag or the AAD.
	bad := bytes.Clone(want)
	bad[mrand.IntN(len(bad))] ^= 1 << mrand.IntN(8)
	dst := bytes.Repeat([]byte{0x5a}, len(pt))
	if out, err := a.Open(dst[:0], nonce, bad, aad); err == nil || out != nil {
		t.Fatalf("Open accepted a tampered message (len %d)", len(pt))
	}
	// On failure dst holds no plaintext: untouched (this package) or
	// zeroed (crypto/cipher).
	if !bytes.Equal(dst, bytes.Repeat([]byte{0x5a}, len(pt))) && !bytes.Equal(dst, make([]byte, len(pt))) {
		t.Fatalf("Open wrote to dst on failure: %x", dst)
	}
	if len(aad) > 0 {
		badAAD := bytes.Clone(aad)
		badAAD[mrand.IntN(len(badAAD))] ^= 0x80
		if _, err := a.Open(nil, nonce, want, badAAD); err == nil {
			t.Fatalf("Open accepted a tampered AAD")
		}
	}
	badNonce := bytes.Clone(nonce)
	badNonce[mrand.IntN(len(badNonce))] ^= 1
	if _, err := a.Open(nil, badNonce, want, aad); err == nil {
		t.Fatalf("Open accepted a wrong nonce")
	}
}

func TestDifferentialLengths(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for _, ks := range []int{16, 24, 32} {
		key := randBytes(r, ks)
		ref := stdGCM(t, key)
		for name, a := range implementations(t, key) {
			t.Run(fmt.Sprintf("%s/aes%d", name, ks*8), func(t *testing.T) {
				for n := 0; n <= 600; n++ {
					checkOne(t, a, ref, randBytes(r, NonceSize), randBytes(r, n), randBytes(r, r.IntN(65)), r.IntN(16))
				}
			})
		}
	}
}

func TestDifferentialRandom(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	iters := 300
	if testing.Short() {
		iters = 50
	}
	for i := range iters {
		key := randBytes(r, []int{16, 24, 32}[i%3])
		a, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		aadLen := r.IntN(65)
		if i%5 == 0 { // GMAC-like: large AAD
			aadLen = r.IntN(9000)
		}
		checkOne(t, a, stdGCM(t, key), randBytes(r, NonceSize), randBytes(r, r.IntN(64<<10+1)), randBytes(r, aadLen), r.IntN(16))
	}
}

// TestGMAC checks RFC 4543's use: nothing encrypted, the packet as AAD.
func TestGMAC(t *testing.T) {
	r := mrand.New(mrand.NewPCG(5, 6))
	for _, ks := range []int{16, 24, 32} {
		key := randBytes(r, ks)
		a, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		ref := stdGCM(t, key)
		for n := 0; n <= 2100; n += 1 + r.IntN(7) {
			checkOne(t, a, ref, randBytes(r, NonceSize), nil, randBytes(r, n), 0)
		}
	}
}

func TestKeySchedule(t *testing.T) {
	// FIPS 197 appendix A.1 and A.3: the last round key.
	for _, tc := range []struct{ key, last string }{
		{"2b7e151628aed2a6abf7158809cf4f3c", "d014f9a8c9ee2589e13f0cc8b6630ca6"},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "fe4890d1e6188d0b046df344706c631e"},
	} {
		key, _ := hex.DecodeString(tc.key)
		var rk [15][16]byte
		nr := expandKey(key, &rk)
		if got := hex.EncodeToString(rk[nr][:]); got != tc.last {
			t.Errorf("key %s: last round key %s, want %s", tc.key, got, tc.last)
		}
		if !bytes.Equal(rk[0][:], key[:16]) {
			t.Errorf("key %s: first round key %x", tc.key, rk[0])
		}
	}
	for x := range 256 {
		// The S-box is a bijection with no fixed points.
		if s := sbox(byte(x)); s == byte(x) {
			t.Fatalf("sbox(%#x) = %#x", x, s)
		}
	}
	if sbox(0) != 0x63 || sbox(0x53) != 0xed {
		t.Fatalf("sbox(0) = %#x, sbox(0x53) = %#x", sbox(0), sbox(0x53))
	}
}

// TestFieldModel checks the Go model of the assembly's field arithmetic
// (mulX, gfMul, the power table) against the standard library: a GMAC tag
// computed with it must match crypto/cipher's.
func TestFieldModel(t *testing.T) {
	r := mrand.New(mrand.NewPCG(7, 8))
	for range 20 {
		key := randBytes(r, 16)
		blk, _ := aes.NewCipher(key)
		var h [16]byte
		blk.Encrypt(h[:], h[:])
		var tab [hashBlocks][16]byte
		hashPowers(h[:], &tab)
		h1 := mulX(loadElem(h[:]))
		aad := randBytes(r, 16*r.IntN(40))
		nonce := randBytes(r, NonceSize)
		// Block by block with H, and aggregated with the table powers.
		var acc elem
		for i := 0; i < len(aad); i += 16 {
			x := loadElem(aad[i:])
			acc = gfMul(h1, elem{acc.hi ^ x.hi, acc.lo ^ x.lo})
		}
		acc = gfMul(h1, elem{acc.hi ^ uint64(len(aad))*8, acc.lo})
		var j0, s [16]byte
		copy(j0[:], nonce)
		j0[15] = 1
		blk.Encrypt(s[:], j0[:])
		var tag [16]byte
		for i := range 8 {
			tag[i] = byte(acc.hi>>(56-8*i)) ^ s[i]
			tag[8+i] = byte(acc.lo>>(56-8*i)) ^ s[8+i]
		}
		want := stdGCM(t, key).Seal(nil, nonce, nil, aad)
		if !bytes.Equal(tag[:], want) {
			t.Fatalf("model tag %x, want %x", tag, want)
		}
		// H^n·x from the table equals n multiplications by H.
		p := h1
		for n := 2; n <= hashBlocks; n++ {
			p = gfMul(p, h1)
			e := elem{lo: leUint64(tab[hashBlocks-n][:8]), hi: leUint64(tab[hashBlocks-n][8:])}
			if e != p {
				t.Fatalf("table entry H^%d = %x, want %x", n, e, p)
			}
		}
	}
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func TestNewErrors(t *testing.T) {
	for _, n := range []int{0, 15, 17, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New accepted a %d-byte key", n)
		}
	}
	a, err := New(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	if a.NonceSize() != NonceSize || a.Overhead() != TagSize {
		t.Fatalf("NonceSize %d, Overhead %d", a.NonceSize(), a.Overhead())
	}
	if _, err := a.Open(nil, make([]byte, NonceSize), make([]byte, TagSize-1), nil); err == nil {
		t.Fatal("Open accepted a message shorter than the tag")
	}
	mustPanic(t, "short nonce", func() { a.Seal(nil, make([]byte, 8), nil, nil) })
	mustPanic(t, "short nonce Open", func() { a.Open(nil, make([]byte, 8), make([]byte, 32), nil) })
	buf := make([]byte, 64)
	mustPanic(t, "inexact overlap", func() { a.Seal(buf[1:1], make([]byte, NonceSize), buf[:32], nil) })
	mustPanic(t, "inexact overlap Open", func() { a.Open(buf[1:1], make([]byte, NonceSize), buf[:48], nil) })
	mustPanic(t, "output over AAD", func() { a.Seal(buf[:0], make([]byte, NonceSize), nil, buf[8:24]) })
	ct := a.Seal(nil, make([]byte, NonceSize), make([]byte, 16), buf[32:40])
	copy(buf, ct)
	mustPanic(t, "output over AAD Open", func() { a.Open(buf[:0], make([]byte, NonceSize), buf[:32], buf[8:16]) })
	// Adjacent is not overlapping: GMAC's tag right after the packet.
	a.Seal(buf[40:40], make([]byte, NonceSize), nil, buf[:40])
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

func TestAccelerated(t *testing.T) {
	a, err := New(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	_, vec := a.(*gcmVectorType)
	if vec != Accelerated() {
		t.Fatalf("New returned %T, Accelerated() = %v", a, Accelerated())
	}
	t.Logf("accelerated: %v", vec)
	forceGeneric = true
	defer func() { forceGeneric = false }()
	b, _ := New(make([]byte, 32))
	if _, vec := b.(*gcmVectorType); vec || Accelerated() {
		t.Fatalf("forced generic: New returned %T", b)
	}
}

func TestZeroAllocs(t *testing.T) {
	key := make([]byte, 16)
	rand.Read(key)
	a, _ := New(key)
	buf := make([]byte, 1400+TagSize)
	nonce := make([]byte, NonceSize)
	aad := make([]byte, 8)
	allocs := testing.AllocsPerRun(100, func() {
		ct := a.Seal(buf[:0], nonce, buf[:1400], aad)
		if _, err := a.Open(ct[:0], nonce, ct, aad); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Seal+Open", allocs)
	}
}
