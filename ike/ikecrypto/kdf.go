package ikecrypto

import (
	"encoding/binary"
	"fmt"

	"github.com/goipsec/goipsec/internal/xform"
)

// SKEYSEED returns prf(Ni | Nr, g^ir) (RFC 7296 section 2.14). For
// AES-XCBC-PRF-128 only the first 64 bits of each nonce form the key.
func SKEYSEED(prf *PRF, ni, nr, sharedSecret []byte) []byte {
	if prf.ID == PRFAES128XCBC {
		ni, nr = ni[:min(len(ni), 8)], nr[:min(len(nr), 8)]
	}
	key := append(append(make([]byte, 0, len(ni)+len(nr)), ni...), nr...)
	return prf.Sum(key, sharedSecret)
}

// RekeySKEYSEED returns prf(SK_d, secrets[0] | secrets[1] | ... | Ni | Nr):
// the SKEYSEED of a rekeyed IKE SA (RFC 7296 section 2.18: the old SA's
// PRF and SK_d, the new g^ir and, with RFC 9370, the additional shared
// secrets in order; the new SA's keys then come from DeriveIKEKeys with the
// new SA's suite and SPIs), and SKEYSEED(n) of RFC 9370 section 2.2.2 after
// an IKE_INTERMEDIATE key exchange (SK_d(n-1), SK(n)).
func RekeySKEYSEED(prf *PRF, skd, ni, nr []byte, secrets ...[]byte) []byte {
	data := append(append([][]byte(nil), secrets...), ni, nr)
	return prf.Sum(skd, data...)
}

// IKEKeys are the keys of an IKE SA (RFC 7296 section 2.14).
type IKEKeys struct {
	D      []byte // SK_d: derives Child SA keys
	Ai, Ar []byte // SK_ai, SK_ar: integrity (empty with an AEAD)
	Ei, Er []byte // SK_ei, SK_er: encryption, salt included
	Pi, Pr []byte // SK_pi, SK_pr: AUTH payload computation
}

// Zero overwrites all keys.
func (k *IKEKeys) Zero() {
	for _, b := range [][]byte{k.D, k.Ai, k.Ar, k.Ei, k.Er, k.Pi, k.Pr} {
		clear(b)
	}
}

// DeriveIKEKeys splits prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) into the IKE SA
// keys with the lengths the suite needs (RFC 7296 section 2.14).
func DeriveIKEKeys(s *Suite, skeyseed, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	seed := make([]byte, 0, len(ni)+len(nr)+16)
	seed = append(append(seed, ni...), nr...)
	seed = binary.BigEndian.AppendUint64(seed, spii)
	seed = binary.BigEndian.AppendUint64(seed, spir)
	ia := 0
	if s.Integ != nil {
		ia = s.Integ.KeyLen
	}
	lens := []int{s.PRF.KeyLen, ia, ia, s.Encr.KeyLen(), s.Encr.KeyLen(), s.PRF.KeyLen, s.PRF.KeyLen}
	total := 0
	for _, l := range lens {
		total += l
	}
	km, err := s.PRF.Plus(skeyseed, seed, total)
	if err != nil {
		return nil, err
	}
	parts := split(km, lens)
	return &IKEKeys{D: parts[0], Ai: parts[1], Ar: parts[2], Ei: parts[3], Er: parts[4], Pi: parts[5], Pr: parts[6]}, nil
}

// split cuts b into consecutive parts of the given lengths; each part has
// its own capacity so that appending to one cannot overwrite the next.
func split(b []byte, lens []int) [][]byte {
	out := make([][]byte, len(lens))
	for i, l := range lens {
		out[i] = b[:l:l]
		b = b[l:]
	}
	return out
}

// NewIKECiphers returns the ciphers protecting the Encrypted payloads the
// initiator sends (SK_ei, SK_ai) and the responder sends (SK_er, SK_ar).
func NewIKECiphers(s *Suite, k *IKEKeys) (initiator, responder *Cipher, err error) {
	if initiator, err = NewCipher(s.Encr, k.Ei, s.Integ, k.Ai); err != nil {
		return nil, nil, err
	}
	if responder, err = NewCipher(s.Encr, k.Er, s.Integ, k.Ar); err != nil {
		return nil, nil, err
	}
	return initiator, responder, nil
}

// ChildKeys are the keys of a Child SA pair (RFC 7296 section 2.17). AEAD
// keys end with their salt, as internal/xform and esp expect.
type ChildKeys struct {
	EncI, IntegI []byte // SA carrying data from the initiator to the responder
	EncR, IntegR []byte // SA carrying data from the responder to the initiator
}

// Zero overwrites all keys.
func (k *ChildKeys) Zero() {
	for _, b := range [][]byte{k.EncI, k.IntegI, k.EncR, k.IntegR} {
		clear(b)
	}
}

// DeriveChildKeys returns the Child SA keys from KEYMAT = prf+(SK_d,
// secrets... | Ni | Nr), where secrets are the new g^ir for PFS (and the
// RFC 9370 additional shared secrets), or nothing. enc is nil for AH, integ
// nil for a combined-mode cipher. Keys of the initiator-to-responder SA come
// first, in each direction the encryption key before the integrity key.
func DeriveChildKeys(prf *PRF, skd []byte, enc *xform.Enc, integ *xform.Integ, ni, nr []byte, secrets ...[]byte) (*ChildKeys, error) {
	el, il := 0, 0
	if enc != nil {
		el = enc.KeyLen()
	}
	if integ != nil {
		il = integ.KeyLen
	}
	if el+il == 0 {
		return nil, fmt.Errorf("ikecrypto: Child SA without algorithms")
	}
	var seed []byte
	for _, s := range secrets {
		seed = append(seed, s...)
	}
	seed = append(append(seed, ni...), nr...)
	km, err := prf.Plus(skd, seed, 2*(el+il))
	clear(seed)
	if err != nil {
		return nil, err
	}
	p := split(km, []int{el, il, el, il})
	return &ChildKeys{EncI: p[0], IntegI: p[1], EncR: p[2], IntegR: p[3]}, nil
}
