package ikecrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // classic RSA signatures (AUTH method 1)
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/goipsec/goipsec/ike/message"
)

// Signature authentication: RFC 7427 Digital Signature (AUTH method 14)
// and the classic methods of RFC 7296 (1, RSA) and RFC 4754 (9, 10, 11,
// ECDSA), over the octets of SignedOctets.

// ErrBadSignature reports an AUTH payload whose signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// Object identifiers of the RFC 7427 AlgorithmIdentifiers.
var (
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidRSAPSS        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidECDSASHA1     = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// sigHashes maps the SIGNATURE_HASH_ALGORITHMS identifiers to hashes
// (HashIdentity, Ed25519's, has none).
var sigHashes = map[uint16]crypto.Hash{
	message.HashSHA1: crypto.SHA1, message.HashSHA2_256: crypto.SHA256,
	message.HashSHA2_384: crypto.SHA384, message.HashSHA2_512: crypto.SHA512,
}

// SupportedSigHashes are the hashes goipsec announces in
// SIGNATURE_HASH_ALGORITHMS, as strongSwan does: SHA-2 and Identity (for
// Ed25519).
var SupportedSigHashes = []uint16{message.HashSHA2_256, message.HashSHA2_384, message.HashSHA2_512, message.HashIdentity}

// SigScheme is how an AUTH payload is signed: the method, and for Digital
// Signature the hash announced in SIGNATURE_HASH_ALGORITHMS and whether
// RSA keys use RSASSA-PSS.
type SigScheme struct {
	Method message.AuthMethod
	Hash   uint16 // message.Hash*; 0 for the classic methods
	PSS    bool
}

// String names the scheme for logs, as "ECDSA-P256 SHA-256 (RFC 7427)".
func (s SigScheme) String() string {
	h := map[uint16]string{message.HashSHA1: "SHA-1", message.HashSHA2_256: "SHA-256", message.HashSHA2_384: "SHA-384",
		message.HashSHA2_512: "SHA-512", message.HashIdentity: "Identity"}[s.Hash]
	switch s.Method {
	case message.AuthDigitalSig:
		p := ""
		if s.PSS {
			p = "RSASSA-PSS "
		}
		return p + h + " (RFC 7427)"
	case message.AuthRSASig:
		return "RSA PKCS#1 v1.5 SHA-1 (method 1)"
	case message.AuthECDSA256, message.AuthECDSA384, message.AuthECDSA521:
		return fmt.Sprintf("ECDSA (method %d)", s.Method)
	}
	return fmt.Sprintf("method %d", s.Method)
}

// ChooseScheme picks how key signs: RFC 7427 with a hash from peerHashes
// (the peer's SIGNATURE_HASH_ALGORITHMS; empty if it sent none), else the
// classic method of the key's type. classic forces the classic method; pss
// makes RSA keys sign with RSASSA-PSS (which needs RFC 7427).
func ChooseScheme(key crypto.PublicKey, peerHashes []uint16, classic, pss bool) (SigScheme, error) {
	has := func(h uint16) bool {
		for _, x := range peerHashes {
			if x == h {
				return true
			}
		}
		return false
	}
	var prefer []uint16
	var method message.AuthMethod
	switch k := key.(type) {
	case *rsa.PublicKey:
		prefer, method = []uint16{message.HashSHA2_256, message.HashSHA2_384, message.HashSHA2_512}, message.AuthRSASig
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			prefer, method = []uint16{message.HashSHA2_256, message.HashSHA2_384, message.HashSHA2_512}, message.AuthECDSA256
		case elliptic.P384():
			prefer, method = []uint16{message.HashSHA2_384, message.HashSHA2_512, message.HashSHA2_256}, message.AuthECDSA384
		case elliptic.P521():
			prefer, method = []uint16{message.HashSHA2_512, message.HashSHA2_384, message.HashSHA2_256}, message.AuthECDSA521
		default:
			return SigScheme{}, fmt.Errorf("ikecrypto: ECDSA curve %s is not supported for IKE", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		prefer = []uint16{message.HashIdentity}
	default:
		return SigScheme{}, fmt.Errorf("ikecrypto: %T keys are not supported for IKE", key)
	}
	if _, isRSA := key.(*rsa.PublicKey); pss && !isRSA {
		pss = false
	}
	if !classic {
		for _, h := range prefer {
			if has(h) {
				return SigScheme{Method: message.AuthDigitalSig, Hash: h, PSS: pss}, nil
			}
		}
	}
	switch {
	case method == 0:
		return SigScheme{}, fmt.Errorf("ikecrypto: Ed25519 needs RFC 7427 signatures with the Identity hash, which the peer does not announce (SIGNATURE_HASH_ALGORITHMS %v)", peerHashes)
	case pss:
		return SigScheme{}, fmt.Errorf("ikecrypto: RSASSA-PSS needs RFC 7427 signatures with a SHA-2 hash, which the peer does not announce (SIGNATURE_HASH_ALGORITHMS %v)", peerHashes)
	}
	return SigScheme{Method: method}, nil
}

// pssParams are RSASSA-PSS-params (RFC 4055 section 3.1).
type pssParams struct {
	Hash       pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:0"`
	MGF        pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:1"`
	SaltLength int                      `asn1:"optional,explicit,tag:2,default:20"`
	Trailer    int                      `asn1:"optional,explicit,tag:3,default:1"`
}

// pssParamsOut are RSASSA-PSS-params as RFC 7427 appendix A.4 writes them:
// with the trailer field, although it is the default.
type pssParamsOut struct {
	Hash       pkix.AlgorithmIdentifier `asn1:"explicit,tag:0"`
	MGF        pkix.AlgorithmIdentifier `asn1:"explicit,tag:1"`
	SaltLength int                      `asn1:"explicit,tag:2"`
	Trailer    int                      `asn1:"explicit,tag:3"`
}

var hashOIDs = map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA1: oidSHA1, crypto.SHA256: oidSHA256, crypto.SHA384: oidSHA384, crypto.SHA512: oidSHA512}

// algorithmIdentifier returns the DER AlgorithmIdentifier of a scheme for
// a key (RFC 7427 section 3).
func algorithmIdentifier(key crypto.PublicKey, s SigScheme) ([]byte, error) {
	h := sigHashes[s.Hash]
	ai := pkix.AlgorithmIdentifier{}
	switch key.(type) {
	case *rsa.PublicKey:
		if s.PSS {
			hashAI := pkix.AlgorithmIdentifier{Algorithm: hashOIDs[h], Parameters: asn1.NullRawValue}
			mgfParams, err := asn1.Marshal(hashAI)
			if err != nil {
				return nil, err
			}
			params, err := asn1.Marshal(pssParamsOut{Hash: hashAI,
				MGF:        pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfParams}},
				SaltLength: h.Size(), Trailer: 1})
			if err != nil {
				return nil, err
			}
			ai = pkix.AlgorithmIdentifier{Algorithm: oidRSAPSS, Parameters: asn1.RawValue{FullBytes: params}}
			break
		}
		oid := map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA1: oidSHA1WithRSA, crypto.SHA256: oidSHA256WithRSA,
			crypto.SHA384: oidSHA384WithRSA, crypto.SHA512: oidSHA512WithRSA}[h]
		ai = pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue}
	case *ecdsa.PublicKey:
		ai.Algorithm = map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA1: oidECDSASHA1, crypto.SHA256: oidECDSASHA256,
			crypto.SHA384: oidECDSASHA384, crypto.SHA512: oidECDSASHA512}[h]
	case ed25519.PublicKey:
		ai.Algorithm = oidEd25519
	}
	if ai.Algorithm == nil {
		return nil, fmt.Errorf("ikecrypto: no algorithm identifier for %s with a %T key", s, key)
	}
	return asn1.Marshal(ai)
}

