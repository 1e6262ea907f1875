package packet

import (
	"encoding/binary"
	"net/netip"
)

// Flow is the selector-relevant part of an IP packet: the addresses, the
// upper-layer protocol and its ports. For ICMP and ICMPv6, as in RFC 4301
// section 4.4.1.1, SrcPort carries the message type and DstPort the code.
// Protocols without ports leave both zero.
type Flow struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	// Opaque is set when the ports could not be read (a non-first fragment,
	// or an IPv6 header chain too long to follow); selectors that name
	// ports must then treat the ports as OPAQUE (RFC 4301 section 4.4.1).
	Opaque bool
}

// ParseFlow fills f from the IPv4 or IPv6 packet pkt: addresses, next layer
// protocol (found past any IPv6 extension headers; AH and ESP count as next
// layer protocols) and, for TCP, UDP, SCTP and UDP-Lite, the ports or, for
// ICMP and ICMPv6, the type and code. Opaque is set, ports left zero, for a
// non-first fragment, a payload too short to hold the ports, or more than
// MaxExtensionHeaders IPv6 extension headers, in which case Proto is the
// extension header where the walk stopped. It returns the errors of
// ParseLayout otherwise, leaving f zero.
func ParseFlow(pkt []byte, f *Flow) error {
	*f = Flow{}
	var l Layout
	err := ParseLayout(pkt, &l)
	if err != nil && err != ErrTooManyHeaders {
		return err
	}
	if l.Version == IPv4Version {
		f.Src = netip.AddrFrom4([4]byte(pkt[ipv4Src : ipv4Src+4]))
		f.Dst = netip.AddrFrom4([4]byte(pkt[ipv4Dst : ipv4Dst+4]))
	} else {
		f.Src = netip.AddrFrom16([16]byte(pkt[ipv6Src : ipv6Src+16]))
		f.Dst = netip.AddrFrom16([16]byte(pkt[ipv6Dst : ipv6Dst+16]))
	}
	f.Proto = l.Proto
	if err != nil || l.FragmentOffset != 0 {
		f.Opaque = true
		return nil
	}
	p := pkt[l.ProtoOff:l.End]
	switch l.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP, ProtoUDPLite:
		if len(p) < 4 {
			f.Opaque = true
			return nil
		}
		f.SrcPort = binary.BigEndian.Uint16(p[0:2])
		f.DstPort = binary.BigEndian.Uint16(p[2:4])
	case ProtoICMP, ProtoICMPv6:
		if len(p) < 2 {
			f.Opaque = true
			return nil
		}
		f.SrcPort, f.DstPort = uint16(p[0]), uint16(p[1])
	}
	return nil
}
