package packet

import (
	"encoding/binary"
	"net/netip"
)

// Offsets of the IPv4 header fields.
const (
	ipv4VersIHL   = 0
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Protocol  = IPv4ProtocolOffset
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16
)

// Bits of the 3-bit IPv4 flags field, as returned by IPv4.Flags.
const (
	// IPv4FlagMoreFragments is the MF (more fragments) flag.
	IPv4FlagMoreFragments = 1 << 0
	// IPv4FlagDontFragment is the DF (don't fragment) flag.
	IPv4FlagDontFragment = 1 << 1
)

// IPv4 is a view of an IPv4 header, and usually of the packet that follows
// it. The accessors expect a view validated by ParseIPv4 or IsValid.
type IPv4 []byte

// ParseIPv4 checks that b starts with a well-formed IPv4 header (version 4,
// IHL >= 5, header and Total Length within b) and returns it as a view of
// the packet trimmed to Total Length.
func ParseIPv4(b []byte) (IPv4, error) {
	if len(b) == 0 {
		return nil, ErrTruncated
	}
	if b[0]>>4 != IPv4Version {
		return nil, ErrBadVersion
	}
	if len(b) < IPv4MinHeaderLen {
		return nil, ErrTruncated
	}
	hl := int(b[0]&0xf) * 4
	if hl < IPv4MinHeaderLen {
		return nil, ErrBadHeader
	}
	if hl > len(b) {
		return nil, ErrTruncated
	}
	tl := int(binary.BigEndian.Uint16(b[ipv4TotalLen:]))
	if tl < hl {
		return nil, ErrBadHeader
	}
	if tl > len(b) {
		return nil, ErrTruncated
	}
	return IPv4(b[:tl]), nil
}

// IsValid reports whether b holds a well-formed IPv4 header for a packet of
// pktLen bytes: version 4, IHL >= 5, the header within b, and Total Length
// between the header length and pktLen.
func (b IPv4) IsValid(pktLen int) bool {
	if len(b) < IPv4MinHeaderLen || b[0]>>4 != IPv4Version {
		return false
	}
	hl := int(b[0]&0xf) * 4
	tl := int(b.TotalLength())
	return hl >= IPv4MinHeaderLen && hl <= len(b) && tl >= hl && tl <= pktLen
}

// Version returns the IP version field (4 for a valid header).
func (b IPv4) Version() int { return int(b[ipv4VersIHL] >> 4) }

// HeaderLen returns the header length in bytes (IHL*4), options included.
func (b IPv4) HeaderLen() int { return int(b[ipv4VersIHL]&0xf) * 4 }

// TOS returns the Type of Service (DSCP and ECN) byte.
func (b IPv4) TOS() uint8 { return b[ipv4TOS] }

// TotalLength returns the Total Length field: header plus payload, in bytes.
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }

// ID returns the Identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// Flags returns the 3-bit flags field (IPv4FlagDontFragment,
// IPv4FlagMoreFragments).
func (b IPv4) Flags() uint8 { return b[ipv4FlagsFrag] >> 5 }

// DontFragment reports whether the DF flag is set.
func (b IPv4) DontFragment() bool { return b.Flags()&IPv4FlagDontFragment != 0 }

// MoreFragments reports whether the MF flag is set.
func (b IPv4) MoreFragments() bool { return b.Flags()&IPv4FlagMoreFragments != 0 }

// FragmentOffset returns the fragment offset in bytes (the field times 8).
func (b IPv4) FragmentOffset() uint16 {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) << 3
}

// IsFragment reports whether the packet is a fragment: MF set or a
// non-zero fragment offset.
func (b IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&0x3fff != 0
}

// TTL returns the Time To Live.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the Protocol field, the next header's protocol number.
func (b IPv4) Protocol() uint8 { return b[ipv4Protocol] }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// Src returns the source address.
func (b IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }

// Dst returns the destination address.
func (b IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4])) }

// Options returns the header options (empty when IHL is 5).
func (b IPv4) Options() []byte { return b[IPv4MinHeaderLen:b.HeaderLen()] }

// Payload returns the bytes after the header, up to Total Length.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():b.TotalLength()] }

// SetTOS sets the Type of Service byte.
func (b IPv4) SetTOS(v uint8) { b[ipv4TOS] = v }

// SetTotalLength sets the Total Length field.
func (b IPv4) SetTotalLength(v uint16) { binary.BigEndian.PutUint16(b[ipv4TotalLen:], v) }

// SetID sets the Identification field.
func (b IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(b[ipv4ID:], v) }

// SetFlagsFragmentOffset sets the 3-bit flags and the fragment offset,
// given in bytes (a multiple of 8, below 65536).
func (b IPv4) SetFlagsFragmentOffset(flags uint8, offset uint16) {
	binary.BigEndian.PutUint16(b[ipv4FlagsFrag:], uint16(flags)<<13|offset>>3)
}

// SetTTL sets the Time To Live.
func (b IPv4) SetTTL(v uint8) { b[ipv4TTL] = v }

// SetProtocol sets the Protocol field.
func (b IPv4) SetProtocol(v uint8) { b[ipv4Protocol] = v }

// SetChecksum sets the header checksum field.
func (b IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], v) }

// SetSrc sets the source address; a must be IPv4 or IPv4-mapped IPv6.
func (b IPv4) SetSrc(a netip.Addr) {
	v := a.As4()
	copy(b[ipv4Src:ipv4Src+4], v[:])
}

// SetDst sets the destination address; a must be IPv4 or IPv4-mapped IPv6.
func (b IPv4) SetDst(a netip.Addr) {
	v := a.As4()
	copy(b[ipv4Dst:ipv4Dst+4], v[:])
}

// ComputeChecksum computes the header checksum and stores it in the
// checksum field.
func (b IPv4) ComputeChecksum() {
	b.SetChecksum(0)
	b.SetChecksum(^Checksum(b[:b.HeaderLen()], 0))
}

// ChecksumValid reports whether the header checksum is correct.
func (b IPv4) ChecksumValid() bool {
	return Checksum(b[:b.HeaderLen()], 0) == 0xffff
}

// PseudoHeaderSum returns the one's complement sum of the TCP/UDP
// pseudo-header (RFC 768, RFC 9293) for this header's addresses, protocol
// proto and an upper-layer length of length bytes.
func (b IPv4) PseudoHeaderSum(proto uint8, length uint32) uint16 {
	return Checksum(b[ipv4Src:ipv4Dst+4], uint32(proto)+length>>16+length&0xffff)
}
