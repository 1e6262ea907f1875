// Package aesgcm is AES-GCM for the ESP hot path (aes*gcm16, RFC 4106, and
// AES-GMAC, RFC 4543): on amd64 CPUs with VAES, VPCLMULQDQ and AVX-512 it
// runs its own vector assembly (AES on YMM, GHASH on ZMM registers);
// elsewhere, and with the purego build tag, it is the standard library's
// GCM, so behaviour is the same everywhere.
package aesgcm

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"unsafe"
)

const (
	// NonceSize is the GCM nonce length: ESP's 4-byte salt and 8-byte IV.
	NonceSize = 12
	// TagSize is the length of the authentication tag (ESP's ICV).
	TagSize = 16

	blockSize = 16
	// maxPlain is GCM's limit for a 12-byte nonce: 2^32-2 blocks.
	maxPlain = (1<<32 - 2) * blockSize
)

// errOpen is returned by Open when the tag does not authenticate.
var errOpen = errors.New("aesgcm: message authentication failed")

// forceGeneric makes New return the standard library's GCM even where the
// vector implementation is available (a test hook).
var forceGeneric = false

// New returns an AES-GCM AEAD (12-byte nonce, 16-byte tag) keyed with a
// 16-, 24- or 32-byte key: the vector code when the CPU has it, else
// crypto/cipher's GCM.
func New(key []byte) (cipher.AEAD, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("aesgcm: invalid key length %d", len(key))
	}
	if !forceGeneric {
		if a := newVector(key); a != nil {
			return a, nil
		}
	}
	return newGeneric(key)
}

// Accelerated reports whether New returns the vector implementation on this
// machine.
func Accelerated() bool { return hasVector && !forceGeneric }

func newGeneric(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aesgcm: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("aesgcm: %w", err)
	}
	return a, nil
}

// sliceForAppend extends in by n bytes, reallocating only when its capacity
// is short, and returns the whole slice and the n new bytes.
func sliceForAppend(in []byte, n int) (whole, tail []byte) {
	total := len(in) + n
	if cap(in) >= total {
		whole = in[:total]
	} else {
		whole = make([]byte, total)
		copy(whole, in)
	}
	return whole, whole[len(in):]
}

// anyOverlap reports whether x and y share memory.
func anyOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	x0, x1 := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&x[len(x)-1]))
	y0, y1 := uintptr(unsafe.Pointer(&y[0])), uintptr(unsafe.Pointer(&y[len(y)-1]))
	return x0 <= y1 && y0 <= x1
}

// inexactOverlap reports whether x and y share memory other than starting
// at the same byte (the only overlap of output and input Seal and Open
// allow: in place).
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	return anyOverlap(x, y)
}

// IVAEAD is implemented by the vector AEAD that New returns where the CPU
// has it: Seal and Open with the nonce in its two RFC 4106 (and RFC 4543)
// parts, the 4-byte salt that comes with the key and the packet's 8-byte
// explicit IV, so that a caller need not assemble the nonce in memory.
type IVAEAD interface {
	SealIV(dst []byte, salt *[4]byte, iv *[8]byte, plaintext, aad []byte) []byte
	OpenIV(dst []byte, salt *[4]byte, iv *[8]byte, ciphertext, aad []byte) ([]byte, error)
}

// Wiper is implemented by the vector AEAD: Wipe destroys its key material
// (the standard library's GCM, the fallback, offers no way to).
type Wiper interface{ Wipe() }
