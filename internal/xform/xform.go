// Package xform holds the cryptographic transforms that ESP and AH share: the
// algorithm registry (strongSwan keywords, IKEv2 transform IDs, key sizes) and
// allocation-free integrity (HMAC with truncation, AES-GMAC).
package xform

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/goipsec/goipsec/internal/aesgcm"
)

// EncID is an IKEv2 encryption transform ID (IANA "Transform Type 1").
type EncID uint16

// Encryption transform IDs used by ESP.
const (
	EncrDES3             EncID = 3
	EncrNull             EncID = 11
	EncrAESCBC           EncID = 12
	EncrAESGCM16         EncID = 20
	EncrNullAuthAESGMAC  EncID = 21
	EncrChaCha20Poly1305 EncID = 28
)

// IntegID is an IKEv2 integrity transform ID (IANA "Transform Type 3").
type IntegID uint16

// Integrity transform IDs used by ESP and AH.
const (
	AuthNone          IntegID = 0
	AuthHMACMD596     IntegID = 1
	AuthHMACSHA196    IntegID = 2
	AuthAES128GMAC    IntegID = 9
	AuthAES192GMAC    IntegID = 10
	AuthAES256GMAC    IntegID = 11
	AuthHMACSHA256128 IntegID = 12
	AuthHMACSHA384192 IntegID = 13
	AuthHMACSHA512256 IntegID = 14
)

// Kind says how an encryption transform protects a packet.
type Kind uint8

// Transform kinds.
const (
	KindAEAD Kind = iota + 1 // combined mode: confidentiality and integrity (GCM, ChaCha20-Poly1305)
	KindGMAC                 // combined mode, integrity only (ENCR_NULL_AUTH_AES_GMAC)
	KindCBC                  // block cipher in CBC mode, needs a separate integrity transform
	KindNull                 // no confidentiality, needs a separate integrity transform
)

// Enc describes an ESP encryption transform.
type Enc struct {
	Name     string // strongSwan proposal keyword, e.g. "aes128gcm16"
	ID       EncID
	Kind     Kind
	KeyBits  int  // cipher key length, without salt
	SaltLen  int  // salt appended to the key (AEAD/GMAC keying material)
	IVLen    int  // explicit IV on the wire
	Block    int  // padding alignment of the encrypted part
	ICVLen   int  // tag length for combined modes, 0 otherwise
	Insecure bool // legacy algorithm: never in a default proposal
}

// KeyLen is the length of the keying material, salt included.
func (e *Enc) KeyLen() int { return e.KeyBits/8 + e.SaltLen }

// Integ describes an integrity transform.
type Integ struct {
	Name     string // strongSwan proposal keyword, e.g. "sha256"
	ID       IntegID
	KeyLen   int // key length (for GMAC: AES key plus 4-byte salt)
	ICVLen   int // truncated ICV length on the wire
	GMAC     bool
	Insecure bool // legacy algorithm: never in a default proposal
	newHash  func() hash.Hash
}

var encs = []*Enc{
	{Name: "aes128gcm16", ID: EncrAESGCM16, Kind: KindAEAD, KeyBits: 128, SaltLen: 4, IVLen: 8, Block: 4, ICVLen: 16},
	{Name: "aes192gcm16", ID: EncrAESGCM16, Kind: KindAEAD, KeyBits: 192, SaltLen: 4, IVLen: 8, Block: 4, ICVLen: 16},
	{Name: "aes256gcm16", ID: EncrAESGCM16, Kind: KindAEAD, KeyBits: 256, SaltLen: 4, IVLen: 8, Block: 4, ICVLen: 16},
	{Name: "chacha20poly1305", ID: EncrChaCha20Poly1305, Kind: KindAEAD, KeyBits: 256, SaltLen: 4, IVLen: 8, Block: 4, ICVLen: 16},
	{Name: "aes128gmac", ID: EncrNullAuthAESGMAC, Kind: KindGMAC, KeyBits: 128, SaltLen: 4, IVLen: 8, Block: 4, ICVLen: 16},
	{Name: "aes192gmac", ID: EncrNullAuthAESGMAC, Kind: KindGMAC, KeyBits: 192, SaltLen: 4, IVLen: 8, Block: 4, ICVLen: 16},
	{Name: "aes256gmac", ID: EncrNullAuthAESGMAC, Kind: KindGMAC, KeyBits: 256, SaltLen: 4, IVLen: 8, Block: 4, ICVLen: 16},
	{Name: "aes128", ID: EncrAESCBC, Kind: KindCBC, KeyBits: 128, IVLen: 16, Block: 16},
	{Name: "aes192", ID: EncrAESCBC, Kind: KindCBC, KeyBits: 192, IVLen: 16, Block: 16},
	{Name: "aes256", ID: EncrAESCBC, Kind: KindCBC, KeyBits: 256, IVLen: 16, Block: 16},
	{Name: "3des", ID: EncrDES3, Kind: KindCBC, KeyBits: 192, IVLen: 8, Block: 8, Insecure: true},
	{Name: "null", ID: EncrNull, Kind: KindNull, Block: 4},
}

