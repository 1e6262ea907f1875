package ikecrypto

import (
	"crypto/aes"
	"crypto/hmac"
	"crypto/subtle"
	"fmt"
)

// Sum returns prf(key, data[0] | data[1] | ...).
func (p *PRF) Sum(key []byte, data ...[]byte) []byte {
	if p.newHash == nil {
		return xcbcPRF(key, data...)
	}
	h := hmac.New(p.newHash, key)
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

// Plus returns the first n octets of prf+(key, seed) (RFC 7296 section
// 2.13): T1 | T2 | ... with Tk = prf(key, Tk-1 | seed | k). At most 255
// blocks can be produced.
func (p *PRF) Plus(key, seed []byte, n int) ([]byte, error) {
	if n < 0 || n > 255*p.Size {
		return nil, fmt.Errorf("ikecrypto: prf+ of %d octets exceeds 255 blocks of %s", n, p.Name)
	}
	out := make([]byte, 0, n+p.Size)
	var t []byte
	for k := 1; len(out) < n; k++ {
		t = p.Sum(key, t, seed, []byte{byte(k)})
		out = append(out, t...)
	}
	clear(out[n:])
	clear(t)
	return out[:n:n], nil
}

// xcbcPRF is AES-XCBC-PRF-128 (RFC 4434): AES-XCBC-MAC (RFC 3566) with a
// key of any length, zero-padded when short and hashed when long.
func xcbcPRF(key []byte, data ...[]byte) []byte {
	var k [16]byte
	switch {
	case len(key) == 16:
		copy(k[:], key)
	case len(key) < 16:
		copy(k[:], key)
	default:
		var zero [16]byte
		k = xcbcMAC(zero[:], key)
	}
	var msg []byte
	for _, d := range data {
		msg = append(msg, d...)
	}
	out := xcbcMAC(k[:], msg)
	clear(k[:])
	return out[:]
}

// xcbcMAC is AES-XCBC-MAC (RFC 3566) with a 128-bit key, untruncated.
func xcbcMAC(key, msg []byte) [16]byte {
	c, _ := aes.NewCipher(key) // 16 octets: cannot fail
	var k1, k2, k3, e [16]byte
	for i := range 16 {
		k1[i], k2[i], k3[i] = 1, 2, 3
	}
	c.Encrypt(k1[:], k1[:])
	c.Encrypt(k2[:], k2[:])
	c.Encrypt(k3[:], k3[:])
	c1, _ := aes.NewCipher(k1[:])
	for len(msg) > 16 {
		subtle.XORBytes(e[:], e[:], msg[:16])
		c1.Encrypt(e[:], e[:])
		msg = msg[16:]
	}
	subtle.XORBytes(e[:len(msg)], e[:len(msg)], msg)
	if len(msg) == 16 {
		subtle.XORBytes(e[:], e[:], k2[:])
	} else {
		e[len(msg)] ^= 0x80
		subtle.XORBytes(e[:], e[:], k3[:])
	}
	c1.Encrypt(e[:], e[:])
	clear(k1[:])
	clear(k2[:])
	clear(k3[:])
	return e
}
