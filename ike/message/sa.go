package message

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// Substructure markers of RFC 7296 sections 3.3.1 and 3.3.2.
const (
	lastSubstruc      = 0
	moreProposals     = 2
	moreTransforms    = 3
	proposalHeaderLen = 8
	transformHdrLen   = 8
	attrFormatTV      = 0x8000
)

// SA is the Security Association payload (RFC 7296 section 3.3).
type SA struct {
	Proposals []Proposal
}

// Proposal is one proposal substructure of an SA payload.
type Proposal struct {
	Number     uint8
	Protocol   ProtocolID
	SPI        []byte // empty, 4 octets (ESP, AH) or 8 octets (IKE SA rekey)
	Transforms []Transform
}

// Transform is one transform substructure of a proposal.
type Transform struct {
	Type      TransformType
	ID        uint16
	KeyLength uint16      // Key Length attribute in bits; 0 when absent
	Attrs     []Attribute // attributes other than Key Length, as received
}

// Attribute is a transform attribute other than Key Length (RFC 7296
// 3.3.5). None is defined; a transform carrying one is not understood.
type Attribute struct {
	Type  uint16 // without the format bit
	TV    bool   // short (type/value) format: Value is 2 octets
	Value []byte
}

// Type returns PayloadSA.
func (*SA) Type() PayloadType { return PayloadSA }

func (p *SA) marshal(b *cryptobyte.Builder) {
	if len(p.Proposals) == 0 {
		b.SetError(errorf(ErrMarshal, PayloadSA, "no proposals"))
		return
	}
	for i := range p.Proposals {
		last := uint8(moreProposals)
		if i == len(p.Proposals)-1 {
			last = lastSubstruc
		}
		p.Proposals[i].marshal(b, last)
	}
}

func (pr *Proposal) marshal(b *cryptobyte.Builder, last uint8) {
	if len(pr.SPI) > 255 || len(pr.Transforms) > 255 {
		b.SetError(errorf(ErrMarshal, PayloadSA, "proposal with %d octets of SPI and %d transforms", len(pr.SPI), len(pr.Transforms)))
		return
	}
	body := cryptobyte.NewBuilder(nil)
	body.AddUint8(pr.Number)
	body.AddUint8(uint8(pr.Protocol))
	body.AddUint8(uint8(len(pr.SPI)))
	body.AddUint8(uint8(len(pr.Transforms)))
	body.AddBytes(pr.SPI)
	for i := range pr.Transforms {
		more := uint8(moreTransforms)
		if i == len(pr.Transforms)-1 {
			more = lastSubstruc
		}
		pr.Transforms[i].marshal(body, more)
	}
	addSubstruct(b, last, body)
}

func (t *Transform) marshal(b *cryptobyte.Builder, last uint8) {
	body := cryptobyte.NewBuilder(nil)
	body.AddUint8(uint8(t.Type))
	body.AddUint8(0)
	body.AddUint16(t.ID)
	if t.KeyLength != 0 {
		body.AddUint16(attrFormatTV | AttrKeyLength)
		body.AddUint16(t.KeyLength)
	}
	for _, a := range t.Attrs {
		switch {
		case a.Type > 0x7fff || a.Type == AttrKeyLength:
			body.SetError(errorf(ErrMarshal, PayloadSA, "attribute type %d", a.Type))
		case a.TV && len(a.Value) != 2:
			body.SetError(errorf(ErrMarshal, PayloadSA, "TV attribute with %d octets", len(a.Value)))
		case a.TV:
			body.AddUint16(attrFormatTV | a.Type)
			body.AddBytes(a.Value)
		default:
			body.AddUint16(a.Type)
			body.AddUint16LengthPrefixed(func(v *cryptobyte.Builder) { v.AddBytes(a.Value) })
		}
	}
	addSubstruct(b, last, body)
}

// addSubstruct writes a proposal or transform: marker, reserved, length
// (which counts the 4-octet header itself) and body.
func addSubstruct(b *cryptobyte.Builder, last uint8, body *cryptobyte.Builder) {
	raw, err := body.Bytes()
	if err != nil {
		b.SetError(err)
		return
	}
	if len(raw)+4 > 0xffff {
		b.SetError(errorf(ErrMarshal, PayloadSA, "substructure of %d octets", len(raw)+4))
		return
	}
	b.AddUint8(last)
	b.AddUint8(0)
	b.AddUint16(uint16(len(raw) + 4))
	b.AddBytes(raw)
}

// readSubstruct reads the header of a proposal or transform and its body.
func readSubstruct(s *cryptobyte.String, min int, what string) (last uint8, body cryptobyte.String, err error) {
	var length uint16
	if !s.ReadUint8(&last) || !s.Skip(1) || !s.ReadUint16(&length) {
		return 0, nil, errorf(ErrTruncated, PayloadSA, "%s header cut short", what)
	}
	if int(length) < min {
		return 0, nil, errorf(ErrLength, PayloadSA, "%s length %d", what, length)
	}
	if !s.ReadBytes((*[]byte)(&body), int(length)-4) {
		return 0, nil, errorf(ErrTruncated, PayloadSA, "%s length %d, %d octets left", what, length, len(*s)+4)
	}
	return last, body, nil
}

func (p *SA) unmarshal(s cryptobyte.String) error {
	for !s.Empty() {
		last, body, err := readSubstruct(&s, proposalHeaderLen, "proposal")
		if err != nil {
			return err
		}
		if want := map[bool]uint8{true: lastSubstruc, false: moreProposals}[s.Empty()]; last != want {
			return errorf(ErrSyntax, PayloadSA, "proposal marker %d, want %d", last, want)
		}
		if len(p.Proposals) == 255 {
			return errorf(ErrSyntax, PayloadSA, "more than 255 proposals")
		}
		var pr Proposal
		if err := pr.unmarshal(body); err != nil {
			return err
		}
		p.Proposals = append(p.Proposals, pr)
	}
	if len(p.Proposals) == 0 {
		return errorf(ErrSyntax, PayloadSA, "no proposals")
	}
	return nil
}

