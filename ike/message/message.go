package message

import (
	"golang.org/x/crypto/cryptobyte"
)

// HeaderLen is the length of the IKE header.
const HeaderLen = 28

// GenericHeaderLen is the length of the generic payload header.
const GenericHeaderLen = 4

// Version is the IKE version this package speaks: major 2, minor 0.
const Version = 0x20

// flagCritical is the critical bit in the generic payload header.
const flagCritical = 0x80

// MaxPayloads bounds the payloads of one chain (a message, or the inside of
// an Encrypted payload). Real messages carry a few dozen.
const MaxPayloads = 256

// Header is the fixed IKE header (RFC 7296 section 3.1).
type Header struct {
	SPIi, SPIr  uint64
	NextPayload PayloadType
	Version     uint8 // major version in the high nibble, minor in the low
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32
}

// ParseHeader decodes and checks the IKE header of the message b: the major
// version must be 2 and the length field must equal len(b).
func ParseHeader(b []byte) (*Header, error) {
	s := cryptobyte.String(b)
	var h Header
	var np, ex, fl uint8
	if !s.ReadUint64(&h.SPIi) || !s.ReadUint64(&h.SPIr) || !s.ReadUint8(&np) ||
		!s.ReadUint8(&h.Version) || !s.ReadUint8(&ex) || !s.ReadUint8(&fl) ||
		!s.ReadUint32(&h.MessageID) || !s.ReadUint32(&h.Length) {
		return nil, errorf(ErrTruncated, PayloadNone, "%d octets, header needs %d", len(b), HeaderLen)
	}
	h.NextPayload, h.Exchange, h.Flags = PayloadType(np), ExchangeType(ex), Flags(fl)
	if h.Version>>4 != 2 {
		return nil, errorf(ErrMajorVersion, PayloadNone, "version %d.%d", h.Version>>4, h.Version&0xf)
	}
	if uint64(h.Length) != uint64(len(b)) {
		return nil, errorf(ErrLength, PayloadNone, "length field %d, message is %d octets", h.Length, len(b))
	}
	return &h, nil
}

// IsResponse reports whether the Response flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the Initiator flag is set.
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// Message is an IKEv2 message: the header fields and the payloads in order.
// An encrypted message carries an *Encrypted (or *EncryptedFragment) payload
// last; package ikecrypto seals and opens it.
type Message struct {
	SPIi, SPIr uint64
	Exchange   ExchangeType
	Flags      Flags
	MessageID  uint32
	Payloads   []Payload
}

// IsResponse reports whether the Response flag is set.
func (m *Message) IsResponse() bool { return m.Flags&FlagResponse != 0 }

// IsInitiator reports whether the Initiator flag is set.
func (m *Message) IsInitiator() bool { return m.Flags&FlagInitiator != 0 }

// Get returns the first payload of type t, or nil.
func (m *Message) Get(t PayloadType) Payload {
	for _, p := range m.Payloads {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// Notifies returns the Notify payloads in order.
func (m *Message) Notifies() []*Notify {
	var ns []*Notify
	for _, p := range m.Payloads {
		if n, ok := p.(*Notify); ok {
			ns = append(ns, n)
		}
	}
	return ns
}

// Notify returns the first Notify payload of type t, or nil.
func (m *Message) Notify(t NotifyType) *Notify {
	for _, p := range m.Payloads {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			return n
		}
	}
	return nil
}

// ParseMessage decodes an IKEv2 message. The payloads do not alias b.
// Unknown payloads are skipped unless their critical bit is set, which is an
// error (ErrUnsupportedCritical). An Encrypted payload stays encrypted.
func ParseMessage(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	own := append([]byte(nil), b[HeaderLen:]...)
	ps, err := parseChain(h.NextPayload, cryptobyte.String(own), false)
	if err != nil {
		return nil, err
	}
	return &Message{SPIi: h.SPIi, SPIr: h.SPIr, Exchange: h.Exchange, Flags: h.Flags,
		MessageID: h.MessageID, Payloads: ps}, nil
}

// ParsePayloads decodes a chain of payloads starting with type first, such as
// the plaintext of an Encrypted payload. The payloads alias b. An Encrypted
// payload inside the chain is an error.
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	return parseChain(first, cryptobyte.String(b), true)
}

