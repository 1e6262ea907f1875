//go:build amd64 && !purego

package aesgcm

import (
	"bytes"
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

// TestWipe checks that Wipe leaves nothing of the key schedule or the hash
// key powers, and that the wiped AEAD's output matches neither the old key
// nor an all-zero one.
func TestWipe(t *testing.T) {
	if !hasVector {
		t.Skip("no VAES/VPCLMULQDQ/AVX-512 on this CPU: the vector code is not used")
	}
	r := mrand.New(mrand.NewPCG(21, 22))
	for _, ks := range []int{16, 32} {
		key := randBytes(r, ks)
		a, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		g := a.(*gcmVector)
		oldRK, oldTab := g.rk, g.tab
		nonce, pt := randBytes(r, NonceSize), randBytes(r, 100)
		before := a.Seal(nil, nonce, pt, nil)
		a.(Wiper).Wipe()
		for i := range g.rk {
			for j := 0; j+8 <= 32; j += 8 {
				if [8]byte(g.rk[i][j:j+8]) == [8]byte(oldRK[i][j:j+8]) {
					t.Fatalf("aes%d: round key %d bytes %d-%d survived the wipe", ks*8, i, j, j+8)
				}
			}
		}
		for i := range g.tab {
			if g.tab[i] == oldTab[i] {
				t.Fatalf("aes%d: hash key power %d survived the wipe", ks*8, i)
			}
		}
		zero, _ := New(make([]byte, ks))
		after := a.Seal(nil, nonce, pt, nil)
		if bytes.Equal(after, before) || bytes.Equal(after, zero.Seal(nil, nonce, pt, nil)) {
			t.Fatalf("aes%d: the wiped AEAD still seals with the old key or a zero key", ks*8)
		}
	}
}