// Sign returns the AUTH data of scheme s for signedOctets, made with key.
func Sign(key crypto.Signer, s SigScheme, signedOctets []byte) ([]byte, error) {
	pub := key.Public()
	switch s.Method {
	case message.AuthDigitalSig:
		ai, err := algorithmIdentifier(pub, s)
		if err != nil {
			return nil, err
		}
		if len(ai) > 255 {
			return nil, fmt.Errorf("ikecrypto: algorithm identifier of %d octets", len(ai))
		}
		var sig []byte
		if _, ok := pub.(ed25519.PublicKey); ok {
			if s.Hash != message.HashIdentity {
				return nil, fmt.Errorf("ikecrypto: Ed25519 signs with the Identity hash, not %s", s)
			}
			sig, err = key.Sign(rand.Reader, signedOctets, crypto.Hash(0))
		} else {
			sig, err = signHashed(key, sigHashes[s.Hash], s.PSS, signedOctets)
		}
		if err != nil {
			return nil, fmt.Errorf("ikecrypto: signing: %w", err)
		}
		out := append([]byte{byte(len(ai))}, ai...)
		return append(out, sig...), nil
	case message.AuthRSASig:
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("ikecrypto: method 1 (RSA) with a %T key", pub)
		}
		sig, err := signHashed(key, crypto.SHA1, false, signedOctets)
		if err != nil {
			return nil, fmt.Errorf("ikecrypto: signing: %w", err)
		}
		return sig, nil
	case message.AuthECDSA256, message.AuthECDSA384, message.AuthECDSA521:
		k, ok := pub.(*ecdsa.PublicKey)
		h, curve := classicECDSA(s.Method)
		if !ok || k.Curve != curve {
			return nil, fmt.Errorf("ikecrypto: method %d wants an ECDSA %s key", s.Method, curve.Params().Name)
		}
		der, err := signHashed(key, h, false, signedOctets)
		if err != nil {
			return nil, fmt.Errorf("ikecrypto: signing: %w", err)
		}
		var sig struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &sig); err != nil {
			return nil, fmt.Errorf("ikecrypto: ECDSA signature: %w", err)
		}
		n := (curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*n)
		sig.R.FillBytes(out[:n])
		sig.S.FillBytes(out[n:])
		return out, nil
	}
	return nil, fmt.Errorf("ikecrypto: cannot sign with AUTH method %d", s.Method)
}

