package ikecrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
)

// testKeys are one key of each supported type, made once.
var testKeys = func() map[string]crypto.Signer {
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return map[string]crypto.Signer{"rsa": r, "p256": p256, "p384": p384, "p521": p521, "ed25519": ed}
}()

func TestSignVerify(t *testing.T) {
	all := SupportedSigHashes
	for _, tc := range []struct {
		key     string
		hashes  []uint16
		classic bool
		pss     bool
		want    SigScheme
	}{
		{"rsa", all, false, false, SigScheme{message.AuthDigitalSig, message.HashSHA2_256, false}},
		{"rsa", all, false, true, SigScheme{message.AuthDigitalSig, message.HashSHA2_256, true}},
		{"rsa", []uint16{message.HashSHA2_512}, false, true, SigScheme{message.AuthDigitalSig, message.HashSHA2_512, true}},
		{"rsa", []uint16{message.HashSHA2_384}, false, false, SigScheme{message.AuthDigitalSig, message.HashSHA2_384, false}},
		{"rsa", nil, false, false, SigScheme{Method: message.AuthRSASig}},
		{"rsa", all, true, false, SigScheme{Method: message.AuthRSASig}},
		{"p256", all, false, false, SigScheme{message.AuthDigitalSig, message.HashSHA2_256, false}},
		{"p384", all, false, false, SigScheme{message.AuthDigitalSig, message.HashSHA2_384, false}},
		{"p521", all, false, false, SigScheme{message.AuthDigitalSig, message.HashSHA2_512, false}},
		{"p384", []uint16{message.HashSHA2_256}, false, false, SigScheme{message.AuthDigitalSig, message.HashSHA2_256, false}},
		{"p256", nil, false, false, SigScheme{Method: message.AuthECDSA256}},
		{"p384", all, true, false, SigScheme{Method: message.AuthECDSA384}},
		{"p521", nil, false, false, SigScheme{Method: message.AuthECDSA521}},
		{"ed25519", all, false, false, SigScheme{message.AuthDigitalSig, message.HashIdentity, false}},
	} {
		name := tc.key + "/" + tc.want.String()
		t.Run(name, func(t *testing.T) {
			key := testKeys[tc.key]
			s, err := ChooseScheme(key.Public(), tc.hashes, tc.classic, tc.pss)
			if err != nil || s != tc.want {
				t.Fatalf("ChooseScheme = %+v, %v; want %+v", s, err, tc.want)
			}
			octets := []byte("the octets of RFC 7296 section 2.15")
			data, err := Sign(key, s, octets)
			if err != nil {
				t.Fatal(err)
			}
			got, err := VerifySignature(key.Public(), s.Method, data, octets)
			if err != nil || got != s {
				t.Fatalf("VerifySignature = %+v, %v; want %+v", got, err, s)
			}
			// Another message, a flipped bit of the signature, another key
			// of the same type: ErrBadSignature.
			if _, err := VerifySignature(key.Public(), s.Method, data, append(octets, 0)); !errors.Is(err, ErrBadSignature) {
				t.Errorf("other octets: %v", err)
			}
			bad := append([]byte(nil), data...)
			bad[len(bad)-1] ^= 1
			if _, err := VerifySignature(key.Public(), s.Method, bad, octets); !errors.Is(err, ErrBadSignature) {
				t.Errorf("flipped bit: %v", err)
			}
			other := map[string]string{"rsa": "rsa2", "p256": "p256b", "p384": "p384b", "p521": "p521b", "ed25519": "ed2"}[tc.key]
			if k := otherKey(t, other); k != nil {
				if _, err := VerifySignature(k.Public(), s.Method, data, octets); !errors.Is(err, ErrBadSignature) {
					t.Errorf("another key: %v", err)
				}
			}
			// A key of another type is refused, not verified.
			wrong := testKeys["rsa"]
			if tc.key == "rsa" {
				wrong = testKeys["p256"]
			}
			if _, err := VerifySignature(wrong.Public(), s.Method, data, octets); err == nil || errors.Is(err, ErrBadSignature) {
				t.Errorf("key of another type: %v", err)
			}
		})
	}
}

var otherKeys = map[string]crypto.Signer{}

func otherKey(t *testing.T, name string) crypto.Signer {
	if k, ok := otherKeys[name]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch name {
	case "rsa2":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "p256b":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384b":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521b":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed2":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	otherKeys[name] = k
	return k
}

func TestChooseSchemeErrors(t *testing.T) {
	for _, tc := range []struct {
		key     string
		hashes  []uint16
		classic bool
		pss     bool
		want    string
	}{
		{"ed25519", nil, false, false, "Ed25519 needs RFC 7427"},
		{"ed25519", []uint16{message.HashSHA2_256}, false, false, "Ed25519 needs RFC 7427"},
		{"ed25519", SupportedSigHashes, true, false, "Ed25519 needs RFC 7427"},
		{"rsa", nil, false, true, "RSASSA-PSS needs RFC 7427"},
		{"rsa", SupportedSigHashes, true, true, "RSASSA-PSS needs RFC 7427"},
	} {
		_, err := ChooseScheme(testKeys[tc.key].Public(), tc.hashes, tc.classic, tc.pss)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ChooseScheme(%s, %v, classic %v, pss %v) = %v, want %q", tc.key, tc.hashes, tc.classic, tc.pss, err, tc.want)
		}
	}
}

