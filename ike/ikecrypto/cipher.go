package ikecrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/goipsec/goipsec/internal/xform"
)

// Reasons an Encrypted payload is rejected.
var (
	// ErrAuth: the integrity check failed.
	ErrAuth = errors.New("ikecrypto: integrity check failed")
	// ErrFormat: the encrypted payload is too short, misaligned or badly padded.
	ErrFormat = errors.New("ikecrypto: malformed encrypted payload")
	// ErrNotEncrypted: the message has no Encrypted payload.
	ErrNotEncrypted = errors.New("ikecrypto: message has no Encrypted payload")
)

// Cipher protects the Encrypted payloads one side of an IKE SA sends, with
// an AEAD (RFC 5282, RFC 7634) or with CBC and an HMAC (RFC 7296 section
// 3.14). It is safe for concurrent use.
type Cipher struct {
	encr   *Encr
	integ  *xform.Integ
	aead   cipher.AEAD  // AEAD modes; for GCM with an 8-octet ICV, 16-octet GCM truncated
	block  cipher.Block // CBC, and the AES block under truncated GCM
	salt   [4]byte
	mac    *xform.MAC
	icvLen int
	ivCtr  atomic.Uint64 // AEAD IVs: a counter from a random start
}

// NewCipher returns the cipher for an encryption key (SK_e, salt included
// for AEADs) and, for CBC modes, an integrity algorithm and key (SK_a).
func NewCipher(encr *Encr, encKey []byte, integ *xform.Integ, integKey []byte) (*Cipher, error) {
	if encr == nil {
		return nil, errors.New("ikecrypto: no encryption algorithm")
	}
	if len(encKey) != encr.KeyLen() {
		return nil, fmt.Errorf("ikecrypto: %s wants a %d-octet key, got %d", encr.Name, encr.KeyLen(), len(encKey))
	}
	c := &Cipher{encr: encr, integ: integ}
	key := encKey[:encr.KeyBits/8]
	var err error
	if encr.AEAD {
		if integ != nil {
			return nil, fmt.Errorf("ikecrypto: %s takes no integrity algorithm", encr.Name)
		}
		copy(c.salt[:], encKey[len(key):])
		c.icvLen = encr.ICVLen
		switch encr.ID {
		case xform.EncrChaCha20Poly1305:
			c.aead, err = chacha20poly1305.New(key)
		default:
			if c.block, err = aes.NewCipher(key); err != nil {
				return nil, err
			}
			if encr.ICVLen == 12 {
				c.aead, err = cipher.NewGCMWithTagSize(c.block, 12)
			} else {
				c.aead, err = cipher.NewGCM(c.block)
			}
		}
		if err != nil {
			return nil, err
		}
		var start [8]byte
		if _, err := rand.Read(start[:]); err != nil {
			return nil, err
		}
		c.ivCtr.Store(binary.BigEndian.Uint64(start[:]))
		return c, nil
	}
	if integ == nil || integ.GMAC {
		return nil, fmt.Errorf("ikecrypto: %s needs an HMAC integrity algorithm", encr.Name)
	}
	switch encr.ID {
	case xform.EncrAESCBC:
		c.block, err = aes.NewCipher(key)
	case xform.EncrDES3:
		c.block, err = des.NewTripleDESCipher(key)
	default:
		err = fmt.Errorf("ikecrypto: %s is not a CBC algorithm", encr.Name)
	}
	if err != nil {
		return nil, err
	}
	if c.mac, err = xform.NewMAC(integ, integKey); err != nil {
		return nil, err
	}
	c.icvLen = integ.ICVLen
	return c, nil
}

// Encr returns the encryption algorithm.
func (c *Cipher) Encr() *Encr { return c.encr }

// Zero overwrites the key material the cipher holds copies of and that it
// can reach; the cipher must not be used afterwards.
func (c *Cipher) Zero() {
	if c.mac != nil {
		c.mac.Zero()
	}
	clear(c.salt[:])
	c.aead, c.block, c.mac = nil, nil, nil
}

// SealedLen returns the length of the Encrypted payload body (IV,
// ciphertext with padding, ICV) for n octets of payloads.
func (c *Cipher) SealedLen(n int) int {
	padded := n + 1 // Pad Length octet
	if r := padded % c.encr.Block; r != 0 {
		padded += c.encr.Block - r
	}
	return c.encr.IVLen + padded + c.icvLen
}

// Overhead returns the largest number of octets SealedLen adds.
func (c *Cipher) Overhead() int { return c.encr.IVLen + c.encr.Block + c.icvLen }

