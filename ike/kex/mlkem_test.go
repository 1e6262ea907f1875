package kex

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
)

// TestMLKEMAccumulated runs the C2SP/CCTV accumulated ML-KEM-768 vectors
// (100 of them, the count Go's crypto/mlkem checks with -short) through
// this package's Exchange: the initiator's KE data from a seed, the
// responder's encapsulation with the vector's randomness, the initiator's
// decapsulation, and implicit rejection of a random ciphertext. The SHAKE128
// hash of all outputs must be the published one.
func TestMLKEMAccumulated(t *testing.T) {
	const want = "1114b1b6699ed191734fa339376afa7e285c9e6acf6ff0177d346696ce564415"
	m, err := Lookup(MLKEM768)
	if err != nil {
		t.Fatal(err)
	}
	s, o := sha3.NewSHAKE128(), sha3.NewSHAKE128()
	seed, msg, ct1 := make([]byte, mlkem.SeedSize), make([]byte, 32), make([]byte, mlkem.CiphertextSize768)
	for range 100 {
		s.Read(seed)
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			t.Fatal(err)
		}
		ini := &mlkemExchange{m: m, dk768: dk}
		ek := ini.PublicValue()
		if len(ek) != m.PublicLen {
			t.Fatalf("KE data of %d octets, want %d", len(ek), m.PublicLen)
		}
		o.Write(ek)
		s.Read(msg)
		resp := &mlkemExchange{m: m, responder: true, encap768: func(ek *mlkem.EncapsulationKey768) ([]byte, []byte) {
			k, ct, err := mlkemtest.Encapsulate768(ek, msg)
			if err != nil {
				t.Fatal(err)
			}
			return k, ct
		}}
		k, err := resp.SharedSecret(ek)
		if err != nil {
			t.Fatal(err)
		}
		ct := resp.PublicValue()
		if len(ct) != m.RespLen {
			t.Fatalf("ciphertext of %d octets, want %d", len(ct), m.RespLen)
		}
		o.Write(ct)
		o.Write(k)
		kk, err := ini.SharedSecret(ct)
		if err != nil || !bytes.Equal(kk, k) {
			t.Fatalf("decapsulation: %v", err)
		}
		s.Read(ct1)
		k1, err := ini.SharedSecret(ct1)
		if err != nil {
			t.Fatal(err)
		}
		o.Write(k1)
	}
	sum := make([]byte, 32)
	o.Read(sum)
	if got := hex.EncodeToString(sum); got != want {
		t.Errorf("accumulated hash %s, want %s", got, want)
	}
}

// TestMLKEMPayloads: the KE payload data of both ML-KEM methods through an
// encoded KE payload and back, and the length checks on each side.
func TestMLKEMPayloads(t *testing.T) {
	for _, tc := range []struct {
		id           ID
		pub, ct      int
		transformID  uint16
		keywordWants string
	}{
		{MLKEM768, 1184, 1088, 36, "mlkem768"},
		{MLKEM1024, 1568, 1568, 37, "mlkem1024"},
	} {
		m, err := Lookup(tc.id)
		if err != nil || m.Name != tc.keywordWants || uint16(m.ID) != tc.transformID || !m.KEM {
			t.Fatalf("%v: %+v, %v", tc.id, m, err)
		}
		roundTrip := func(data []byte) []byte {
			b, err := message.MarshalPayload(message.PayloadNone, &message.KE{Method: uint16(tc.id), Data: data})
			if err != nil {
				t.Fatal(err)
			}
			p, err := message.ParsePayload(message.PayloadKE, b[message.GenericHeaderLen:])
			if err != nil {
				t.Fatal(err)
			}
			ke := p.(*message.KE)
			if ke.Method != tc.transformID {
				t.Fatalf("method %d", ke.Method)
			}
			return ke.Data
		}
		ini, _ := NewInitiator(tc.id)
		pub := roundTrip(ini.PublicValue())
		if len(pub) != tc.pub {
			t.Errorf("%s: initiator's KE data %d octets, want %d", m.Name, len(pub), tc.pub)
		}
		for _, n := range []int{0, tc.pub - 1, tc.pub + 1} {
			r, _ := NewResponder(tc.id)
			if _, err := r.SharedSecret(make([]byte, n)); !errors.Is(err, ErrPublicValue) {
				t.Errorf("%s: encapsulation key of %d octets: %v", m.Name, n, err)
			}
		}
		r, _ := NewResponder(tc.id)
		k, err := r.SharedSecret(pub)
		if err != nil {
			t.Fatal(err)
		}
		ct := roundTrip(r.PublicValue())
		if len(ct) != tc.ct {
			t.Errorf("%s: ciphertext %d octets, want %d", m.Name, len(ct), tc.ct)
		}
		for _, n := range []int{0, tc.ct - 1, tc.ct + 1} {
			if _, err := ini.SharedSecret(make([]byte, n)); !errors.Is(err, ErrPublicValue) {
				t.Errorf("%s: ciphertext of %d octets: %v", m.Name, n, err)
			}
		}
		kk, err := ini.SharedSecret(ct)
		if err != nil || !bytes.Equal(k, kk) || len(k) != 32 {
			t.Errorf("%s: shared secrets differ (%v)", m.Name, err)
		}
		if _, _, err := Respond(tc.id, pub[:10]); !errors.Is(err, ErrPublicValue) {
			t.Errorf("%s: Respond with short data: %v", m.Name, err)
		}
	}
}