var integs = []*Integ{
	{Name: "sha256", ID: AuthHMACSHA256128, KeyLen: 32, ICVLen: 16, newHash: sha256.New},
	{Name: "sha384", ID: AuthHMACSHA384192, KeyLen: 48, ICVLen: 24, newHash: sha512.New384},
	{Name: "sha512", ID: AuthHMACSHA512256, KeyLen: 64, ICVLen: 32, newHash: sha512.New},
	{Name: "sha1", ID: AuthHMACSHA196, KeyLen: 20, ICVLen: 12, Insecure: true, newHash: sha1.New},
	{Name: "md5", ID: AuthHMACMD596, KeyLen: 16, ICVLen: 12, Insecure: true, newHash: md5.New},
	{Name: "aes128gmac", ID: AuthAES128GMAC, KeyLen: 16 + 4, ICVLen: 16, GMAC: true},
	{Name: "aes192gmac", ID: AuthAES192GMAC, KeyLen: 24 + 4, ICVLen: 16, GMAC: true},
	{Name: "aes256gmac", ID: AuthAES256GMAC, KeyLen: 32 + 4, ICVLen: 16, GMAC: true},
}

// encAliases maps other spellings strongSwan accepts to the canonical keyword.
var encAliases = map[string]string{
	"aes128gcm128": "aes128gcm16", "aes192gcm128": "aes192gcm16", "aes256gcm128": "aes256gcm16",
	"aes128cbc": "aes128", "aes192cbc": "aes192", "aes256cbc": "aes256",
	"chacha20poly1305_16": "chacha20poly1305", "3descbc": "3des",
}

var integAliases = map[string]string{
	"sha2_256": "sha256", "sha2_384": "sha384", "sha2_512": "sha512",
	"hmacsha256128": "sha256", "sha1_96": "sha1", "md5_96": "md5",
}

// LookupEnc finds an encryption transform by its strongSwan keyword.
func LookupEnc(name string) (*Enc, error) {
	n := strings.ToLower(name)
	if a, ok := encAliases[n]; ok {
		n = a
	}
	for _, e := range encs {
		if e.Name == n {
			return e, nil
		}
	}
	return nil, fmt.Errorf("xform: unknown encryption algorithm %q", name)
}

// LookupInteg finds an integrity transform by its strongSwan keyword.
func LookupInteg(name string) (*Integ, error) {
	n := strings.ToLower(name)
	if a, ok := integAliases[n]; ok {
		n = a
	}
	for _, i := range integs {
		if i.Name == n {
			return i, nil
		}
	}
	return nil, fmt.Errorf("xform: unknown integrity algorithm %q", name)
}

// Encs lists every encryption transform.
func Encs() []*Enc { return append([]*Enc(nil), encs...) }

// Integs lists every integrity transform.
func Integs() []*Integ { return append([]*Integ(nil), integs...) }

// ErrKeyLen reports keying material of the wrong length.
var ErrKeyLen = errors.New("xform: wrong key length")

// NewAEAD returns the AEAD and the salt for a combined-mode transform
// (GCM, ChaCha20-Poly1305 or GMAC); key is the keying material with salt.
// AES-GCM and GMAC come from internal/aesgcm (vector code where the CPU has
// it, crypto/cipher otherwise).
func NewAEAD(e *Enc, key []byte) (cipher.AEAD, [4]byte, error) {
	var salt [4]byte
	if e.Kind != KindAEAD && e.Kind != KindGMAC {
		return nil, salt, fmt.Errorf("xform: %s is not a combined-mode transform", e.Name)
	}
	if len(key) != e.KeyLen() {
		return nil, salt, fmt.Errorf("%w: %s wants %d bytes (key and salt), got %d", ErrKeyLen, e.Name, e.KeyLen(), len(key))
	}
	k, s := key[:len(key)-4], key[len(key)-4:]
	copy(salt[:], s)
	if e.ID == EncrChaCha20Poly1305 {
		a, err := chacha20poly1305.New(k)
		return a, salt, err
	}
	a, err := aesgcm.New(k)
	return a, salt, err
}

