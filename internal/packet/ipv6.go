package packet

import (
	"encoding/binary"
	"net/netip"
)

// Offsets of the IPv6 header fields.
const (
	ipv6VersTCFL   = 0
	ipv6PayloadLen = 4
	ipv6NextHeader = IPv6NextHeaderOffset
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24
)

// IPv6 is a view of the fixed IPv6 header, and usually of the packet that
// follows it. The accessors expect a view validated by ParseIPv6 or IsValid.
type IPv6 []byte

// ParseIPv6 checks that b starts with a well-formed IPv6 header (version 6,
// the 40-byte header and Payload Length within b) and returns it as a view
// of the packet trimmed to the header plus Payload Length. Jumbograms
// (Payload Length 0 with a Jumbo Payload option) are not supported: their
// payload is seen as empty.
func ParseIPv6(b []byte) (IPv6, error) {
	if len(b) == 0 {
		return nil, ErrTruncated
	}
	if b[0]>>4 != IPv6Version {
		return nil, ErrBadVersion
	}
	if len(b) < IPv6HeaderLen {
		return nil, ErrTruncated
	}
	end := IPv6HeaderLen + int(binary.BigEndian.Uint16(b[ipv6PayloadLen:]))
	if end > len(b) {
		return nil, ErrTruncated
	}
	return IPv6(b[:end]), nil
}

// IsValid reports whether b holds a well-formed IPv6 header for a packet of
// pktLen bytes: version 6, the fixed header within b, and the header plus
// Payload Length within pktLen.
func (b IPv6) IsValid(pktLen int) bool {
	return len(b) >= IPv6HeaderLen && b[0]>>4 == IPv6Version &&
		IPv6HeaderLen+int(b.PayloadLength()) <= pktLen
}

// Version returns the IP version field (6 for a valid header).
func (b IPv6) Version() int { return int(b[ipv6VersTCFL] >> 4) }

// TrafficClass returns the Traffic Class (DSCP and ECN) byte.
func (b IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(b[ipv6VersTCFL:]) >> 4)
}

// FlowLabel returns the 20-bit Flow Label.
func (b IPv6) FlowLabel() uint32 {
	return binary.BigEndian.Uint32(b[ipv6VersTCFL:]) & 0xfffff
}

// PayloadLength returns the Payload Length: the bytes after the fixed
// header, extension headers included.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[ipv6PayloadLen:]) }

// NextHeader returns the Next Header field: the first extension header or
// the upper-layer protocol.
func (b IPv6) NextHeader() uint8 { return b[ipv6NextHeader] }

// HopLimit returns the Hop Limit.
func (b IPv6) HopLimit() uint8 { return b[ipv6HopLimit] }

// Src returns the source address.
func (b IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Src : ipv6Src+16])) }

// Dst returns the destination address.
func (b IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Dst : ipv6Dst+16])) }

// Payload returns the bytes after the fixed header, up to Payload Length.
func (b IPv6) Payload() []byte { return b[IPv6HeaderLen : IPv6HeaderLen+int(b.PayloadLength())] }

// SetTrafficClass sets the Traffic Class byte.
func (b IPv6) SetTrafficClass(v uint8) {
	w := binary.BigEndian.Uint16(b[ipv6VersTCFL:])
	binary.BigEndian.PutUint16(b[ipv6VersTCFL:], w&0xf00f|uint16(v)<<4)
}

// SetFlowLabel sets the Flow Label to the low 20 bits of v.
func (b IPv6) SetFlowLabel(v uint32) {
	w := binary.BigEndian.Uint32(b[ipv6VersTCFL:])
	binary.BigEndian.PutUint32(b[ipv6VersTCFL:], w&^0xfffff|v&0xfffff)
}

// SetPayloadLength sets the Payload Length.
func (b IPv6) SetPayloadLength(v uint16) { binary.BigEndian.PutUint16(b[ipv6PayloadLen:], v) }

// SetNextHeader sets the Next Header field.
func (b IPv6) SetNextHeader(v uint8) { b[ipv6NextHeader] = v }

// SetHopLimit sets the Hop Limit.
func (b IPv6) SetHopLimit(v uint8) { b[ipv6HopLimit] = v }

// SetSrc sets the source address (an IPv4 address is stored IPv4-mapped).
func (b IPv6) SetSrc(a netip.Addr) {
	v := a.As16()
	copy(b[ipv6Src:ipv6Src+16], v[:])
}

// SetDst sets the destination address (an IPv4 address is stored
// IPv4-mapped).
func (b IPv6) SetDst(a netip.Addr) {
	v := a.As16()
	copy(b[ipv6Dst:ipv6Dst+16], v[:])
}

// PseudoHeaderSum returns the one's complement sum of the upper-layer
// pseudo-header (RFC 8200 section 8.1) for this header's addresses,
// upper-layer protocol proto and an upper-layer length of length bytes.
// With a Routing header the checksum must use the final destination
// instead; see PseudoHeaderSum.
func (b IPv6) PseudoHeaderSum(proto uint8, length uint32) uint16 {
	return Checksum(b[ipv6Src:ipv6Dst+16], uint32(proto)+length>>16+length&0xffff)
}