func (pr *Proposal) unmarshal(s cryptobyte.String) error {
	var proto, spiSize, n uint8
	if !s.ReadUint8(&pr.Number) || !s.ReadUint8(&proto) || !s.ReadUint8(&spiSize) || !s.ReadUint8(&n) {
		return errorf(ErrTruncated, PayloadSA, "proposal header cut short")
	}
	pr.Protocol = ProtocolID(proto)
	switch {
	case pr.Protocol == ProtoIKE && spiSize != 0 && spiSize != 8,
		(pr.Protocol == ProtoESP || pr.Protocol == ProtoAH) && spiSize != 4:
		return errorf(ErrSyntax, PayloadSA, "%v proposal with SPI size %d", pr.Protocol, spiSize)
	}
	if !s.ReadBytes(&pr.SPI, int(spiSize)) {
		return errorf(ErrTruncated, PayloadSA, "SPI size %d, %d octets left", spiSize, len(s))
	}
	if spiSize == 0 {
		pr.SPI = nil
	}
	// Capacity from the count, bounded by the 8 octets a transform needs.
	pr.Transforms = make([]Transform, 0, min(int(n), len(s)/transformHdrLen))
	for !s.Empty() {
		if len(pr.Transforms) == int(n) {
			return errorf(ErrSyntax, PayloadSA, "proposal %d announces %d transforms, carries more", pr.Number, n)
		}
		last, body, err := readSubstruct(&s, transformHdrLen, "transform")
		if err != nil {
			return err
		}
		if want := map[bool]uint8{true: lastSubstruc, false: moreTransforms}[s.Empty()]; last != want {
			return errorf(ErrSyntax, PayloadSA, "transform marker %d, want %d", last, want)
		}
		var t Transform
		if err := t.unmarshal(body); err != nil {
			return err
		}
		pr.Transforms = append(pr.Transforms, t)
	}
	if len(pr.Transforms) != int(n) {
		return errorf(ErrSyntax, PayloadSA, "proposal %d announces %d transforms, carries %d", pr.Number, n, len(pr.Transforms))
	}
	return nil
}

func (t *Transform) unmarshal(s cryptobyte.String) error {
	var typ uint8
	if !s.ReadUint8(&typ) || !s.Skip(1) || !s.ReadUint16(&t.ID) {
		return errorf(ErrTruncated, PayloadSA, "transform header cut short")
	}
	t.Type = TransformType(typ)
	seenKeyLength := false
	for !s.Empty() {
		var at uint16
		if !s.ReadUint16(&at) {
			return errorf(ErrTruncated, PayloadSA, "attribute cut short")
		}
		a := Attribute{Type: at &^ attrFormatTV, TV: at&attrFormatTV != 0}
		if a.TV {
			if !s.ReadBytes(&a.Value, 2) {
				return errorf(ErrTruncated, PayloadSA, "attribute cut short")
			}
		} else {
			var v cryptobyte.String
			if !s.ReadUint16LengthPrefixed(&v) {
				return errorf(ErrTruncated, PayloadSA, "attribute cut short")
			}
			a.Value = rest(&v)
		}
		if a.Type == AttrKeyLength {
			if !a.TV || seenKeyLength {
				return errorf(ErrSyntax, PayloadSA, "malformed or repeated Key Length attribute")
			}
			seenKeyLength = true
			t.KeyLength = binary.BigEndian.Uint16(a.Value)
			if t.KeyLength == 0 {
				return errorf(ErrSyntax, PayloadSA, "Key Length of 0 bits")
			}
			continue
		}
		t.Attrs = append(t.Attrs, a)
	}
	return nil
}

// String formats the transform as "TYPE:ID[_KEYLEN]".
func (t Transform) String() string {
	s := fmt.Sprintf("%v:%d", t.Type, t.ID)
	if t.KeyLength != 0 {
		s += fmt.Sprintf("_%d", t.KeyLength)
	}
	return s
}

// String formats the proposal as "#N PROTO: transforms".
func (pr *Proposal) String() string {
	ts := make([]string, len(pr.Transforms))
	for i, t := range pr.Transforms {
		ts[i] = t.String()
	}
	return fmt.Sprintf("#%d %v: %s", pr.Number, pr.Protocol, strings.Join(ts, "/"))
}

// SPI32 returns the SPI of an ESP or AH proposal; ok is false for other
// sizes.
func (pr *Proposal) SPI32() (spi uint32, ok bool) {
	if len(pr.SPI) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(pr.SPI), true
}

// SPI64 returns the 8-octet SPI of an IKE proposal; ok is false for other
// sizes.
func (pr *Proposal) SPI64() (spi uint64, ok bool) {
	if len(pr.SPI) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(pr.SPI), true
}

// Clone returns a deep copy of the proposal.
func (pr *Proposal) Clone() Proposal {
	c := Proposal{Number: pr.Number, Protocol: pr.Protocol, SPI: append([]byte(nil), pr.SPI...)}
	if pr.SPI == nil {
		c.SPI = nil
	}
	c.Transforms = make([]Transform, len(pr.Transforms))
	for i, t := range pr.Transforms {
		c.Transforms[i] = t
		c.Transforms[i].Attrs = append([]Attribute(nil), t.Attrs...)
	}
	return c
}
