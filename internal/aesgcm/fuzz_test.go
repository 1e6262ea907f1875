package aesgcm

import (
	"bytes"
	"testing"
)

// FuzzDifferential seals and opens with this package and crypto/cipher
// and requires identical results, including for a corrupted message.
func FuzzDifferential(f *testing.F) {
	f.Add(uint8(0), []byte("0123456789abcdef"), []byte("nonce-123456"), []byte("hello"), []byte("spi+seq!"), uint16(0))
	f.Add(uint8(2), bytes.Repeat([]byte{7}, 32), make([]byte, 12), bytes.Repeat([]byte{1}, 1400), []byte("12345678"), uint16(3))
	f.Add(uint8(0), make([]byte, 16), make([]byte, 12), []byte{}, bytes.Repeat([]byte{9}, 1500), uint16(700))
	f.Add(uint8(2), bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{0xff}, 12), bytes.Repeat([]byte{2}, 257), []byte{}, uint16(0xffff))
	f.Add(uint8(1), bytes.Repeat([]byte{5}, 24), []byte("abcdefghijkl"), bytes.Repeat([]byte{4}, 33), []byte("spi+seq+esn!"), uint16(100))
	f.Fuzz(func(t *testing.T, keySize uint8, keySeed, nonce, pt, aad []byte, flip uint16) {
		key := make([]byte, []int{16, 24, 32}[keySize%3])
		copy(key, keySeed)
		n := make([]byte, NonceSize)
		copy(n, nonce)
		a, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		ref := stdGCM(t, key)
		want := ref.Seal(nil, n, pt, aad)
		got := a.Seal(nil, n, pt, aad)
		if !bytes.Equal(got, want) {
			t.Fatalf("Seal = %x, want %x", got, want)
		}
		inPlace := append(bytes.Clone(pt), make([]byte, TagSize)...)
		if got := a.Seal(inPlace[:0], n, inPlace[:len(pt)], aad); !bytes.Equal(got, want) {
			t.Fatalf("in-place Seal = %x, want %x", got, want)
		}
		// Corrupt one bit (flip selects which; beyond the message, none).
		msg := bytes.Clone(want)
		if i := int(flip >> 3); i < len(msg) {
			msg[i] ^= 1 << (flip & 7)
		}
		gotPT, gotErr := a.Open(nil, n, msg, aad)
		wantPT, wantErr := ref.Open(nil, n, msg, aad)
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(gotPT, wantPT) {
			t.Fatalf("Open = %x, %v; crypto/cipher: %x, %v", gotPT, gotErr, wantPT, wantErr)
		}
		if gotErr == nil {
			inPlaceOpen, err := a.Open(msg[:0], n, msg, aad)
			if err != nil || !bytes.Equal(inPlaceOpen, wantPT) {
				t.Fatalf("in-place Open = %x, %v", inPlaceOpen, err)
			}
		}
	})
}
