package ikecrypto

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/goipsec/goipsec/internal/xform"
)

// Encryption transform IDs that IKE uses and internal/xform (ESP) does not.
const (
	EncrAESGCM8  xform.EncID = 18 // ENCR_AES_GCM_8 (RFC 5282)
	EncrAESGCM12 xform.EncID = 19 // ENCR_AES_GCM_12
)

// Encr describes an encryption algorithm for the IKE SA's Encrypted payload.
type Encr struct {
	Name     string // strongSwan proposal keyword, e.g. "aes128gcm16"
	ID       xform.EncID
	KeyBits  int  // cipher key length in bits, without salt
	KeyAttr  bool // the transform carries a Key Length attribute
	SaltLen  int  // salt appended to the key (AEAD)
	IVLen    int  // IV on the wire
	Block    int  // padding alignment of the plaintext
	ICVLen   int  // AEAD tag length; 0 for CBC (the integrity transform's)
	AEAD     bool // combined mode: no integrity transform
	Insecure bool // legacy: never in a default proposal
}

// KeyLen is the length of SK_ei/SK_er: cipher key and salt.
func (e *Encr) KeyLen() int { return e.KeyBits/8 + e.SaltLen }

var encrs = []*Encr{
	{Name: "aes128gcm16", ID: xform.EncrAESGCM16, KeyBits: 128, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 16, AEAD: true},
	{Name: "aes192gcm16", ID: xform.EncrAESGCM16, KeyBits: 192, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 16, AEAD: true},
	{Name: "aes256gcm16", ID: xform.EncrAESGCM16, KeyBits: 256, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 16, AEAD: true},
	{Name: "aes128gcm12", ID: EncrAESGCM12, KeyBits: 128, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 12, AEAD: true},
	{Name: "aes192gcm12", ID: EncrAESGCM12, KeyBits: 192, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 12, AEAD: true},
	{Name: "aes256gcm12", ID: EncrAESGCM12, KeyBits: 256, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 12, AEAD: true},
	{Name: "aes128gcm8", ID: EncrAESGCM8, KeyBits: 128, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 8, AEAD: true},
	{Name: "aes192gcm8", ID: EncrAESGCM8, KeyBits: 192, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 8, AEAD: true},
	{Name: "aes256gcm8", ID: EncrAESGCM8, KeyBits: 256, KeyAttr: true, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 8, AEAD: true},
	{Name: "chacha20poly1305", ID: xform.EncrChaCha20Poly1305, KeyBits: 256, SaltLen: 4, IVLen: 8, Block: 1, ICVLen: 16, AEAD: true},
	{Name: "aes128", ID: xform.EncrAESCBC, KeyBits: 128, KeyAttr: true, IVLen: 16, Block: 16},
	{Name: "aes192", ID: xform.EncrAESCBC, KeyBits: 192, KeyAttr: true, IVLen: 16, Block: 16},
	{Name: "aes256", ID: xform.EncrAESCBC, KeyBits: 256, KeyAttr: true, IVLen: 16, Block: 16},
	{Name: "3des", ID: xform.EncrDES3, KeyBits: 192, IVLen: 8, Block: 8, Insecure: true},
}

// Encrs lists the encryption algorithms for the IKE SA.
func Encrs() []*Encr { return append([]*Encr(nil), encrs...) }

// LookupEncr finds the IKE encryption algorithm for a transform ID and its
// Key Length attribute (0 when absent).
func LookupEncr(id xform.EncID, keyBits uint16) (*Encr, error) {
	for _, e := range encrs {
		if e.ID != id {
			continue
		}
		switch {
		case e.KeyAttr && int(keyBits) == e.KeyBits,
			!e.KeyAttr && (keyBits == 0 || int(keyBits) == e.KeyBits):
			return e, nil
		}
	}
	return nil, fmt.Errorf("ikecrypto: unsupported encryption algorithm %d with key length %d", id, keyBits)
}

// PRFID is a pseudorandom function transform ID (IANA "Transform Type 2").
type PRFID uint16

// PRF transform IDs.
const (
	PRFHMACMD5    PRFID = 1
	PRFHMACSHA1   PRFID = 2
	PRFAES128XCBC PRFID = 4
	PRFHMACSHA256 PRFID = 5
	PRFHMACSHA384 PRFID = 6
	PRFHMACSHA512 PRFID = 7
	PRFAES128CMAC PRFID = 8
)

// PRF describes a pseudorandom function.
type PRF struct {
	Name     string // strongSwan proposal keyword, e.g. "prfsha256"
	ID       PRFID
	Size     int  // output length in octets
	KeyLen   int  // preferred key length: the length of SK_d, SK_pi and SK_pr
	Insecure bool // legacy: never in a default proposal
	newHash  func() hash.Hash
}

var prfs = []*PRF{
	{Name: "prfsha256", ID: PRFHMACSHA256, Size: 32, KeyLen: 32, newHash: sha256.New},
	{Name: "prfsha384", ID: PRFHMACSHA384, Size: 48, KeyLen: 48, newHash: sha512.New384},
	{Name: "prfsha512", ID: PRFHMACSHA512, Size: 64, KeyLen: 64, newHash: sha512.New},
	{Name: "prfsha1", ID: PRFHMACSHA1, Size: 20, KeyLen: 20, Insecure: true, newHash: sha1.New},
	{Name: "prfaesxcbc", ID: PRFAES128XCBC, Size: 16, KeyLen: 16},
}

// PRFs lists the supported pseudorandom functions.
func PRFs() []*PRF { return append([]*PRF(nil), prfs...) }

// LookupPRF finds a pseudorandom function by transform ID.
func LookupPRF(id PRFID) (*PRF, error) {
	for _, p := range prfs {
		if p.ID == id {
			return p, nil
		}
	}
	return nil, fmt.Errorf("ikecrypto: unsupported PRF %d", id)
}

// LookupInteg finds an HMAC integrity algorithm usable for the IKE SA by
// transform ID, in internal/xform's registry.
func LookupInteg(id xform.IntegID) (*xform.Integ, error) {
	for _, i := range xform.Integs() {
		if i.ID == id && !i.GMAC {
			return i, nil
		}
	}
	return nil, fmt.Errorf("ikecrypto: unsupported integrity algorithm %d", id)
}

// Suite is the set of algorithms of an IKE SA.
type Suite struct {
	Encr  *Encr
	Integ *xform.Integ // nil with an AEAD
	PRF   *PRF
}

// check reports a suite whose parts do not fit together.
func (s *Suite) check() error {
	switch {
	case s.Encr == nil || s.PRF == nil:
		return fmt.Errorf("ikecrypto: suite lacks encryption or PRF")
	case s.Encr.AEAD && s.Integ != nil:
		return fmt.Errorf("ikecrypto: %s is an AEAD and takes no integrity algorithm", s.Encr.Name)
	case !s.Encr.AEAD && (s.Integ == nil || s.Integ.GMAC):
		return fmt.Errorf("ikecrypto: %s needs an HMAC integrity algorithm", s.Encr.Name)
	}
	return nil
}
