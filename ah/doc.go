// Package ah implements the Authentication Header (RFC 4302) for IPv4 and
// IPv6: the ICV over the packet with mutable fields zeroed.
//
// An SA (NewSA) protects packets in place in a caller's buffer, with
// headroom before the packet for the AH header (and, in tunnel mode, the
// outer IP header) and ScratchLen bytes of tailroom after it:
// EncapTunnel / EncapTransport to send, DecapTunnel / DecapTransport to
// receive, SealBatch / OpenBatch for batches, and the primitives Seal and
// Open underneath. Locate finds the AH header and SPI of a received packet.
// Nothing on the packet path allocates.
//
// The ICV covers the whole IP packet as the receiver sees it (RFC 4302
// section 3.3.3.1): the IPv4 TOS, flags, fragment offset, TTL and checksum,
// the IPv6 traffic class, flow label and hop limit, the IPv4 options that
// Appendix A does not list as immutable (unknown ones included) and the
// data of IPv6 options whose change-en-route bit is set are zeroed; the
// sender puts the final destination of an IPv4 source route, and a type 0
// or 2 IPv6 routing header as it will arrive, into the computation. The ICV
// field is padded to 32 bits over IPv4 and 64 bits over IPv6; the padding
// is sent as zeros and covered by the ICV. With ESN the high 32 bits of the
// sequence number are appended to the ICV input (RFC 4302 section 3.3.3.2,
// Appendix B). Fragments are refused both ways: AH protects whole packets.
//
// AES-GMAC (RFC 4543 section 4) carries an 8-byte IV (the 64-bit sequence
// number) at the start of the ICV field, before the 16-byte tag; the nonce
// is the 4-byte salt and the IV; the tag is GMAC over the packet prepared as
// above, with the whole ICV field (IV and tag) zeroed and any ESN high bits
// appended.
package ah
