package ikecrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/internal/xform"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// cipherPair returns two ciphers with the same random keys: one to seal, one
// to open, as the two ends of an IKE SA use them.
func cipherPair(t testing.TB, e *Encr, in *xform.Integ) (*Cipher, *Cipher) {
	t.Helper()
	ek := randBytes(e.KeyLen())
	var ik []byte
	if in != nil {
		ik = randBytes(in.KeyLen)
	}
	a, err := NewCipher(e, ek, in, ik)
	if err != nil {
		t.Fatalf("%s: %v", e.Name, err)
	}
	b, err := NewCipher(e, ek, in, ik)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// allCiphers lists every encryption algorithm, CBC ones with every HMAC.
func allCiphers(t testing.TB) []struct {
	name string
	e    *Encr
	i    *xform.Integ
} {
	var out []struct {
		name string
		e    *Encr
		i    *xform.Integ
	}
	for _, e := range Encrs() {
		if e.AEAD {
			out = append(out, struct {
				name string
				e    *Encr
				i    *xform.Integ
			}{e.Name, e, nil})
			continue
		}
		for _, id := range []xform.IntegID{xform.AuthHMACSHA196, xform.AuthHMACSHA256128, xform.AuthHMACSHA384192, xform.AuthHMACSHA512256} {
			in, err := LookupInteg(id)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, struct {
				name string
				e    *Encr
				i    *xform.Integ
			}{e.Name + "-" + in.Name, e, in})
		}
	}
	return out
}

func sampleMessage() *message.Message {
	return &message.Message{
		SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, Exchange: message.IKEAuth,
		Flags: message.FlagInitiator, MessageID: 1,
		Payloads: []message.Payload{
			&message.IDi{Identity: message.FQDNIdentity("a.example.org")},
			&message.Auth{Method: message.AuthSharedKey, Data: randBytes(32)},
			&message.SA{Proposals: []message.Proposal{{Number: 1, Protocol: message.ProtoESP, SPI: []byte{1, 2, 3, 4},
				Transforms: []message.Transform{{Type: message.TransformEncr, ID: 20, KeyLength: 128}, {Type: message.TransformESN}}}}},
			&message.TSi{Selectors: []message.TrafficSelector{{Type: message.TSIPv4AddrRange, EndPort: 0xffff,
				Start: netip.MustParseAddr("10.1.0.1"), End: netip.MustParseAddr("10.1.0.1")}}},
			&message.TSr{Selectors: []message.TrafficSelector{{Type: message.TSIPv4AddrRange, EndPort: 0xffff,
				Start: netip.MustParseAddr("10.1.0.2"), End: netip.MustParseAddr("10.1.0.2")}}},
			message.NewNotify(message.InitialContact, nil),
		},
	}
}

func TestEncryptDecryptAll(t *testing.T) {
	for _, tc := range allCiphers(t) {
		t.Run(tc.name, func(t *testing.T) {
			seal, open := cipherPair(t, tc.e, tc.i)
			m := sampleMessage()
			wire, err := Encrypt(m, seal)
			if err != nil {
				t.Fatal(err)
			}
			_, plain, _ := message.MarshalPayloads(m.Payloads)
			if want := message.HeaderLen + message.GenericHeaderLen + seal.SealedLen(len(plain)); len(wire) != want {
				t.Errorf("message of %d octets, want %d", len(wire), want)
			}
			if ct := seal.SealedLen(len(plain)) - tc.e.IVLen - seal.icvLen; ct%tc.e.Block != 0 || ct < len(plain)+1 || ct > len(plain)+tc.e.Block {
				t.Errorf("ciphertext of %d octets for %d", ct, len(plain))
			}
			got, err := Decrypt(wire, open)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip:\n%+v\nwant\n%+v", got, m)
			}
			// A second encryption uses a fresh IV.
			wire2, _ := Encrypt(m, seal)
			iv := message.HeaderLen + message.GenericHeaderLen
			if bytes.Equal(wire[iv:iv+tc.e.IVLen], wire2[iv:iv+tc.e.IVLen]) {
				t.Error("IV repeated")
			}
			// Every flipped octet after the header is caught; header
			// changes are caught by the parser or the integrity check.
			for i := range wire {
				bad := bytes.Clone(wire)
				bad[i] ^= 0x01
				if _, err := Decrypt(bad, open); err == nil {
					t.Fatalf("flipped octet %d accepted", i)
				}
			}
			// The other direction's key does not open it.
			other, _ := cipherPair(t, tc.e, tc.i)
			if _, err := Decrypt(wire, other); !errors.Is(err, ErrAuth) {
				t.Errorf("wrong key: %v", err)
			}
		})
	}
}

