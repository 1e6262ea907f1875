package message

import (
	"fmt"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// Lengths of the traffic selector substructures, header included.
const (
	tsIPv4Len = 16
	tsIPv6Len = 40
)

// TrafficSelector is one traffic selector (RFC 7296 section 3.13.1): an
// address range, an IP protocol (0 for any) and a port range. ICMP type and
// code travel in the ports; Start 65535 / End 0 is the OPAQUE port.
type TrafficSelector struct {
	Type       TSType
	Protocol   uint8
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
	Data       []byte // selector body of a type other than IPv4/IPv6 ranges
}

// String formats the selector like strongSwan: "10.0.0.0/24[tcp/80]" for a
// prefix, "a..b" for other ranges.
func (ts TrafficSelector) String() string {
	if ts.Type != TSIPv4AddrRange && ts.Type != TSIPv6AddrRange {
		return fmt.Sprintf("TS(%d):%x", ts.Type, ts.Data)
	}
	s := ts.Start.String() + ".." + ts.End.String()
	if p, ok := ts.Prefix(); ok {
		s = p.String()
	}
	switch {
	case ts.Protocol == 0 && ts.StartPort == 0 && ts.EndPort == 0xffff:
		return s
	case ts.StartPort == 0 && ts.EndPort == 0xffff:
		return fmt.Sprintf("%s[%d]", s, ts.Protocol)
	case ts.StartPort == 0xffff && ts.EndPort == 0:
		return fmt.Sprintf("%s[%d/OPAQUE]", s, ts.Protocol)
	case ts.StartPort == ts.EndPort:
		return fmt.Sprintf("%s[%d/%d]", s, ts.Protocol, ts.StartPort)
	}
	return fmt.Sprintf("%s[%d/%d-%d]", s, ts.Protocol, ts.StartPort, ts.EndPort)
}

// Prefix returns the prefix the address range is, if it is one.
func (ts TrafficSelector) Prefix() (netip.Prefix, bool) {
	if !ts.Start.IsValid() || !ts.End.IsValid() || ts.Start.BitLen() != ts.End.BitLen() {
		return netip.Prefix{}, false
	}
	for bits := 0; bits <= ts.Start.BitLen(); bits++ {
		p, err := ts.Start.Prefix(bits)
		if err != nil || p.Addr() != ts.Start {
			continue
		}
		if lastAddr(p) == ts.End {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// lastAddr returns the highest address of prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TSi is the Traffic Selector payload of the initiator.
type TSi struct{ Selectors []TrafficSelector }

// TSr is the Traffic Selector payload of the responder.
type TSr struct{ Selectors []TrafficSelector }

// Type returns PayloadTSi.
func (*TSi) Type() PayloadType { return PayloadTSi }

// Type returns PayloadTSr.
func (*TSr) Type() PayloadType { return PayloadTSr }

func (p *TSi) marshal(b *cryptobyte.Builder)       { marshalTS(b, PayloadTSi, p.Selectors) }
func (p *TSr) marshal(b *cryptobyte.Builder)       { marshalTS(b, PayloadTSr, p.Selectors) }
func (p *TSi) unmarshal(s cryptobyte.String) error { return unmarshalTS(s, PayloadTSi, &p.Selectors) }
func (p *TSr) unmarshal(s cryptobyte.String) error { return unmarshalTS(s, PayloadTSr, &p.Selectors) }

func marshalTS(b *cryptobyte.Builder, pt PayloadType, sel []TrafficSelector) {
	if len(sel) > 255 {
		b.SetError(errorf(ErrMarshal, pt, "%d traffic selectors", len(sel)))
		return
	}
	b.AddUint8(uint8(len(sel)))
	b.AddBytes([]byte{0, 0, 0})
	for _, ts := range sel {
		var addrLen int
		switch ts.Type {
		case TSIPv4AddrRange:
			addrLen = 4
		case TSIPv6AddrRange:
			addrLen = 16
		default:
			if len(ts.Data)+4 > 0xffff {
				b.SetError(errorf(ErrMarshal, pt, "selector of %d octets", len(ts.Data)))
				return
			}
			b.AddUint8(uint8(ts.Type))
			b.AddUint8(ts.Protocol)
			b.AddUint16(uint16(len(ts.Data) + 4))
			b.AddBytes(ts.Data)
			continue
		}
		if ts.Start.BitLen() != addrLen*8 || ts.End.BitLen() != addrLen*8 {
			b.SetError(errorf(ErrMarshal, pt, "%v selector with addresses %v, %v", ts.Type, ts.Start, ts.End))
			return
		}
		b.AddUint8(uint8(ts.Type))
		b.AddUint8(ts.Protocol)
		b.AddUint16(uint16(8 + 2*addrLen))
		b.AddUint16(ts.StartPort)
		b.AddUint16(ts.EndPort)
		b.AddBytes(ts.Start.AsSlice())
		b.AddBytes(ts.End.AsSlice())
	}
}

func unmarshalTS(s cryptobyte.String, pt PayloadType, out *[]TrafficSelector) error {
	var n uint8
	if !s.ReadUint8(&n) || !s.Skip(3) {
		return errorf(ErrTruncated, pt, "%d octets", len(s))
	}
	// Capacity from the count, bounded by the 4 octets a selector needs.
	*out = make([]TrafficSelector, 0, min(int(n), len(s)/4))
	for !s.Empty() {
		if len(*out) == int(n) {
			return errorf(ErrSyntax, pt, "%d selectors announced, more present", n)
		}
		var typ, proto uint8
		var length uint16
		if !s.ReadUint8(&typ) || !s.ReadUint8(&proto) || !s.ReadUint16(&length) {
			return errorf(ErrTruncated, pt, "selector header cut short")
		}
		ts := TrafficSelector{Type: TSType(typ), Protocol: proto}
		var want int
		switch ts.Type {
		case TSIPv4AddrRange:
			want = tsIPv4Len
		case TSIPv6AddrRange:
			want = tsIPv6Len
		}
		if length < 4 || (want != 0 && int(length) != want) {
			return errorf(ErrLength, pt, "%v selector of length %d", ts.Type, length)
		}
		var body cryptobyte.String
		if !s.ReadBytes((*[]byte)(&body), int(length)-4) {
			return errorf(ErrTruncated, pt, "selector length %d, %d octets left", length, len(s)+4)
		}
		if want == 0 {
			ts.Data = rest(&body)
		} else {
			var start, end []byte
			half := (want - 8) / 2
			body.ReadUint16(&ts.StartPort)
			body.ReadUint16(&ts.EndPort)
			body.ReadBytes(&start, half)
			body.ReadBytes(&end, half)
			ts.Start, _ = netip.AddrFromSlice(start)
			ts.End, _ = netip.AddrFromSlice(end)
		}
		*out = append(*out, ts)
	}
	if len(*out) != int(n) {
		return errorf(ErrSyntax, pt, "%d selectors announced, %d present", n, len(*out))
	}
	if n == 0 {
		*out = nil
	}
	return nil
}
