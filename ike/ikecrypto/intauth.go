package ikecrypto

import (
	"encoding/binary"
	"fmt"

	"github.com/goipsec/goipsec/ike/message"
)

// IntAuthOctets returns IntAuth_A | IntAuth_P of an IKE_INTERMEDIATE
// message (RFC 9242 section 3.3.2): the IKE header, the payloads before the
// Encrypted payload and the Encrypted payload's generic header, with both
// length fields adjusted as if the Encrypted payload held only its inner
// payloads (no IV, padding or ICV), then the inner payloads in plaintext.
// header is the message's IKE header and outer payloads as sent, up to and
// not including the Encrypted payload; first is the type of the first inner
// payload.
func IntAuthOctets(header []byte, first message.PayloadType, plain []byte) ([]byte, error) {
	if len(header) < message.HeaderLen {
		return nil, fmt.Errorf("ikecrypto: IntAuth of a message of %d octets", len(header))
	}
	total := len(header) + message.GenericHeaderLen + len(plain)
	if total > 0xffffffff-1 || message.GenericHeaderLen+len(plain) > 0xffff {
		return nil, fmt.Errorf("ikecrypto: IntAuth of an Encrypted payload of %d octets", len(plain))
	}
	out := make([]byte, 0, total)
	out = append(out, header...)
	binary.BigEndian.PutUint32(out[24:28], uint32(total))
	out = append(out, byte(first), 0)
	out = binary.BigEndian.AppendUint16(out, uint16(message.GenericHeaderLen+len(plain)))
	return append(out, plain...), nil
}

// IntAuthFromWire returns IntAuthOctets of an encrypted message as sent,
// opening its Encrypted payload with c (the cipher of its sender's
// direction, so our own messages open with the cipher that sealed them).
func IntAuthFromWire(wire []byte, c *Cipher) ([]byte, error) {
	_, sk, plain, err := openEncrypted(wire, c)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	split := len(wire) - len(sk.Body)
	return IntAuthOctets(wire[:split-message.GenericHeaderLen], sk.NextPayload, plain)
}

// IntAuthOfMessage returns IntAuthOctets of the encrypted message m would
// be, all its payloads inside the Encrypted payload, without encrypting it:
// for the messages we send, and for a received message reassembled from
// fragments (RFC 9242 section 3.3.2 computes IntAuth as if the message was
// not fragmented). It re-encodes the payloads, so for a received message
// the single datagram with IntAuthFromWire is exact where it exists.
func IntAuthOfMessage(m *message.Message) ([]byte, error) {
	first, plain, err := message.MarshalPayloads(m.Payloads)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	h := make([]byte, 0, message.HeaderLen)
	h = binary.BigEndian.AppendUint64(h, m.SPIi)
	h = binary.BigEndian.AppendUint64(h, m.SPIr)
	h = append(h, byte(message.PayloadSK), message.Version, byte(m.Exchange), byte(m.Flags))
	h = binary.BigEndian.AppendUint32(h, m.MessageID)
	h = binary.BigEndian.AppendUint32(h, 0) // set by IntAuthOctets
	return IntAuthOctets(h, first, plain)
}

// NextIntAuth chains one IKE_INTERMEDIATE message into IntAuth (RFC 9242
// section 3.3.2): IntAuth_n = prf(SK_p(n), IntAuth_(n-1) | octets), with
// prev empty for the first exchange. skp is SK_pi for the initiator's
// requests and SK_pr for the responder's answers, as they were when the
// exchange took place.
func NextIntAuth(prf *PRF, skp, prev, octets []byte) []byte {
	return prf.Sum(skp, prev, octets)
}

// IntAuth returns the value appended to the AUTH payload's octets after
// IKE_INTERMEDIATE exchanges: IntAuth_iN | IntAuth_rN | IKE_AUTH_MID, the
// last the Message ID of the IKE_AUTH exchange (RFC 9242 section 3.3.2).
func IntAuth(intAuthI, intAuthR []byte, authMsgID uint32) []byte {
	out := make([]byte, 0, len(intAuthI)+len(intAuthR)+4)
	out = append(append(out, intAuthI...), intAuthR...)
	return binary.BigEndian.AppendUint32(out, authMsgID)
}

// UpdateIKEKeys returns the IKE SA keys after an additional key exchange in
// IKE_INTERMEDIATE (RFC 9370 section 2.2.2): SKEYSEED(n) = prf(SK_d(n-1),
// SK(n) | Ni | Nr), then prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr) split as
// in IKE_SA_INIT. It returns SKEYSEED(n) too, for the key hook.
func UpdateIKEKeys(s *Suite, old *IKEKeys, secret, ni, nr []byte, spii, spir uint64) (*IKEKeys, []byte, error) {
	skeyseed := RekeySKEYSEED(s.PRF, old.D, ni, nr, secret)
	keys, err := DeriveIKEKeys(s, skeyseed, ni, nr, spii, spir)
	if err != nil {
		clear(skeyseed)
		return nil, nil, err
	}
	return keys, skeyseed, nil
}