// NewBlock returns the block cipher for a CBC transform.
func NewBlock(e *Enc, key []byte) (cipher.Block, error) {
	if len(key) != e.KeyLen() {
		return nil, fmt.Errorf("%w: %s wants %d bytes, got %d", ErrKeyLen, e.Name, e.KeyLen(), len(key))
	}
	switch e.ID {
	case EncrAESCBC:
		return aes.NewCipher(key)
	case EncrDES3:
		return des.NewTripleDESCipher(key)
	}
	return nil, fmt.Errorf("xform: %s is not a CBC transform", e.Name)
}

// MAC computes and checks a truncated HMAC. It is safe for concurrent use:
// each computation takes its own hash state from a free list.
type MAC struct {
	alg  *Integ
	free chan *MACState // idle states; a bounded free list, unlike sync.Pool never emptied by the GC
	key  []byte
}

// MACState is one HMAC computation in progress.
type MACState struct {
	h hash.Hash
}

// NewMAC returns an HMAC integrity transform keyed with key.
func NewMAC(alg *Integ, key []byte) (*MAC, error) {
	if alg.GMAC || alg.newHash == nil {
		return nil, fmt.Errorf("xform: %s is not an HMAC transform", alg.Name)
	}
	if len(key) != alg.KeyLen {
		return nil, fmt.Errorf("%w: %s wants %d bytes, got %d", ErrKeyLen, alg.Name, alg.KeyLen, len(key))
	}
	m := &MAC{alg: alg, key: append([]byte(nil), key...)}
	// Enough idle states for every P to hold one and a few in flight:
	// steady state then never allocates (sync.Pool would, when the GC
	// empties it or a goroutine migrates).
	n := 2*runtime.GOMAXPROCS(0) + 2
	m.free = make(chan *MACState, n)
	for range n {
		m.free <- m.newState()
	}
	return m, nil
}

func (m *MAC) newState() *MACState {
	return &MACState{h: hmac.New(m.alg.newHash, m.key)}
}

func (m *MAC) put(s *MACState) {
	select {
	case m.free <- s:
	default: // more states in flight than the list holds: let it go
	}
}

// ICVLen is the length of the truncated ICV.
func (m *MAC) ICVLen() int { return m.alg.ICVLen }

// Begin returns a reset state to write the authenticated data into.
func (m *MAC) Begin() *MACState {
	var s *MACState
	select {
	case s = <-m.free:
	default:
		s = m.newState()
	}
	s.h.Reset()
	return s
}

// Write adds data to the computation.
func (s *MACState) Write(b []byte) { s.h.Write(b) }

// Finish writes the truncated ICV into icv (len >= ICVLen) using scratch
// (cap >= 64) for the full digest, and releases s.
func (m *MAC) Finish(s *MACState, icv, scratch []byte) {
	sum := s.h.Sum(scratch[:0])
	copy(icv[:m.alg.ICVLen], sum)
	m.put(s)
}

// Verify reports in constant time whether icv is the truncated ICV of the
// data written to s, using scratch (cap >= 64), and releases s.
func (m *MAC) Verify(s *MACState, icv, scratch []byte) bool {
	sum := s.h.Sum(scratch[:0])
	ok := len(icv) == m.alg.ICVLen && subtle.ConstantTimeCompare(sum[:m.alg.ICVLen], icv) == 1
	m.put(s)
	return ok
}

// Zero overwrites the key copy; the MAC must not be used afterwards.
func (m *MAC) Zero() {
	clear(m.key)
}

// NewGMAC returns the AES-GCM instance and salt for AES-GMAC integrity
// (RFC 4543); key is the AES key followed by the 4-byte salt.
func NewGMAC(alg *Integ, key []byte) (cipher.AEAD, [4]byte, error) {
	var salt [4]byte
	if !alg.GMAC {
		return nil, salt, fmt.Errorf("xform: %s is not a GMAC transform", alg.Name)
	}
	if len(key) != alg.KeyLen {
		return nil, salt, fmt.Errorf("%w: %s wants %d bytes (key and salt), got %d", ErrKeyLen, alg.Name, alg.KeyLen, len(key))
	}
	copy(salt[:], key[len(key)-4:])
	a, err := aesgcm.New(key[:len(key)-4])
	return a, salt, err
}