func signHashed(key crypto.Signer, h crypto.Hash, pss bool, msg []byte) ([]byte, error) {
	if !h.Available() {
		return nil, fmt.Errorf("hash %v not available", h)
	}
	d := h.New()
	d.Write(msg)
	var opts crypto.SignerOpts = h
	if pss {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	return key.Sign(rand.Reader, d.Sum(nil), opts)
}

// classicECDSA returns the hash and curve of an RFC 4754 method.
func classicECDSA(m message.AuthMethod) (crypto.Hash, elliptic.Curve) {
	switch m {
	case message.AuthECDSA384:
		return crypto.SHA384, elliptic.P384()
	case message.AuthECDSA521:
		return crypto.SHA512, elliptic.P521()
	}
	return crypto.SHA256, elliptic.P256()
}

// ParseDigitalSig splits RFC 7427 AUTH data into the signature scheme it
// names and the signature, checking that the scheme suits pub.
func ParseDigitalSig(pub crypto.PublicKey, data []byte) (SigScheme, crypto.Hash, int, []byte, error) {
	s := SigScheme{Method: message.AuthDigitalSig}
	if len(data) < 1 || len(data) < 1+int(data[0]) {
		return s, 0, 0, nil, errors.New("ikecrypto: truncated RFC 7427 AUTH data")
	}
	aiDER, sig := data[1:1+int(data[0])], data[1+int(data[0]):]
	var ai pkix.AlgorithmIdentifier
	if rest, err := asn1.Unmarshal(aiDER, &ai); err != nil || len(rest) != 0 {
		return s, 0, 0, nil, fmt.Errorf("ikecrypto: malformed AlgorithmIdentifier in AUTH data (%v)", err)
	}
	if len(sig) == 0 {
		return s, 0, 0, nil, errors.New("ikecrypto: RFC 7427 AUTH data without a signature")
	}
	hashOf := func(h crypto.Hash) uint16 {
		for id, x := range sigHashes {
			if x == h {
				return id
			}
		}
		return 0
	}
	var h crypto.Hash
	salt := 0
	want := ""
	switch {
	case ai.Algorithm.Equal(oidSHA1WithRSA), ai.Algorithm.Equal(oidSHA256WithRSA), ai.Algorithm.Equal(oidSHA384WithRSA), ai.Algorithm.Equal(oidSHA512WithRSA):
		h = map[string]crypto.Hash{oidSHA1WithRSA.String(): crypto.SHA1, oidSHA256WithRSA.String(): crypto.SHA256,
			oidSHA384WithRSA.String(): crypto.SHA384, oidSHA512WithRSA.String(): crypto.SHA512}[ai.Algorithm.String()]
		want = "RSA"
	case ai.Algorithm.Equal(oidRSAPSS):
		var p pssParams
		if rest, err := asn1.Unmarshal(ai.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return s, 0, 0, nil, fmt.Errorf("ikecrypto: malformed RSASSA-PSS parameters (%v)", err)
		}
		h = crypto.SHA1
		if len(p.Hash.Algorithm) > 0 {
			h = 0
			for hh, oid := range hashOIDs {
				if oid.Equal(p.Hash.Algorithm) {
					h = hh
				}
			}
		}
		mgfHash := crypto.SHA1
		if len(p.MGF.Algorithm) > 0 {
			var mh pkix.AlgorithmIdentifier
			if !p.MGF.Algorithm.Equal(oidMGF1) {
				return s, 0, 0, nil, fmt.Errorf("ikecrypto: RSASSA-PSS mask generation %v is not MGF1", p.MGF.Algorithm)
			}
			if _, err := asn1.Unmarshal(p.MGF.Parameters.FullBytes, &mh); err != nil {
				return s, 0, 0, nil, fmt.Errorf("ikecrypto: malformed MGF1 parameters (%v)", err)
			}
			mgfHash = 0
			for hh, oid := range hashOIDs {
				if oid.Equal(mh.Algorithm) {
					mgfHash = hh
				}
			}
		}
		if h == 0 || mgfHash != h {
			return s, 0, 0, nil, errors.New("ikecrypto: RSASSA-PSS with an unsupported hash, or an MGF1 hash other than the message hash")
		}
		if p.Trailer != 1 || p.SaltLength < 0 {
			return s, 0, 0, nil, fmt.Errorf("ikecrypto: RSASSA-PSS trailer %d, salt length %d", p.Trailer, p.SaltLength)
		}
		salt, s.PSS, want = p.SaltLength, true, "RSA"
	case ai.Algorithm.Equal(oidECDSASHA1), ai.Algorithm.Equal(oidECDSASHA256), ai.Algorithm.Equal(oidECDSASHA384), ai.Algorithm.Equal(oidECDSASHA512):
		h = map[string]crypto.Hash{oidECDSASHA1.String(): crypto.SHA1, oidECDSASHA256.String(): crypto.SHA256,
			oidECDSASHA384.String(): crypto.SHA384, oidECDSASHA512.String(): crypto.SHA512}[ai.Algorithm.String()]
		want = "ECDSA"
	case ai.Algorithm.Equal(oidEd25519):
		want = "Ed25519"
		s.Hash = message.HashIdentity
	default:
		return s, 0, 0, nil, fmt.Errorf("ikecrypto: unsupported signature algorithm %v", ai.Algorithm)
	}
	if h != 0 {
		s.Hash = hashOf(h)
	}
	got := ""
	switch pub.(type) {
	case *rsa.PublicKey:
		got = "RSA"
	case *ecdsa.PublicKey:
		got = "ECDSA"
	case ed25519.PublicKey:
		got = "Ed25519"
	}
	if got != want {
		return s, 0, 0, nil, fmt.Errorf("ikecrypto: the peer signs with %s (%v) but its certificate holds a %T key", want, ai.Algorithm, pub)
	}
	return s, h, salt, sig, nil
}

// VerifySignature checks AUTH data of method m over signedOctets with pub,
// and returns the scheme the peer used. A signature that does not verify
// is ErrBadSignature.
func VerifySignature(pub crypto.PublicKey, m message.AuthMethod, data, signedOctets []byte) (SigScheme, error) {
	switch m {
	case message.AuthDigitalSig:
		s, h, salt, sig, err := ParseDigitalSig(pub, data)
		if err != nil {
			return s, err
		}
		if k, ok := pub.(ed25519.PublicKey); ok {
			if !ed25519.Verify(k, signedOctets, sig) {
				return s, fmt.Errorf("ikecrypto: %s: %w", s, ErrBadSignature)
			}
			return s, nil
		}
		if err := verifyHashed(pub, h, s.PSS, salt, signedOctets, sig); err != nil {
			return s, fmt.Errorf("ikecrypto: %s: %w", s, err)
		}
		return s, nil
	case message.AuthRSASig:
		s := SigScheme{Method: m}
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return s, fmt.Errorf("ikecrypto: AUTH method 1 (RSA) but the certificate holds a %T key", pub)
		}
		if err := verifyHashed(pub, crypto.SHA1, false, 0, signedOctets, data); err != nil {
			return s, fmt.Errorf("ikecrypto: %s: %w", s, err)
		}
		return s, nil
	case message.AuthECDSA256, message.AuthECDSA384, message.AuthECDSA521:
		s := SigScheme{Method: m}
		h, curve := classicECDSA(m)
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != curve {
			return s, fmt.Errorf("ikecrypto: AUTH method %d wants an ECDSA %s key, the certificate holds another", m, curve.Params().Name)
		}
		n := (curve.Params().BitSize + 7) / 8
		if len(data) != 2*n {
			return s, fmt.Errorf("ikecrypto: %s: %d octets of signature, want %d: %w", s, len(data), 2*n, ErrBadSignature)
		}
		d := h.New()
		d.Write(signedOctets)
		r, ss := new(big.Int).SetBytes(data[:n]), new(big.Int).SetBytes(data[n:])
		der, err := asn1.Marshal(struct{ R, S *big.Int }{r, ss})
		if err != nil || !ecdsa.VerifyASN1(k, d.Sum(nil), der) {
			return s, fmt.Errorf("ikecrypto: %s: %w", s, ErrBadSignature)
		}
		return s, nil
	}
	return SigScheme{Method: m}, fmt.Errorf("ikecrypto: AUTH method %d is not a signature method goipsec verifies", m)
}

func verifyHashed(pub crypto.PublicKey, h crypto.Hash, pss bool, salt int, msg, sig []byte) error {
	if h == 0 || !h.Available() {
		return errors.New("unsupported hash")
	}
	d := h.New()
	d.Write(msg)
	digest := d.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		var err error
		if pss {
			err = rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: salt, Hash: h})
		} else {
			err = rsa.VerifyPKCS1v15(k, h, digest, sig)
		}
		if err != nil {
			return ErrBadSignature
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return ErrBadSignature
		}
	default:
		return fmt.Errorf("%T keys are not supported", pub)
	}
	return nil
}
