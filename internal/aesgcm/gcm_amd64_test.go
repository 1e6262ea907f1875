//go:build amd64 && !purego

package aesgcm

import (
	"crypto/aes"
	mrand "math/rand/v2"
	"testing"
)

// TestVectorTable compares the hash key powers New builds with the
// assembly against the Go model's.
func TestVectorTable(t *testing.T) {
	if !hasVector {
		t.Skip("no VAES/VPCLMULQDQ/AVX-512 on this CPU: the vector code is not used")
	}
	r := mrand.New(mrand.NewPCG(11, 12))
	for _, ks := range []int{16, 24, 32} {
		key := randBytes(r, ks)
		a, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		g := a.(*gcmVector)
		blk, _ := aes.NewCipher(key)
		var h [16]byte
		blk.Encrypt(h[:], h[:])
		var want [hashBlocks][16]byte
		hashPowers(h[:], &want)
		for i := range want {
			if g.tab[i] != want[i] {
				t.Fatalf("aes%d: table entry %d (H^%d) = %x, want %x", ks*8, i, hashBlocks-i, g.tab[i], want[i])
			}
		}
	}
}

// TestIVAEAD checks that the vector AEAD offers the RFC 4106 form (ESP
// relies on it to skip assembling nonces) and the fallback does not.
func TestIVAEAD(t *testing.T) {
	if !hasVector {
		t.Skip("no VAES/VPCLMULQDQ/AVX-512 on this CPU: the vector code is not used")
	}
	for name, a := range implementations(t, make([]byte, 16)) {
		_, ok := a.(IVAEAD)
		if want := name == "default"; ok != want {
			t.Errorf("%s: implements IVAEAD %v, want %v", name, ok, want)
		}
	}
}
