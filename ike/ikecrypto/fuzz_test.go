package ikecrypto

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/internal/xform"
)

// fuzzCiphers are fixed-key ciphers, so that seeds stay valid across runs.
func fuzzCiphers(t testing.TB) []*Cipher {
	var out []*Cipher
	for _, tc := range []struct {
		encr  string
		integ xform.IntegID
	}{{"aes128gcm16", 0}, {"aes256gcm8", 0}, {"chacha20poly1305", 0}, {"aes256", xform.AuthHMACSHA256128}, {"3des", xform.AuthHMACSHA196}} {
		var e *Encr
		for _, x := range Encrs() {
			if x.Name == tc.encr {
				e = x
			}
		}
		var in *xform.Integ
		var ik []byte
		if tc.integ != 0 {
			in, _ = LookupInteg(tc.integ)
			ik = bytes.Repeat([]byte{0x5a}, in.KeyLen)
		}
		c, err := NewCipher(e, bytes.Repeat([]byte{0xa5}, e.KeyLen()), in, ik)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// FuzzDecrypt feeds arbitrary messages to Decrypt under several ciphers, and
// arbitrary plaintexts (first octet: type of the first payload) through a
// real seal and open. Neither may panic; what opens must re-encrypt to the
// same payloads.
func FuzzDecrypt(f *testing.F) {
	cs := fuzzCiphers(f)
	m := sampleMessage()
	for _, c := range cs {
		w, err := Encrypt(m, c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(w)
	}
	_, plain, _ := message.MarshalPayloads(m.Payloads)
	f.Add(append([]byte{byte(message.PayloadIDi)}, plain...))
	f.Add([]byte{byte(message.PayloadSK), 0, 0, 0, 5, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range cs {
			got, err := Decrypt(data, c)
			if err != nil {
				continue
			}
			again, err := Encrypt(got, c)
			if err != nil {
				t.Fatalf("re-encrypt: %v", err)
			}
			if m2, err := Decrypt(again, c); err != nil || !reflect.DeepEqual(m2.Payloads, got.Payloads) {
				t.Fatalf("round trip: %v", err)
			}
		}
		if len(data) == 0 {
			return
		}
		c := cs[int(data[0])%len(cs)]
		hdr := message.Message{SPIi: 1, SPIr: 2, Exchange: message.IKEAuth, MessageID: 1,
			Payloads: []message.Payload{&message.Encrypted{NextPayload: message.PayloadType(data[0]), Body: make([]byte, c.SealedLen(len(data)-1))}}}
		wire, err := hdr.Marshal()
		if err != nil {
			return // too long for a payload
		}
		split := len(wire) - c.SealedLen(len(data)-1)
		if err := c.seal(wire[split:], wire[:split], data[1:]); err != nil {
			t.Fatal(err)
		}
		got, err := Decrypt(wire, c)
		if err != nil {
			return
		}
		again, err := Encrypt(got, c)
		if err != nil {
			t.Fatalf("re-encrypt: %v", err)
		}
		if m2, err := Decrypt(again, c); err != nil || !reflect.DeepEqual(m2.Payloads, got.Payloads) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