// TestOpenMalformed feeds bodies that are too short, misaligned or carry a
// pad length beyond the plaintext.
func TestOpenMalformed(t *testing.T) {
	for _, tc := range allCiphers(t) {
		_, c := cipherPair(t, tc.e, tc.i)
		aad := make([]byte, 32)
		for n := 0; n < tc.e.IVLen+c.icvLen+tc.e.Block+2; n++ {
			if _, err := c.open(aad, make([]byte, n)); err == nil {
				t.Errorf("%s: %d-octet body accepted", tc.name, n)
			}
		}
		// A correctly authenticated plaintext whose pad length exceeds it.
		body := make([]byte, c.SealedLen(0))
		if err := c.seal(body, aad, nil); err != nil {
			t.Fatal(err)
		}
		if pt, err := c.open(aad, body); err != nil || len(pt) != 0 {
			t.Errorf("%s: empty payload chain: %x %v", tc.name, pt, err)
		}
		forged := forgePadLen(t, c, aad, 0xff)
		if _, err := c.open(aad, forged); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: pad length beyond plaintext: %v", tc.name, err)
		}
	}
}

// forgePadLen builds a valid body whose plaintext is one block (or one octet
// for AEADs) ending in padLen.
func forgePadLen(t *testing.T, c *Cipher, aad []byte, padLen byte) []byte {
	n := c.encr.Block
	pt := make([]byte, n)
	pt[n-1] = padLen
	iv := randBytes(c.encr.IVLen)
	body := append([]byte(nil), iv...)
	if c.aead != nil {
		var nonce [12]byte
		copy(nonce[:], c.salt[:])
		copy(nonce[4:], iv)
		sealed := c.aead.Seal(nil, nonce[:], pt, aad)
		return append(body, sealed[:len(pt)+c.icvLen]...)
	}
	ct := make([]byte, n)
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(ct, pt)
	body = append(body, ct...)
	body = append(body, make([]byte, c.icvLen)...)
	var scratch [64]byte
	st := c.mac.Begin()
	st.Write(aad)
	st.Write(body[:len(body)-c.icvLen])
	c.mac.Finish(st, body[len(body)-c.icvLen:], scratch[:])
	return body
}

// TestGCM8Tag checks that the 8-octet ICV is the truncated GCM tag, computed
// independently with crypto/cipher.
func TestGCM8Tag(t *testing.T) {
	for _, bits := range []uint16{128, 192, 256} {
		e, err := LookupEncr(EncrAESGCM8, bits)
		if err != nil {
			t.Fatal(err)
		}
		key := randBytes(e.KeyLen())
		c, _ := NewCipher(e, key, nil, nil)
		aad, pt := randBytes(40), randBytes(77)
		body := make([]byte, c.SealedLen(len(pt)))
		if err := c.seal(body, aad, pt); err != nil {
			t.Fatal(err)
		}
		block, _ := aes.NewCipher(key[:bits/8])
		gcm, _ := cipher.NewGCM(block)
		nonce := append(append([]byte(nil), key[bits/8:]...), body[:8]...)
		padded := append(bytes.Clone(pt), 0) // Pad Length 0
		full := gcm.Seal(nil, nonce, padded, aad)
		if !bytes.Equal(body[8:], full[:len(padded)+8]) {
			t.Errorf("AES-%d-GCM-8 body differs from truncated GCM", bits)
		}
		got, err := c.open(aad, body)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("open: %v", err)
		}
		body[len(body)-1] ^= 1
		if _, err := c.open(aad, body); !errors.Is(err, ErrAuth) {
			t.Errorf("bad tag: %v", err)
		}
	}
}

