package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum returns the 16-bit one's complement sum (RFC 1071) of b, added
// to initial, folded but not complemented: the value to store in a checksum
// field is ^Checksum(...), and data covered by a correct checksum sums to
// 0xffff. initial lets sums be chained, for example from PseudoHeaderSum;
// every part but the last must then have an even length.
func Checksum(b []byte, initial uint32) uint16 {
	// A one's complement sum can be accumulated in 64-bit words with
	// end-around carry: 2^64 = 1 mod 0xffff, so folding gives the same
	// result as summing 16-bit words.
	sum := uint64(initial)
	var c uint64
	for ; len(b) >= 64; b = b[64:] {
		w := b[:64]
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[0:8]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[8:16]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[16:24]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[24:32]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[32:40]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[40:48]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[48:56]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(w[56:64]), c)
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint32(b[0:4])), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint16(b[0:2])), c)
		b = b[2:]
	}
	if len(b) == 1 {
		sum, c = bits.Add64(sum, uint64(b[0])<<8, c)
	}
	sum, c = bits.Add64(sum, c, 0)
	sum += c // cannot carry again: sum is 0 when c is 1
	return fold64(sum)
}

// fold64 folds a 64-bit one's complement accumulator to 16 bits.
func fold64(s uint64) uint16 {
	s = s>>32 + s&0xffffffff // <= 0x1_ffff_fffe
	s = s>>32 + s&0xffffffff // <= 0xffff_ffff
	s = s>>16 + s&0xffff     // <= 0x1_fffe
	s = s>>16 + s&0xffff     // <= 0xffff
	return uint16(s)
}

// ChecksumCombine returns the one's complement sum of two partial sums.
func ChecksumCombine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s>>16 + s&0xffff)
}

// UpdateChecksum returns the new value of a checksum field after a 16-bit
// word it covers changes from the value from to the value to (RFC 1624
// equation 3). A UDP checksum field of 0 means "no checksum" and must not
// be updated.
func UpdateChecksum(field, from, to uint16) uint16 {
	s := uint32(^field) + uint32(^from) + uint32(to)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// UpdateChecksum32 is UpdateChecksum for a 32-bit word at an even offset,
// such as an IPv4 address.
func UpdateChecksum32(field uint16, from, to uint32) uint16 {
	s := uint64(^field) + uint64(^from) + uint64(to)
	return ^fold64(s)
}

// UpdateChecksumBytes is UpdateChecksum for a run of bytes at an even
// offset, such as an IPv6 address; from and to must have the same length.
func UpdateChecksumBytes(field uint16, from, to []byte) uint16 {
	s := uint32(^field) + uint32(^Checksum(from, 0)) + uint32(Checksum(to, 0))
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// PseudoHeaderSum returns the one's complement sum of the TCP/UDP
// pseudo-header for addresses src and dst, protocol proto and an
// upper-layer length of length bytes: the IPv4 pseudo-header (RFC 768,
// RFC 9293) when both addresses are IPv4, the IPv6 one (RFC 8200 section
// 8.1) otherwise. For IPv6, dst is the final destination.
func PseudoHeaderSum(proto uint8, src, dst netip.Addr, length uint32) uint16 {
	s := Checksum(nil, uint32(proto)+length>>16+length&0xffff)
	if src.Is4() && dst.Is4() {
		a, b := src.As4(), dst.As4()
		s = Checksum(a[:], uint32(s))
		return Checksum(b[:], uint32(s))
	}
	a, b := src.As16(), dst.As16()
	s = Checksum(a[:], uint32(s))
	return Checksum(b[:], uint32(s))
}