func parseChain(next PayloadType, s cryptobyte.String, inner bool) ([]Payload, error) {
	var ps []Payload
	for next != PayloadNone {
		cur := next
		var np, flags uint8
		var length uint16
		if !s.ReadUint8(&np) || !s.ReadUint8(&flags) || !s.ReadUint16(&length) {
			return nil, errorf(ErrTruncated, cur, "generic payload header cut short")
		}
		if length < GenericHeaderLen {
			return nil, errorf(ErrLength, cur, "payload length %d", length)
		}
		var body cryptobyte.String
		if !s.ReadBytes((*[]byte)(&body), int(length)-GenericHeaderLen) {
			return nil, errorf(ErrTruncated, cur, "payload length %d, %d octets left", length, len(s)+GenericHeaderLen)
		}
		next = PayloadType(np)
		if len(ps) == MaxPayloads {
			return nil, errorf(ErrSyntax, cur, "more than %d payloads", MaxPayloads)
		}
		p := newPayload(cur)
		if p == nil {
			if flags&flagCritical != 0 {
				return nil, &Error{Err: ErrUnsupportedCritical, Payload: cur, Critical: cur,
					Detail: "unknown payload type with the critical bit set"}
			}
			continue
		}
		if err := p.unmarshal(body); err != nil {
			return nil, err
		}
		switch e := p.(type) {
		case *Encrypted:
			if inner {
				return nil, errorf(ErrSyntax, cur, "encrypted payload inside an encrypted payload")
			}
			e.NextPayload, next = next, PayloadNone
		case *EncryptedFragment:
			if inner {
				return nil, errorf(ErrSyntax, cur, "encrypted payload inside an encrypted payload")
			}
			e.NextPayload, next = next, PayloadNone
		}
		ps = append(ps, p)
	}
	if !s.Empty() {
		return nil, errorf(ErrLength, PayloadNone, "%d octets after the last payload", len(s))
	}
	return ps, nil
}

// Marshal encodes the message. The Encrypted payload, if any, must be last.
func (m *Message) Marshal() ([]byte, error) {
	first, chain, err := MarshalPayloads(m.Payloads)
	if err != nil {
		return nil, err
	}
	total := HeaderLen + len(chain)
	if uint64(total) > 0xffffffff {
		return nil, errorf(ErrMarshal, PayloadNone, "message too long")
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, total))
	b.AddUint64(m.SPIi)
	b.AddUint64(m.SPIr)
	b.AddUint8(uint8(first))
	b.AddUint8(Version)
	b.AddUint8(uint8(m.Exchange))
	b.AddUint8(uint8(m.Flags))
	b.AddUint32(m.MessageID)
	b.AddUint32(uint32(total))
	b.AddBytes(chain)
	return b.Bytes()
}

// MarshalPayloads encodes a chain of payloads and returns the type of the
// first, for the Next Payload field of whatever precedes the chain.
func MarshalPayloads(ps []Payload) (PayloadType, []byte, error) {
	b := cryptobyte.NewBuilder(nil)
	for i, p := range ps {
		next := PayloadNone
		switch e := p.(type) {
		case *Encrypted:
			if i != len(ps)-1 {
				return 0, nil, errorf(ErrMarshal, p.Type(), "must be the last payload")
			}
			next = e.NextPayload
		case *EncryptedFragment:
			if i != len(ps)-1 {
				return 0, nil, errorf(ErrMarshal, p.Type(), "must be the last payload")
			}
			next = e.NextPayload
		default:
			if i+1 < len(ps) {
				next = ps[i+1].Type()
			}
		}
		addPayload(b, next, p)
	}
	out, err := b.Bytes()
	if err != nil {
		return 0, nil, err
	}
	first := PayloadNone
	if len(ps) > 0 {
		first = ps[0].Type()
	}
	return first, out, nil
}

// MarshalPayload encodes one payload with its generic header; next is the
// value of its Next Payload field.
func MarshalPayload(next PayloadType, p Payload) ([]byte, error) {
	b := cryptobyte.NewBuilder(nil)
	addPayload(b, next, p)
	return b.Bytes()
}

// ParsePayload decodes the body (without generic header) of a payload of
// type t. It returns nil, nil for a type this package does not know.
func ParsePayload(t PayloadType, body []byte) (Payload, error) {
	p := newPayload(t)
	if p == nil {
		return nil, nil
	}
	if err := p.unmarshal(cryptobyte.String(body)); err != nil {
		return nil, err
	}
	return p, nil
}

func addPayload(b *cryptobyte.Builder, next PayloadType, p Payload) {
	body := cryptobyte.NewBuilder(nil)
	p.marshal(body)
	raw, err := body.Bytes()
	if err != nil {
		b.SetError(err)
		return
	}
	if len(raw) > 0xffff-GenericHeaderLen {
		b.SetError(errorf(ErrMarshal, p.Type(), "body of %d octets does not fit the length field", len(raw)))
		return
	}
	var flags uint8
	if u, ok := p.(*Unknown); ok && u.Critical {
		flags = flagCritical
	}
	b.AddUint8(uint8(next))
	b.AddUint8(flags)
	b.AddUint16(uint16(len(raw) + GenericHeaderLen))
	b.AddBytes(raw)
}