// TestCBCChecksum recomputes the HMAC over the whole message independently.
func TestCBCChecksum(t *testing.T) {
	e, _ := LookupEncr(12, 128)
	in, _ := LookupInteg(xform.AuthHMACSHA256128)
	ik := randBytes(32)
	c, err := NewCipher(e, randBytes(16), in, ik)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := Encrypt(sampleMessage(), c)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, ik)
	mac.Write(wire[:len(wire)-16])
	if !bytes.Equal(mac.Sum(nil)[:16], wire[len(wire)-16:]) {
		t.Error("ICV is not HMAC-SHA-256-128 over the message")
	}
}

func TestNewCipherErrors(t *testing.T) {
	gcm, _ := LookupEncr(20, 128)
	cbc, _ := LookupEncr(12, 128)
	sha, _ := LookupInteg(xform.AuthHMACSHA256128)
	gmac, _ := xform.LookupInteg("aes128gmac")
	for name, f := range map[string]func() error{
		"short key":     func() error { _, err := NewCipher(gcm, make([]byte, 16), nil, nil); return err },
		"aead+integ":    func() error { _, err := NewCipher(gcm, make([]byte, 20), sha, make([]byte, 32)); return err },
		"cbc no integ":  func() error { _, err := NewCipher(cbc, make([]byte, 16), nil, nil); return err },
		"cbc gmac":      func() error { _, err := NewCipher(cbc, make([]byte, 16), gmac, make([]byte, 20)); return err },
		"cbc short mac": func() error { _, err := NewCipher(cbc, make([]byte, 16), sha, make([]byte, 16)); return err },
		"nil":           func() error { _, err := NewCipher(nil, nil, nil, nil); return err },
	} {
		if f() == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := LookupEncr(12, 0); err == nil {
		t.Error("AES-CBC without key length accepted")
	}
	if _, err := LookupEncr(28, 256); err != nil {
		t.Error("ChaCha20-Poly1305 with a 256-bit Key Length attribute refused")
	}
	if _, err := LookupEncr(20, 64); err == nil {
		t.Error("AES-GCM with 64-bit key accepted")
	}
}

func TestDecryptNotEncrypted(t *testing.T) {
	_, c := cipherPair(t, Encrs()[0], nil)
	m := &message.Message{Exchange: message.Informational, Payloads: []message.Payload{message.NewNotify(message.InitialContact, nil)}}
	wire, _ := m.Marshal()
	if _, err := Decrypt(wire, c); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("cleartext: %v", err)
	}
	m.Payloads = nil
	wire, _ = m.Marshal()
	if _, err := Decrypt(wire, c); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("empty: %v", err)
	}
	if _, err := Decrypt(wire[:10], c); err == nil {
		t.Error("truncated accepted")
	}
}

// TestEncryptedWithCleartextPayloads covers payloads before the Encrypted
// payload: they are authenticated too.
func TestEncryptedWithCleartextPayloads(t *testing.T) {
	seal, open := cipherPair(t, Encrs()[0], nil)
	inner := &message.Message{Exchange: message.Informational, MessageID: 3,
		Payloads: []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPIs: []uint32{0xc0ffee01}}}}
	first, plain, _ := message.MarshalPayloads(inner.Payloads)
	vid := &message.VendorID{Data: []byte("goipsec")}
	outer := *inner
	outer.Payloads = []message.Payload{vid, &message.Encrypted{NextPayload: first, Body: make([]byte, seal.SealedLen(len(plain)))}}
	wire, _ := outer.Marshal()
	split := len(wire) - seal.SealedLen(len(plain))
	if err := seal.seal(wire[split:], wire[:split], plain); err != nil {
		t.Fatal(err)
	}
	m, err := Decrypt(wire, open)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Payloads) != 2 || !reflect.DeepEqual(m.Payloads[0], vid) || !reflect.DeepEqual(m.Payloads[1], inner.Payloads[0]) {
		t.Errorf("payloads %+v", m.Payloads)
	}
	i := bytes.Index(wire, []byte("goipsec"))
	wire[i] ^= 0x20
	if _, err := Decrypt(wire, open); !errors.Is(err, ErrAuth) {
		t.Errorf("changed cleartext payload: %v", err)
	}
}

