package kex

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAgreement runs both sides of every method and checks they agree, with
// values of the advertised lengths.
func TestAgreement(t *testing.T) {
	for _, m := range Methods() {
		t.Run(m.Name, func(t *testing.T) {
			ini, err := NewInitiator(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			res, err := NewResponder(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			pi := ini.PublicValue()
			if len(pi) != m.PublicLen || ini.Method() != m || res.Method() != m {
				t.Fatalf("initiator value of %d octets, want %d", len(pi), m.PublicLen)
			}
			sr, err := res.SharedSecret(pi)
			if err != nil {
				t.Fatal(err)
			}
			pr := res.PublicValue()
			if len(pr) != m.RespLen {
				t.Fatalf("responder value of %d octets, want %d", len(pr), m.RespLen)
			}
			si, err := ini.SharedSecret(pr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(si, sr) || len(si) == 0 {
				t.Fatal("shared secrets differ")
			}
			// One-step responder, and fresh keys every time.
			pub, sec, err := Respond(m.ID, pi)
			if err != nil || len(pub) != m.RespLen || len(sec) != len(si) || bytes.Equal(pub, pr) {
				t.Errorf("Respond: %v", err)
			}
			other, _ := NewInitiator(m.ID)
			if bytes.Equal(other.PublicValue(), pi) {
				t.Error("two initiators share a public value")
			}
			// Wrong lengths are refused.
			for _, v := range [][]byte{nil, pr[:len(pr)-1], append(bytes.Clone(pr), 0)} {
				if _, err := ini.SharedSecret(v); !errors.Is(err, ErrPublicValue) {
					t.Errorf("initiator accepted %d octets: %v", len(v), err)
				}
			}
			r2, _ := NewResponder(m.ID)
			for _, v := range [][]byte{nil, pi[:len(pi)-1], append(bytes.Clone(pi), 0)} {
				if _, err := r2.SharedSecret(v); !errors.Is(err, ErrPublicValue) {
					t.Errorf("responder accepted %d octets: %v", len(v), err)
				}
			}
		})
	}
	if _, err := NewInitiator(MLKEM512); err == nil {
		t.Error("ML-KEM-512 claimed")
	}
	if _, err := NewResponder(1); err == nil {
		t.Error("MODP 768 claimed")
	}
}

// TestMODPPrimes recomputes the RFC 3526 primes from their definition,
// p = 2^N - 2^(N-64) - 1 + 2^64 * ([2^(N-130) pi] + offset), with pi from
// Machin's formula, and checks they are safe primes.
func TestMODPPrimes(t *testing.T) {
	for _, g := range []struct {
		id     ID
		bits   int
		offset int64
	}{{MODP2048, 2048, 124476}, {MODP3072, 3072, 1690314}, {MODP4096, 4096, 240904}} {
		n := uint(g.bits)
		p := new(big.Int).Lsh(big.NewInt(1), n)
		p.Sub(p, new(big.Int).Lsh(big.NewInt(1), n-64))
		p.Sub(p, big.NewInt(1))
		f := piFloor(n - 130)
		f.Add(f, big.NewInt(g.offset))
		p.Add(p, f.Lsh(f, 64))
		grp := modpGroupOf(g.id)
		if grp.p.Cmp(p) != 0 {
			t.Errorf("group %d: prime differs from RFC 3526's definition", g.id)
		}
		q := new(big.Int).Rsh(p, 1)
		if !p.ProbablyPrime(8) || !q.ProbablyPrime(8) {
			t.Errorf("group %d: not a safe prime", g.id)
		}
		if grp.size*8 != g.bits {
			t.Errorf("group %d: size %d", g.id, grp.size)
		}
	}
}

// piFloor returns floor(2^k * pi), by Machin's formula
// pi = 16 atan(1/5) - 4 atan(1/239) in fixed point with guard bits.
func piFloor(k uint) *big.Int {
	prec := k + 64
	one := new(big.Int).Lsh(big.NewInt(1), prec)
	atanInv := func(x int64) *big.Int {
		sum := new(big.Int)
		x2 := big.NewInt(x * x)
		term := new(big.Int).Div(one, big.NewInt(x)) // 1/x
		for i := int64(0); term.Sign() != 0; i++ {
			d := new(big.Int).Div(term, big.NewInt(2*i+1))
			if i%2 == 0 {
				sum.Add(sum, d)
			} else {
				sum.Sub(sum, d)
			}
			term.Div(term, x2)
		}
		return sum
	}
	pi := new(big.Int).Mul(atanInv(5), big.NewInt(16))
	pi.Sub(pi, new(big.Int).Mul(atanInv(239), big.NewInt(4)))
	return pi.Rsh(pi, 64)
}

func TestMODPInvalid(t *testing.T) {
	m, _ := Lookup(MODP2048)
	e, err := newMODPWith(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := e.g.p
	enc := func(x *big.Int) []byte { return x.FillBytes(make([]byte, 256)) }
	for name, v := range map[string][]byte{
		"0":        make([]byte, 256),
		"1":        enc(big.NewInt(1)),
		"p-1":      enc(new(big.Int).Sub(p, big.NewInt(1))),
		"p":        enc(p),
		"2^2048-1": bytes.Repeat([]byte{0xff}, 256),
	} {
		if _, err := e.SharedSecret(v); !errors.Is(err, ErrPublicValue) {
			t.Errorf("public value %s accepted", name)
		}
	}
	if _, err := e.SharedSecret(enc(big.NewInt(2))); err != nil {
		t.Errorf("public value 2 refused: %v", err)
	}
	// A known exponent gives g^x: 2^10 = 1024.
	e, _ = newMODPWith(m, big.NewInt(10))
	if !bytes.Equal(e.PublicValue(), enc(big.NewInt(1024))) {
		t.Error("2^10 mod p")
	}
	// The shared secret keeps leading zeros: 2^10 = 1024, padded to 256.
	s, _ := e.SharedSecret(enc(big.NewInt(2)))
	if len(s) != 256 || !bytes.Equal(s, enc(big.NewInt(1024))) {
		t.Error("shared secret not padded to the prime's length")
	}
}

func TestECPInvalid(t *testing.T) {
	for _, id := range []ID{ECP256, ECP384, ECP521} {
		e, _ := NewInitiator(id)
		n := e.Method().PublicLen
		pub := e.PublicValue()
		bad := bytes.Clone(pub)
		bad[n-1] ^= 1 // y off the curve
		for name, v := range map[string][]byte{"zeros": make([]byte, n), "off curve": bad, "ones": bytes.Repeat([]byte{0xff}, n)} {
			if _, err := e.SharedSecret(v); !errors.Is(err, ErrPublicValue) {
				t.Errorf("%v: %s accepted", id, name)
			}
		}
	}
	x, _ := NewInitiator(Curve25519)
	if _, err := x.SharedSecret(make([]byte, 32)); !errors.Is(err, ErrPublicValue) {
		t.Error("X25519 low-order point accepted")
	}
}

func TestMLKEM(t *testing.T) {
	for _, id := range []ID{MLKEM768, MLKEM1024} {
		r, _ := NewResponder(id)
		if r.PublicValue() != nil && len(r.PublicValue()) != 0 {
			t.Error("responder has a value before encapsulating")
		}
		i, _ := NewInitiator(id)
		if _, err := r.SharedSecret(i.PublicValue()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.SharedSecret(i.PublicValue()); err == nil {
			t.Error("second encapsulation accepted")
		}
		// A corrupted ciphertext decapsulates to a different (implicit
		// rejection) key rather than failing.
		ct := r.PublicValue()
		good, _ := i.SharedSecret(ct)
		ct[0] ^= 1
		other, err := i.SharedSecret(ct)
		if err != nil || bytes.Equal(good, other) {
			t.Errorf("corrupted ciphertext: %v", err)
		}
		// An encapsulation key with a coefficient >= q is refused.
		ek := i.PublicValue()
		ek[0], ek[1] = 0xff, 0xff
		r2, _ := NewResponder(id)
		if _, err := r2.SharedSecret(ek); !errors.Is(err, ErrPublicValue) {
			t.Errorf("bad encapsulation key: %v", err)
		}
	}
}

type wpECDH struct {
	TestGroups []struct {
		Curve string `json:"curve"`
		Tests []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Public  string   `json:"public"`
			Private string   `json:"private"`
			Shared  string   `json:"shared"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadWycheproof(t *testing.T, name string) *wpECDH {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "wycheproof", name))
	if err != nil {
		t.Fatal(err)
	}
	var f wpECDH
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// spkiPoint extracts the public key bits of a DER SubjectPublicKeyInfo.
func spkiPoint(der []byte) ([]byte, bool) {
	s := cryptobyte.String(der)
	var spki, alg cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&spki, cbasn1.SEQUENCE) || !s.Empty() || !spki.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!spki.ReadASN1BitString(&bits) || !spki.Empty() || bits.BitLength%8 != 0 {
		return nil, false
	}
	return bits.Bytes, true
}

// TestWycheproofECDH runs the Wycheproof ECDH vectors whose public key IKE
// can carry (an uncompressed point becomes x || y): valid and acceptable
// ones must give the shared secret, invalid ones must be refused. Vectors
// that are invalid (or acceptable) only for their ASN.1 encoding or curve
// parameters, which IKE does not send, may go either way.
func TestWycheproofECDH(t *testing.T) {
	for _, tc := range []struct {
		file string
		id   ID
	}{{"ecdh_secp256r1_test.json", ECP256}, {"ecdh_secp384r1_test.json", ECP384}, {"ecdh_secp521r1_test.json", ECP521}} {
		m, _ := Lookup(tc.id)
		ran, refused := 0, 0
		for _, g := range loadWycheproof(t, tc.file).TestGroups {
			for _, v := range g.Tests {
				pt, ok := spkiPoint(unhex(t, v.Public))
				if !ok || len(pt) != 1+m.PublicLen || pt[0] != 4 {
					continue // compressed, malformed DER or not a point
				}
				priv := unhex(t, v.Private)
				// Wycheproof private keys may carry a leading zero octet or
				// be shorter than the order.
				size := (m.PublicLen / 2)
				for len(priv) > size && priv[0] == 0 {
					priv = priv[1:]
				}
				if len(priv) < size {
					priv = append(make([]byte, size-len(priv)), priv...)
				}
				e, err := newECDH(m, priv)
				if err != nil {
					t.Fatalf("%s tc %d: private key: %v", tc.file, v.TcID, err)
				}
				s, err := e.SharedSecret(pt[1:])
				switch {
				case v.Result == "invalid" && slices.ContainsFunc(v.Flags, func(f string) bool {
					return f == "UnnamedCurve" || f == "ModifiedGroup" || f == "InvalidEncoding"
				}) && err == nil:
					continue // the point is on our curve; the DER is what is wrong
				case v.Result == "invalid":
					if err == nil {
						t.Errorf("%s tc %d (%s): invalid public key accepted", tc.file, v.TcID, v.Comment)
					}
					refused++
				case err != nil && v.Result == "acceptable" && slices.Contains(v.Flags, "InvalidAsn"):
					continue // the DER change altered the point itself
				case err != nil || !bytes.Equal(s, unhex(t, v.Shared)):
					t.Errorf("%s tc %d (%s): %v", tc.file, v.TcID, v.Comment, err)
				}
				ran++
			}
		}
		t.Logf("%s: %d vectors ran, %d refused as invalid", tc.file, ran, refused)
		if ran < 300 || refused < 10 {
			t.Errorf("%s: %d vectors ran, %d refused", tc.file, ran, refused)
		}
	}
}

// TestWycheproofX25519 runs the Wycheproof X25519 vectors; an all-zero
// shared secret must be refused (RFC 8031 section 2.3).
func TestWycheproofX25519(t *testing.T) {
	m, _ := Lookup(Curve25519)
	ran, zero := 0, 0
	for _, g := range loadWycheproof(t, "x25519_test.json").TestGroups {
		for _, v := range g.Tests {
			e, err := newECDH(m, unhex(t, v.Private))
			if err != nil {
				t.Fatal(err)
			}
			want := unhex(t, v.Shared)
			s, err := e.SharedSecret(unhex(t, v.Public))
			switch {
			case bytes.Equal(want, make([]byte, 32)):
				if err == nil {
					t.Errorf("tc %d (%s): all-zero shared secret accepted", v.TcID, v.Comment)
				}
				zero++
			case v.Result == "invalid":
				if err == nil {
					t.Errorf("tc %d (%s): accepted", v.TcID, v.Comment)
				}
			case err != nil || !bytes.Equal(s, want):
				t.Errorf("tc %d (%s): %v", v.TcID, v.Comment, err)
			}
			ran++
		}
	}
	t.Logf("%d vectors ran, %d with all-zero secrets refused", ran, zero)
	if ran < 500 || zero < 5 {
		t.Errorf("%d vectors ran, %d with zero secrets", ran, zero)
	}
}

// TestStrongSwanKE replays the key exchanges recorded with charon: from our
// private key, package kex must produce the public value we sent and, with
// charon's value, the shared secret charon logged.
func TestStrongSwanKE(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "strongswan", "*.json"))
	checked := map[ID]bool{}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var c struct {
			KE         uint16 `json:"ke"`
			PrivateKey string `json:"private_key"`
			Messages   []struct {
				Dir string `json:"dir"`
				Hex string `json:"hex"`
			} `json:"messages"`
			StrongSwan map[string]string `json:"strongswan"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		if c.PrivateKey == "" {
			continue
		}
		// The last IKE_SA_INIT pair: ours and charon's KE payloads.
		n := len(c.Messages)
		mine, peer := keData(t, unhex(t, c.Messages[n-6].Hex)), keData(t, unhex(t, c.Messages[n-5].Hex))
		if strings.HasPrefix(c.Messages[n-6].Dir, "charon") {
			mine, peer = peer, mine // goipsec responded
		}
		m, err := Lookup(ID(c.KE))
		if err != nil {
			t.Fatal(err)
		}
		var e Exchange
		if m.ID == MODP2048 {
			e, err = newMODPWith(m, new(big.Int).SetBytes(unhex(t, c.PrivateKey)))
		} else {
			e, err = newECDH(m, unhex(t, c.PrivateKey))
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.PublicValue(), mine) {
			t.Errorf("%s: our public value differs from the one sent", f)
		}
		s, err := e.SharedSecret(peer)
		if err != nil || !bytes.Equal(s, unhex(t, c.StrongSwan["shared Diffie Hellman secret"])) {
			t.Errorf("%s: shared secret differs from charon's: %v", f, err)
		}
		checked[m.ID] = true
	}
	for _, id := range []ID{Curve25519, ECP256, ECP384, MODP2048} {
		if !checked[id] {
			t.Errorf("no strongSwan capture for %d", id)
		}
	}
}

// keData returns the KE payload data of an IKE_SA_INIT message, walking the
// payload chain without package message (which imports nothing of kex, but
// the test stays independent).
func keData(t *testing.T, msg []byte) []byte {
	s := cryptobyte.String(msg)
	var next uint8
	if !s.Skip(16) || !s.ReadUint8(&next) || !s.Skip(11) {
		t.Fatal("short message")
	}
	for next != 0 {
		cur := next
		var length uint16
		var body cryptobyte.String
		if !s.ReadUint8(&next) || !s.Skip(1) || !s.ReadUint16(&length) || !s.ReadBytes((*[]byte)(&body), int(length)-4) {
			t.Fatal("bad payload chain")
		}
		if cur == 34 {
			return body[4:]
		}
	}
	t.Fatal("no KE payload")
	return nil
}
