package aesgcm

import (
	"bytes"
	mrand "math/rand/v2"
	"syscall"
	"testing"
)

// guardedTail returns an n-byte slice that ends where an inaccessible page
// begins: reading or writing one byte past it faults.
func guardedTail(t *testing.T, n int) []byte {
	t.Helper()
	page := syscall.Getpagesize()
	size := (n/page + 2) * page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[size-page:], syscall.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	return mem[size-page-n : size-page]
}

// TestNoOverread puts the plaintext, the ciphertext and the AAD right
// before a guard page: the vector code's partial blocks (byte-masked loads
// and stores) must not touch a byte past them.
func TestNoOverread(t *testing.T) {
	r := mrand.New(mrand.NewPCG(9, 10))
	for _, ks := range []int{16, 24, 32} {
		key := randBytes(r, ks)
		a, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		ref := stdGCM(t, key)
		for n := 0; n <= 300; n++ {
			nonce := randBytes(r, NonceSize)
			pt := randBytes(r, n)
			aad := randBytes(r, n%40)
			want := ref.Seal(nil, nonce, pt, aad)

			gpt, gaad := guardedTail(t, n), guardedTail(t, len(aad))
			copy(gpt, pt)
			copy(gaad, aad)
			out := guardedTail(t, n+TagSize)
			if got := a.Seal(out[:0], nonce, gpt, gaad); !bytes.Equal(got, want) {
				t.Fatalf("len %d: Seal at a page end differs", n)
			}
			// GMAC's shape: the packet as AAD, right before the guard.
			gmacWant := ref.Seal(nil, nonce, nil, pt)
			if got := a.Seal(nil, nonce, nil, gpt); !bytes.Equal(got, gmacWant) {
				t.Fatalf("len %d: GMAC at a page end differs", n)
			}
			dec := guardedTail(t, n)
			if got, err := a.Open(dec[:0], nonce, out, gaad); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("len %d: Open at a page end: %v", n, err)
			}
			// In place, at the page end.
			if got, err := a.Open(out[:0], nonce, out, gaad); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("len %d: in-place Open at a page end: %v", n, err)
			}
		}
	}
}