// TestAlgorithmIdentifiers checks the encodings against RFC 7427
// appendix A (and RFC 8420 for Ed25519).
func TestAlgorithmIdentifiers(t *testing.T) {
	for _, tc := range []struct {
		key string
		s   SigScheme
		hex string
	}{
		{"rsa", SigScheme{message.AuthDigitalSig, message.HashSHA2_256, false}, "300d06092a864886f70d01010b0500"},
		{"rsa", SigScheme{message.AuthDigitalSig, message.HashSHA2_512, false}, "300d06092a864886f70d01010d0500"},
		{"rsa", SigScheme{message.AuthDigitalSig, message.HashSHA2_256, true},
			"304606092a864886f70d01010a3039a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120a303020101"},
		{"p256", SigScheme{message.AuthDigitalSig, message.HashSHA2_256, false}, "300a06082a8648ce3d040302"},
		{"p384", SigScheme{message.AuthDigitalSig, message.HashSHA2_384, false}, "300a06082a8648ce3d040303"},
		{"p521", SigScheme{message.AuthDigitalSig, message.HashSHA2_512, false}, "300a06082a8648ce3d040304"},
		{"ed25519", SigScheme{message.AuthDigitalSig, message.HashIdentity, false}, "300506032b6570"},
	} {
		got, err := algorithmIdentifier(testKeys[tc.key].Public(), tc.s)
		if err != nil || hex.EncodeToString(got) != tc.hex {
			t.Errorf("%s %v: %x, %v; want %s", tc.key, tc.s, got, err, tc.hex)
		}
	}
}

func TestParseDigitalSigErrors(t *testing.T) {
	pub := testKeys["p256"].Public()
	ai, _ := hex.DecodeString("300a06082a8648ce3d040302")
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"length beyond data", []byte{20, 0x30}},
		{"no signature", append([]byte{byte(len(ai))}, ai...)},
		{"garbage identifier", []byte{3, 1, 2, 3, 9}},
		{"unknown algorithm", append([]byte{7}, append(mustHex("300506032b6571"), 1)...)},
		{"RSA identifier on an ECDSA key", append([]byte{15}, append(mustHex("300d06092a864886f70d01010b0500"), 1)...)},
	} {
		if _, _, _, _, err := ParseDigitalSig(pub, tc.data); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzVerifySignature feeds arbitrary AUTH data to the RFC 7427 parser and
// the verifiers: no panic, and nothing verifies.
func FuzzVerifySignature(f *testing.F) {
	octets := []byte("signed octets")
	for _, k := range []string{"rsa", "p256", "ed25519"} {
		s, _ := ChooseScheme(testKeys[k].Public(), SupportedSigHashes, false, k == "rsa")
		d, _ := Sign(testKeys[k], s, octets)
		f.Add(uint8(message.AuthDigitalSig), d)
	}
	d, _ := Sign(testKeys["p256"], SigScheme{Method: message.AuthECDSA256}, octets)
	f.Add(uint8(message.AuthECDSA256), d)
	f.Add(uint8(message.AuthDigitalSig), []byte{0})
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		for _, k := range []string{"rsa", "p256", "ed25519"} {
			if _, err := VerifySignature(testKeys[k].Public(), message.AuthMethod(method), data, []byte("other octets")); err == nil {
				t.Fatalf("%s: arbitrary data verified", k)
			}
		}
	})
}

// TestPSSWithoutTrailer verifies an RSASSA-PSS signature whose parameters
// omit the default trailer field (strict DER, as some peers send them).
func TestPSSWithoutTrailer(t *testing.T) {
	key := testKeys["rsa"]
	s := SigScheme{message.AuthDigitalSig, message.HashSHA2_256, true}
	octets := []byte("octets")
	data, err := Sign(key, s, octets)
	if err != nil {
		t.Fatal(err)
	}
	der := mustHex("304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120")
	sig := data[1+int(data[0]):]
	alt := append(append([]byte{byte(len(der))}, der...), sig...)
	if got, err := VerifySignature(key.Public(), message.AuthDigitalSig, alt, octets); err != nil || got != s {
		t.Fatalf("VerifySignature = %+v, %v", got, err)
	}
}

// BenchmarkSign and BenchmarkVerify measure one AUTH signature of each key
// type with its RFC 7427 scheme.
func BenchmarkSign(b *testing.B) {
	for _, k := range []string{"rsa", "p256", "p384", "ed25519"} {
		key := testKeys[k]
		s, _ := ChooseScheme(key.Public(), SupportedSigHashes, false, false)
		octets := make([]byte, 600)
		b.Run(k, func(b *testing.B) {
			for b.Loop() {
				if _, err := Sign(key, s, octets); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, k := range []string{"rsa", "p256", "p384", "ed25519"} {
		key := testKeys[k]
		s, _ := ChooseScheme(key.Public(), SupportedSigHashes, false, false)
		octets := make([]byte, 600)
		data, err := Sign(key, s, octets)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(k, func(b *testing.B) {
			for b.Loop() {
				if _, err := VerifySignature(key.Public(), s.Method, data, octets); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
