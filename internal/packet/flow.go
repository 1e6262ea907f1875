package packet

import "net/netip"

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
