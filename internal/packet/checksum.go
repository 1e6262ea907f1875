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
	// The sum is taken over 32-bit words as they lie in memory
	// (little-endian here), each added to one of four 64-bit accumulators
	// that cannot overflow (2^32 words would be needed): no add-with-carry
	// chain, whose one carry flag serializes the additions, and no byte
	// swap. Folding gives the sum of the 16-bit words in memory order
	// (2^16 = 1 mod 0xffff), which is the big-endian sum with its two
	// bytes swapped (RFC 1071 section 2(B)); initial is swapped to match
	// and the result swapped back.
	s0 := uint64(bits.ReverseBytes16(fold32(initial)))
	var s1, s2, s3 uint64
	for ; len(b) >= 64; b = b[64:] {
		w := (*[64]byte)(b)
		s0 += uint64(binary.LittleEndian.Uint32(w[0:4]))
		s1 += uint64(binary.LittleEndian.Uint32(w[4:8]))
		s2 += uint64(binary.LittleEndian.Uint32(w[8:12]))
		s3 += uint64(binary.LittleEndian.Uint32(w[12:16]))
		s0 += uint64(binary.LittleEndian.Uint32(w[16:20]))
		s1 += uint64(binary.LittleEndian.Uint32(w[20:24]))
		s2 += uint64(binary.LittleEndian.Uint32(w[24:28]))
		s3 += uint64(binary.LittleEndian.Uint32(w[28:32]))
		s0 += uint64(binary.LittleEndian.Uint32(w[32:36]))
		s1 += uint64(binary.LittleEndian.Uint32(w[36:40]))
		s2 += uint64(binary.LittleEndian.Uint32(w[40:44]))
		s3 += uint64(binary.LittleEndian.Uint32(w[44:48]))
		s0 += uint64(binary.LittleEndian.Uint32(w[48:52]))
		s1 += uint64(binary.LittleEndian.Uint32(w[52:56]))
		s2 += uint64(binary.LittleEndian.Uint32(w[56:60]))
		s3 += uint64(binary.LittleEndian.Uint32(w[60:64]))
	}
	for ; len(b) >= 8; b = b[8:] {
		w := binary.LittleEndian.Uint64(b)
		s1 += w & 0xffffffff
		s2 += w >> 32
	}
	if len(b) >= 4 {
		s3 += uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	// The last 0-3 bytes, padded with zeros after them (an odd last byte
	// is the high byte of its 16-bit word, as RFC 1071 pads).
	var t uint64
	for i, v := range b {
		t |= uint64(v) << (8 * i)
	}
	// Each accumulator stays below 2^62 for any b under 16 GiB: their
	// sum cannot overflow.
	return bits.ReverseBytes16(fold64(s0 + s1 + s2 + s3 + t))
}

// fold32 folds a 32-bit one's complement sum to 16 bits.
func fold32(s uint32) uint16 {
	s = s>>16 + s&0xffff // <= 0x1_fffe
	s = s>>16 + s&0xffff // <= 0xffff
	return uint16(s)
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
