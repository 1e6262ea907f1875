package ikecrypto

import (
	"errors"
	"fmt"

	"github.com/goipsec/goipsec/ike/message"
)

// Encrypt encodes m with all its payloads inside an Encrypted payload
// sealed with c, and returns the message as sent.
func Encrypt(m *message.Message, c *Cipher) ([]byte, error) {
	first, plain, err := message.MarshalPayloads(m.Payloads)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	n := c.SealedLen(len(plain))
	outer := *m
	outer.Payloads = []message.Payload{&message.Encrypted{NextPayload: first, Body: make([]byte, n)}}
	wire, err := outer.Marshal()
	if err != nil {
		return nil, err
	}
	split := len(wire) - n
	if err := c.seal(wire[split:], wire[:split], plain); err != nil {
		return nil, err
	}
	return wire, nil
}

// Decrypt decodes the message b, authenticates and decrypts its Encrypted
// payload with c and returns the message with the payloads that were inside
// it in place of the Encrypted payload. Failed integrity is ErrAuth; a
// message without an Encrypted payload is ErrNotEncrypted.
func Decrypt(b []byte, c *Cipher) (*message.Message, error) {
	m, sk, plain, err := openEncrypted(b, c)
	if err != nil {
		return nil, err
	}
	inner, err := message.ParsePayloads(sk.NextPayload, plain)
	if err != nil {
		return nil, err
	}
	m.Payloads = append(m.Payloads[:len(m.Payloads)-1], inner...)
	return m, nil
}

// openEncrypted parses the message b and authenticates and decrypts its
// Encrypted payload, the last one, whose body ends the message.
func openEncrypted(b []byte, c *Cipher) (m *message.Message, sk *message.Encrypted, plain []byte, err error) {
	m, err = message.ParseMessage(b)
	if err != nil {
		return nil, nil, nil, err
	}
	last := len(m.Payloads) - 1
	if last < 0 {
		return nil, nil, nil, ErrNotEncrypted
	}
	sk, ok := m.Payloads[last].(*message.Encrypted)
	if !ok {
		return nil, nil, nil, ErrNotEncrypted
	}
	plain, err = c.open(b[:len(b)-len(sk.Body)], sk.Body)
	if err != nil {
		return nil, nil, nil, err
	}
	return m, sk, plain, nil
}

// Fragment is the decrypted content of one Encrypted Fragment payload.
type Fragment struct {
	Number, Total uint16
	NextPayload   message.PayloadType // first payload of the message; set in fragment 1 only
	Data          []byte              // this fragment's share of the payload chain
}

// skfOverhead is the IKE header plus the SKF payload header and its
// fragment number fields.
const skfOverhead = message.HeaderLen + message.GenericHeaderLen + 4

// EncryptFragments encodes m as Encrypted Fragment messages (RFC 7383) of at
// most maxLen octets each (the IKE message, without IP and UDP headers).
func EncryptFragments(m *message.Message, c *Cipher, maxLen int) ([][]byte, error) {
	first, plain, err := message.MarshalPayloads(m.Payloads)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	chunk := c.MaxPlaintext(maxLen - skfOverhead)
	if chunk < 1 {
		return nil, fmt.Errorf("ikecrypto: fragment size %d leaves no room for data", maxLen)
	}
	total := (len(plain) + chunk - 1) / chunk
	if total == 0 {
		total = 1
	}
	if total > 0xffff {
		return nil, fmt.Errorf("ikecrypto: message needs %d fragments", total)
	}
	out := make([][]byte, 0, total)
	for i := range total {
		part := plain[min(i*chunk, len(plain)):min((i+1)*chunk, len(plain))]
		next := message.PayloadNone
		if i == 0 {
			next = first
		}
		wire, err := EncryptFragment(m, c, &Fragment{Number: uint16(i + 1), Total: uint16(total), NextPayload: next, Data: part})
		if err != nil {
			return nil, err
		}
		out = append(out, wire)
	}
	return out, nil
}

// EncryptFragment encodes one Encrypted Fragment message with the header
// fields of m (its payloads are not used) and the fragment f sealed with c.
// EncryptFragments uses it; on its own it serves tests that need fragments
// of their choosing.
func EncryptFragment(m *message.Message, c *Cipher, f *Fragment) ([]byte, error) {
	skf := &message.EncryptedFragment{Number: f.Number, Total: f.Total, NextPayload: f.NextPayload, Body: make([]byte, c.SealedLen(len(f.Data)))}
	outer := *m
	outer.Payloads = []message.Payload{skf}
	wire, err := outer.Marshal()
	if err != nil {
		return nil, err
	}
	split := len(wire) - len(skf.Body)
	if err := c.seal(wire[split:], wire[:split], f.Data); err != nil {
		return nil, err
	}
	return wire, nil
}

// DecryptFragment decodes a message carrying an Encrypted Fragment payload,
// authenticates and decrypts it, and returns the message (without payloads)
// and the fragment.
func DecryptFragment(b []byte, c *Cipher) (*message.Message, *Fragment, error) {
	m, err := message.ParseMessage(b)
	if err != nil {
		return nil, nil, err
	}
	if len(m.Payloads) != 1 {
		return nil, nil, ErrNotEncrypted
	}
	skf, ok := m.Payloads[0].(*message.EncryptedFragment)
	if !ok {
		return nil, nil, ErrNotEncrypted
	}
	plain, err := c.open(b[:len(b)-len(skf.Body)], skf.Body)
	if err != nil {
		return nil, nil, err
	}
	m.Payloads = nil
	return m, &Fragment{Number: skf.Number, Total: skf.Total, NextPayload: skf.NextPayload, Data: plain}, nil
}

// ErrFragments reports a set of fragments that does not form a message.
var ErrFragments = errors.New("ikecrypto: incomplete or inconsistent fragments")

// Reassemble decodes the payload chain of a complete set of fragments,
// given in order of their numbers.
func Reassemble(frags []*Fragment) ([]message.Payload, error) {
	if len(frags) == 0 {
		return nil, ErrFragments
	}
	var plain []byte
	for i, f := range frags {
		if int(f.Number) != i+1 || int(f.Total) != len(frags) || (i > 0 && f.NextPayload != message.PayloadNone) {
			return nil, ErrFragments
		}
		plain = append(plain, f.Data...)
	}
	return message.ParsePayloads(frags[0].NextPayload, plain)
}
