package ikecrypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/internal/xform"
)

// intermediateMessage is an IKE_INTERMEDIATE request with a KE payload of
// ML-KEM-768's size.
func intermediateMessage(mid uint32) *message.Message {
	return &message.Message{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, Exchange: message.IKEIntermediate,
		Flags: message.FlagInitiator, MessageID: mid,
		Payloads: []message.Payload{&message.KE{Method: 36, Data: bytes.Repeat([]byte{0x36}, 1184)}}}
}

// TestIntAuthOctets checks IntAuth_A | IntAuth_P against a construction by
// hand from RFC 9242 section 3.3.2: the header and the Encrypted payload
// header with lengths that leave out IV, padding and ICV, then the inner
// payloads. So the octets are the same whatever the cipher.
func TestIntAuthOctets(t *testing.T) {
	m := intermediateMessage(1)
	first, plain, err := message.MarshalPayloads(m.Payloads)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 0, 32+len(plain))
	want = binary.BigEndian.AppendUint64(want, m.SPIi)
	want = binary.BigEndian.AppendUint64(want, m.SPIr)
	want = append(want, byte(message.PayloadSK), 0x20, byte(message.IKEIntermediate), byte(message.FlagInitiator))
	want = binary.BigEndian.AppendUint32(want, 1)
	want = binary.BigEndian.AppendUint32(want, uint32(28+4+len(plain)))
	want = append(want, byte(first), 0)
	want = binary.BigEndian.AppendUint16(want, uint16(4+len(plain)))
	want = append(want, plain...)
	for _, c := range fuzzCiphers(t) {
		wire, err := Encrypt(m, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := IntAuthFromWire(wire, c)
		if err != nil {
			t.Fatalf("%s: %v", c.Encr().Name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: IntAuth octets differ from the RFC 9242 construction", c.Encr().Name)
		}
		if len(wire) == len(got) {
			t.Errorf("%s: the wire message has no cipher overhead?", c.Encr().Name)
		}
		// Tampered: the integrity check fails.
		wire[len(wire)-1] ^= 1
		if _, err := IntAuthFromWire(wire, c); err == nil {
			t.Errorf("%s: tampered message accepted", c.Encr().Name)
		}
	}
	if _, err := IntAuthFromWire(mustMarshal(t, &message.Message{Exchange: message.IKEIntermediate, Payloads: []message.Payload{&message.Nonce{Data: make([]byte, 16)}}}), fuzzCiphers(t)[0]); err == nil {
		t.Error("message without an Encrypted payload accepted")
	}
	if _, err := IntAuthOctets(make([]byte, 10), message.PayloadKE, nil); err == nil {
		t.Error("short header accepted")
	}
}

// TestIntAuthOfMessage: the octets computed from a message's payloads (our
// own messages, reassembled ones) are those of the message as sent.
func TestIntAuthOfMessage(t *testing.T) {
	for _, m := range []*message.Message{
		intermediateMessage(1),
		{SPIi: 1, SPIr: 2, Exchange: message.IKEIntermediate, Flags: message.FlagResponse, MessageID: 2},
		{SPIi: 1, SPIr: 2, Exchange: message.IKEFollowupKE, MessageID: 7, Payloads: []message.Payload{
			message.NewNotify(message.AdditionalKeyExchange, []byte{1, 2, 3}), &message.KE{Method: 37, Data: make([]byte, 1568)}}},
	} {
		want, err := IntAuthOfMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range fuzzCiphers(t) {
			wire, err := Encrypt(m, c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := IntAuthFromWire(wire, c)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%v %s: octets from the wire differ from those of the payloads (%v)", m.Exchange, c.Encr().Name, err)
			}
		}
	}
}

func mustMarshal(t *testing.T, m *message.Message) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIntAuthChain checks the IntAuth chain and the appended value against
// HMAC-SHA-384 computed directly.
func TestIntAuthChain(t *testing.T) {
	p := mustPRF(t, PRFHMACSHA384)
	sk1, sk2 := randBytes(48), randBytes(48)
	a1, a2 := randBytes(100), randBytes(1300)
	h := hmac.New(sha512.New384, sk1)
	h.Write(a1)
	want1 := h.Sum(nil)
	got1 := NextIntAuth(p, sk1, nil, a1)
	if !bytes.Equal(got1, want1) {
		t.Fatal("IntAuth_1 = prf(SK_p1, A1 | P1) mismatch")
	}
	h = hmac.New(sha512.New384, sk2)
	h.Write(want1)
	h.Write(a2)
	want2 := h.Sum(nil)
	if got2 := NextIntAuth(p, sk2, got1, a2); !bytes.Equal(got2, want2) {
		t.Fatal("IntAuth_2 = prf(SK_p2, IntAuth_1 | A2 | P2) mismatch")
	}
	i, r := randBytes(48), randBytes(48)
	v := IntAuth(i, r, 3)
	if len(v) != 100 || !bytes.Equal(v[:48], i) || !bytes.Equal(v[48:96], r) || binary.BigEndian.Uint32(v[96:]) != 3 {
		t.Errorf("IntAuth = %x, want IntAuth_iN | IntAuth_rN | IKE_AUTH_MID", v)
	}
}

// TestUpdateIKEKeys cross-checks the RFC 9370 key update with HMAC-SHA-384
// computed directly: SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr), then
// prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr) for the new keys.
func TestUpdateIKEKeys(t *testing.T) {
	encr, err := LookupEncr(xform.EncrAESGCM16, 256)
	if err != nil {
		t.Fatal(err)
	}
	s := &Suite{Encr: encr, PRF: mustPRF(t, PRFHMACSHA384)}
	old := &IKEKeys{D: randBytes(48)}
	secret, ni, nr := randBytes(32), randBytes(32), randBytes(32)
	spii, spir := uint64(0x0102030405060708), uint64(0x1112131415161718)
	keys, skeyseed, err := UpdateIKEKeys(s, old, secret, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, data ...[]byte) []byte {
		h := hmac.New(sha512.New384, key)
		for _, d := range data {
			h.Write(d)
		}
		return h.Sum(nil)
	}
	wantSeed := mac(old.D, secret, ni, nr)
	if !bytes.Equal(skeyseed, wantSeed) {
		t.Fatal("SKEYSEED(n) mismatch")
	}
	var spis [16]byte
	binary.BigEndian.PutUint64(spis[:8], spii)
	binary.BigEndian.PutUint64(spis[8:], spir)
	var km, tk []byte
	for k := byte(1); len(km) < 48+2*36+2*48; k++ {
		tk = mac(wantSeed, tk, ni, nr, spis[:], []byte{k})
		km = append(km, tk...)
	}
	want := [][]byte{km[:48], km[48:84], km[84:120], km[120:168], km[168:216]}
	for i, got := range [][]byte{keys.D, keys.Ei, keys.Er, keys.Pi, keys.Pr} {
		if !bytes.Equal(got, want[i]) {
			t.Errorf("key %d differs from prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr)", i)
		}
	}
	if len(keys.Ai) != 0 || len(keys.Ar) != 0 {
		t.Error("integrity keys with an AEAD")
	}
}

// FuzzIntAuthFromWire feeds arbitrary messages to IntAuthFromWire under
// several ciphers: it must not panic, and what it accepts must decrypt and
// carry consistent length fields.
func FuzzIntAuthFromWire(f *testing.F) {
	cs := fuzzCiphers(f)
	for i, c := range cs {
		w, err := Encrypt(intermediateMessage(uint32(i+1)), c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(w)
		e, _ := Encrypt(&message.Message{Exchange: message.IKEIntermediate, MessageID: 1}, c)
		f.Add(e)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range cs {
			got, err := IntAuthFromWire(data, c)
			if err != nil {
				continue
			}
			if _, err := Decrypt(data, c); err != nil {
				t.Fatalf("IntAuth accepted a message Decrypt refuses: %v", err)
			}
			if len(got) < 32 || binary.BigEndian.Uint32(got[24:28]) != uint32(len(got)) {
				t.Fatalf("IntAuth octets of %d with length field %d", len(got), binary.BigEndian.Uint32(got[24:28]))
			}
		}
	})
}