func TestFragments(t *testing.T) {
	for _, tc := range allCiphers(t)[:4] {
		seal, open := cipherPair(t, tc.e, tc.i)
		m := sampleMessage()
		m.Payloads = append(m.Payloads, &message.Cert{Encoding: message.CertX509Sig, Data: randBytes(1500)})
		frags, err := EncryptFragments(m, seal, 400)
		if err != nil {
			t.Fatal(err)
		}
		if len(frags) < 5 {
			t.Errorf("%s: %d fragments", tc.name, len(frags))
		}
		var got []*Fragment
		for i, w := range frags {
			if len(w) > 400 {
				t.Errorf("%s: fragment %d of %d octets", tc.name, i+1, len(w))
			}
			hdr, f, err := DecryptFragment(w, open)
			if err != nil {
				t.Fatalf("%s: fragment %d: %v", tc.name, i+1, err)
			}
			if hdr.MessageID != m.MessageID || hdr.Exchange != m.Exchange || int(f.Total) != len(frags) || int(f.Number) != i+1 {
				t.Errorf("%s: fragment %d header %+v %+v", tc.name, i+1, hdr, f)
			}
			got = append(got, f)
		}
		ps, err := Reassemble(got)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ps, m.Payloads) {
			t.Errorf("%s: reassembled payloads differ", tc.name)
		}
		got[0], got[1] = got[1], got[0]
		if _, err := Reassemble(got); !errors.Is(err, ErrFragments) {
			t.Errorf("out of order: %v", err)
		}
		if _, err := Reassemble(got[:0]); !errors.Is(err, ErrFragments) {
			t.Errorf("none: %v", err)
		}
		// A fragment is not a whole message and vice versa.
		if _, err := Decrypt(frags[0], open); !errors.Is(err, ErrNotEncrypted) {
			t.Errorf("fragment decrypted as message: %v", err)
		}
		whole, _ := Encrypt(m, seal)
		if _, _, err := DecryptFragment(whole, open); !errors.Is(err, ErrNotEncrypted) {
			t.Errorf("message decrypted as fragment: %v", err)
		}
	}
	seal, _ := cipherPair(t, Encrs()[0], nil)
	if _, err := EncryptFragments(sampleMessage(), seal, 60); err == nil {
		t.Error("fragment size without room accepted")
	}
}

func TestSharedKeyAuth(t *testing.T) {
	for _, p := range PRFs() {
		secret := []byte("correct horse battery staple, long enough to exceed a block")
		skp := randBytes(p.KeyLen)
		id := message.FQDNIdentity("a.example.org")
		msg1, nonce := randBytes(300), randBytes(32)
		octets := SignedOctets(p, skp, msg1, nonce, &id, nil)
		want := append(append(append([]byte(nil), msg1...), nonce...), p.Sum(skp, []byte{2, 0, 0, 0}, []byte("a.example.org"))...)
		if !bytes.Equal(octets, want) {
			t.Errorf("%s: signed octets", p.Name)
		}
		if got := SignedOctets(p, skp, msg1, nonce, &id, []byte("intauth")); !bytes.Equal(got, append(want, "intauth"...)) {
			t.Errorf("%s: IntAuth not appended", p.Name)
		}
		auth := SharedKeyAuth(p, secret, octets)
		if want := p.Sum(p.Sum(secret, []byte("Key Pad for IKEv2")), octets); !bytes.Equal(auth, want) || len(auth) != p.Size {
			t.Errorf("%s: AUTH", p.Name)
		}
		if !VerifySharedKeyAuth(p, secret, octets, auth) {
			t.Errorf("%s: valid AUTH refused", p.Name)
		}
		for _, bad := range [][]byte{nil, auth[:len(auth)-1], append(bytes.Clone(auth), 0)} {
			if VerifySharedKeyAuth(p, secret, octets, bad) {
				t.Errorf("%s: AUTH of %d octets accepted", p.Name, len(bad))
			}
		}
		flipped := bytes.Clone(auth)
		flipped[0] ^= 1
		if VerifySharedKeyAuth(p, secret, octets, flipped) || VerifySharedKeyAuth(p, []byte("wrong"), octets, auth) {
			t.Errorf("%s: forged AUTH accepted", p.Name)
		}
	}
}