// MaxPlaintext returns the largest payload length whose sealed body fits in
// n octets, or -1.
func (c *Cipher) MaxPlaintext(n int) int {
	room := n - c.encr.IVLen - c.icvLen
	room -= room % c.encr.Block
	return room - 1
}

// seal encrypts payloads into body (len SealedLen(len(payloads))); aad is
// the message from the IKE header up to the end of the Encrypted payload
// header, as it will be sent.
func (c *Cipher) seal(body, aad, payloads []byte) error {
	return c.sealIV(body, aad, payloads, nil)
}

// sealIV is seal with a fixed IV, for known-answer tests.
func (c *Cipher) sealIV(body, aad, payloads, fixedIV []byte) error {
	if len(body) != c.SealedLen(len(payloads)) {
		return fmt.Errorf("ikecrypto: sealed body of %d octets, want %d", len(body), c.SealedLen(len(payloads)))
	}
	ivl := c.encr.IVLen
	iv, rest := body[:ivl], body[ivl:]
	pt := rest[:len(rest)-c.icvLen]
	copy(pt, payloads)
	pad := len(pt) - len(payloads) - 1
	clear(pt[len(payloads) : len(pt)-1])
	pt[len(pt)-1] = byte(pad)
	switch {
	case fixedIV != nil:
		copy(iv, fixedIV)
	case c.aead != nil:
		binary.BigEndian.PutUint64(iv, c.ivCtr.Add(1))
	default:
		if _, err := rand.Read(iv); err != nil {
			return err
		}
	}
	if c.aead != nil {
		var nonce [12]byte
		copy(nonce[:4], c.salt[:])
		copy(nonce[4:], iv)
		if c.icvLen == 8 {
			// GCM with an 8-octet ICV: the tag is the first 8 octets of the
			// full one (NIST SP 800-38D, MSB_t).
			full := c.aead.Seal(nil, nonce[:], pt, aad)
			copy(rest, full[:len(rest)])
			return nil
		}
		c.aead.Seal(rest[:0], nonce[:], pt, aad)
		return nil
	}
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(pt, pt)
	var scratch [64]byte
	st := c.mac.Begin()
	st.Write(aad)
	st.Write(body[:len(body)-c.icvLen])
	c.mac.Finish(st, body[len(body)-c.icvLen:], scratch[:])
	return nil
}

// open authenticates and decrypts an Encrypted payload body and returns the
// payload chain without padding; aad is as for seal, as received.
func (c *Cipher) open(aad, body []byte) ([]byte, error) {
	ivl := c.encr.IVLen
	if len(body) < ivl+c.icvLen+1 {
		return nil, ErrFormat
	}
	iv := body[:ivl]
	ct := body[ivl : len(body)-c.icvLen]
	icv := body[len(body)-c.icvLen:]
	var pt []byte
	if c.aead != nil {
		var nonce [12]byte
		copy(nonce[:4], c.salt[:])
		copy(nonce[4:], iv)
		var err error
		if c.icvLen == 8 {
			pt, err = c.openGCM8(nonce[:], aad, ct, icv)
		} else {
			pt, err = c.aead.Open(nil, nonce[:], body[ivl:], aad)
		}
		if err != nil {
			return nil, ErrAuth
		}
	} else {
		if len(ct) == 0 || len(ct)%c.encr.Block != 0 {
			return nil, ErrFormat
		}
		var scratch [64]byte
		st := c.mac.Begin()
		st.Write(aad)
		st.Write(body[:len(body)-c.icvLen])
		if !c.mac.Verify(st, icv, scratch[:]) {
			return nil, ErrAuth
		}
		pt = make([]byte, len(ct))
		cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(pt, ct)
	}
	padLen := int(pt[len(pt)-1])
	if padLen+1 > len(pt) {
		clear(pt)
		return nil, ErrFormat
	}
	return pt[:len(pt)-1-padLen], nil
}

// openGCM8 opens AES-GCM with an 8-octet ICV: it decrypts with the GCM
// counter stream, re-seals the plaintext to get the full tag, and compares
// its first 8 octets in constant time before releasing the plaintext.
func (c *Cipher) openGCM8(nonce, aad, ct, icv []byte) ([]byte, error) {
	var ctr [16]byte
	copy(ctr[:12], nonce)
	ctr[15] = 2 // inc32(J0): the first counter block of the payload
	pt := make([]byte, len(ct))
	cipher.NewCTR(c.block, ctr[:]).XORKeyStream(pt, ct)
	full := c.aead.Seal(nil, nonce, pt, aad)
	if subtle.ConstantTimeCompare(full[len(ct):len(ct)+8], icv) != 1 {
		clear(pt)
		return nil, ErrAuth
	}
	return pt, nil
}
