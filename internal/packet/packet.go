// Package packet provides zero-copy views of IPv4 and IPv6 headers and the
// packet helpers shared by the ESP and AH engines, the SPD and the dataplane:
// Internet checksums, IPv6 extension header walking, the transport-mode
// ESP/AH insertion point and flow (selector) extraction.
//
// Header views are byte slices with accessor methods in the style of
// gVisor's pkg/tcpip/header: they never copy and never allocate. Accessors
// and setters assume a view that has been validated (ParseIPv4, ParseIPv6,
// IsValid); the functions that take raw packet bytes (ParseIPv4, ParseIPv6,
// ParseLayout, TransportInsertion, ParseFlow, ExtensionHeaderLen, Version)
// never panic, whatever the input.
package packet

import "errors"

// IP version numbers.
const (
	IPv4Version = 4
	IPv6Version = 6
)

// Header sizes, in bytes.
const (
	// IPv4MinHeaderLen is the size of an IPv4 header without options.
	IPv4MinHeaderLen = 20
	// IPv4MaxHeaderLen is the size of an IPv4 header with the most options.
	IPv4MaxHeaderLen = 60
	// IPv6HeaderLen is the size of the fixed IPv6 header.
	IPv6HeaderLen = 40
	// IPv6FragmentHeaderLen is the size of the IPv6 Fragment header.
	IPv6FragmentHeaderLen = 8
	// IPv6MinExtHeaderLen is the smallest IPv6 extension header.
	IPv6MinExtHeaderLen = 8
)

// Offsets of the fields naming the next protocol in the fixed IP headers.
const (
	// IPv4ProtocolOffset is the offset of the IPv4 Protocol field.
	IPv4ProtocolOffset = 9
	// IPv6NextHeaderOffset is the offset of the IPv6 Next Header field.
	IPv6NextHeaderOffset = 6
)

// MaxExtensionHeaders is the most IPv6 extension headers ParseLayout, and
// so TransportInsertion and ParseFlow, will walk before giving up.
const MaxExtensionHeaders = 16

// IP protocol numbers (IPv4 Protocol, IPv6 Next Header) from the IANA
// registry.
const (
	ProtoHopByHop = 0   // IPv6 Hop-by-Hop Options
	ProtoICMP     = 1   // ICMP for IPv4
	ProtoIPv4     = 4   // IPv4 encapsulation (IP-in-IP)
	ProtoTCP      = 6   // TCP
	ProtoUDP      = 17  // UDP
	ProtoIPv6     = 41  // IPv6 encapsulation
	ProtoRouting  = 43  // IPv6 Routing header
	ProtoFragment = 44  // IPv6 Fragment header
	ProtoESP      = 50  // Encapsulating Security Payload
	ProtoAH       = 51  // Authentication Header
	ProtoICMPv6   = 58  // ICMP for IPv6
	ProtoNoNext   = 59  // IPv6 No Next Header
	ProtoDestOpts = 60  // IPv6 Destination Options
	ProtoSCTP     = 132 // SCTP
	ProtoUDPLite  = 136 // UDP-Lite
)

// Errors returned for packets that cannot be parsed. They are sentinels:
// compare with errors.Is (or ==); returning them never allocates.
var (
	// ErrTruncated reports a packet shorter than its headers or its
	// declared length.
	ErrTruncated = errors.New("packet: truncated")
	// ErrBadVersion reports an IP version other than 4 or 6, or other than
	// the one the caller asked for.
	ErrBadVersion = errors.New("packet: bad IP version")
	// ErrBadHeader reports a header whose fields are inconsistent, such as
	// an IPv4 IHL below 5 or a misplaced IPv6 Hop-by-Hop header.
	ErrBadHeader = errors.New("packet: malformed header")
	// ErrTooManyHeaders reports an IPv6 packet with more than
	// MaxExtensionHeaders extension headers.
	ErrTooManyHeaders = errors.New("packet: too many IPv6 extension headers")
)

// Version returns the IP version in the first nibble of pkt, or 0 if pkt
// is empty.
func Version(pkt []byte) int {
	if len(pkt) == 0 {
		return 0
	}
	return int(pkt[0] >> 4)
}