func TestChildKeys(t *testing.T) {
	p := mustPRF(t, PRFHMACSHA256)
	skd, ni, nr, gir := randBytes(32), randBytes(32), randBytes(32), randBytes(32)
	gcm, _ := xform.LookupEnc("aes256gcm16")
	cbc, _ := xform.LookupEnc("aes128")
	sha, _ := xform.LookupInteg("sha256")
	for _, tc := range []struct {
		enc   *xform.Enc
		integ *xform.Integ
		pfs   bool
	}{{gcm, nil, false}, {gcm, nil, true}, {cbc, sha, false}, {cbc, sha, true}, {nil, sha, false}} {
		var secrets [][]byte
		seed := append(append([]byte(nil), ni...), nr...)
		if tc.pfs {
			secrets = [][]byte{gir}
			seed = append(append([]byte(nil), gir...), seed...)
		}
		k, err := DeriveChildKeys(p, skd, tc.enc, tc.integ, ni, nr, secrets...)
		if err != nil {
			t.Fatal(err)
		}
		el, il := 0, 0
		if tc.enc != nil {
			el = tc.enc.KeyLen()
		}
		if tc.integ != nil {
			il = tc.integ.KeyLen
		}
		km, _ := p.Plus(skd, seed, 2*(el+il))
		want := [][]byte{km[:el], km[el : el+il], km[el+il : 2*el+il], km[2*el+il:]}
		for i, got := range [][]byte{k.EncI, k.IntegI, k.EncR, k.IntegR} {
			if !bytes.Equal(got, want[i]) {
				t.Errorf("enc %v integ %v pfs %v: key %d differs", tc.enc, tc.integ, tc.pfs, i)
			}
		}
		if tc.enc == gcm && len(k.EncI) != 36 {
			t.Errorf("AES-256-GCM key with salt of %d octets", len(k.EncI))
		}
		k.Zero()
		if !bytes.Equal(k.EncI, make([]byte, len(k.EncI))) {
			t.Error("Zero left key material")
		}
	}
	if _, err := DeriveChildKeys(p, skd, nil, nil, ni, nr); err == nil {
		t.Error("Child SA without algorithms accepted")
	}
	if _, err := p.Plus(skd, ni, 255*32+1); err == nil {
		t.Error("prf+ beyond 255 blocks accepted")
	}
}

func TestIKECiphers(t *testing.T) {
	p := mustPRF(t, PRFHMACSHA384)
	for _, s := range testSuites(t, p) {
		k, err := DeriveIKEKeys(s, randBytes(48), randBytes(32), randBytes(32), 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		ci, cr, err := NewIKECiphers(s, k)
		if err != nil {
			t.Fatal(err)
		}
		ci2, cr2, _ := NewIKECiphers(s, k)
		wire, _ := Encrypt(sampleMessage(), ci)
		if _, err := Decrypt(wire, ci2); err != nil {
			t.Errorf("%s: initiator's message: %v", s.Encr.Name, err)
		}
		if _, err := Decrypt(wire, cr2); err == nil {
			t.Errorf("%s: responder key opened the initiator's message", s.Encr.Name)
		}
		wire, _ = Encrypt(sampleMessage(), cr)
		if _, err := Decrypt(wire, cr2); err != nil {
			t.Errorf("%s: responder's message: %v", s.Encr.Name, err)
		}
		k.Zero()
		ci.Zero()
	}
	gcm, _ := LookupEncr(20, 128)
	sha, _ := LookupInteg(xform.AuthHMACSHA256128)
	if _, err := DeriveIKEKeys(&Suite{Encr: gcm, Integ: sha, PRF: p}, nil, nil, nil, 0, 0); err == nil {
		t.Error("AEAD suite with integrity accepted")
	}
}
