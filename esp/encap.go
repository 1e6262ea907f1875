package esp

import (
	"encoding/binary"
	"fmt"

	"github.com/goipsec/goipsec/internal/packet"
)

// Mode is the IPsec mode of an SA.
type Mode uint8

// IPsec modes.
const (
	Tunnel    Mode = iota + 1 // the whole inner IP packet is protected
	Transport                 // only the transport payload; the IP header stays in front
)

// String returns "tunnel" or "transport".
func (m Mode) String() string {
	switch m {
	case Tunnel:
		return "tunnel"
	case Transport:
		return "transport"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// UDPEncapLen is the length of the UDP header that RFC 3948 puts in front of
// ESP.
const UDPEncapLen = 8

// EncapTunnel protects the IP packet buf[off:end] as tunnel-mode payload and
// returns the ESP packet's bounds; the caller prepends the outer headers.
func (sa *SA) EncapTunnel(buf []byte, off, end int) (start, newEnd int, err error) {
	return sa.EncapTunnelAt(buf, off, end, 0)
}

// EncapTunnelAt is EncapTunnel with sequence number seq, reserved by
// ReserveSeq (0 takes the next one).
func (sa *SA) EncapTunnelAt(buf []byte, off, end int, seq uint64) (start, newEnd int, err error) {
	if off < 0 || end < off || end > cap(buf) {
		return 0, 0, ErrNoRoom
	}
	nh, err := innerProto(buf[:cap(buf)][off:end])
	if err != nil {
		return 0, 0, err
	}
	if seq == 0 {
		if seq, err = sa.nextSeq(1); err != nil {
			return 0, 0, err
		}
	}
	return sa.seal(buf, off, end, nh, seq)
}

// EncapTunnelTo is EncapTunnel writing the ESP packet to dst, from its
// first byte, instead of in place: so that a batch of packets can be
// sealed back to back into one buffer (one iovec for a whole UDP GSO
// send). The IP packet is src[off:end]; src needs no headroom, but its
// capacity must leave TrailerLen()+ScratchLen bytes after end (the
// trailer is written there before encryption, and the scratch space is
// taken there too). dst must hold Overhead(end-off)+end-off bytes. It
// returns the ESP packet's length. The combined-mode ciphers (AES-GCM,
// ChaCha20-Poly1305) encrypt straight from src into dst; the others seal
// in place, which needs Headroom() before off, and copy.
func (sa *SA) EncapTunnelTo(dst, src []byte, off, end int) (int, error) {
	return sa.EncapTunnelToAt(dst, src, off, end, 0)
}

// EncapTunnelToAt is EncapTunnelTo with sequence number seq, reserved by
// ReserveSeq (0 takes the next one).
func (sa *SA) EncapTunnelToAt(dst, src []byte, off, end int, seq uint64) (int, error) {
	if off < 0 || end < off || end > cap(src) {
		return 0, ErrNoRoom
	}
	nh, err := innerProto(src[:cap(src)][off:end])
	if err != nil {
		return 0, err
	}
	if sa.Overhead(end-off)+end-off > len(dst) {
		return 0, ErrNoRoom
	}
	if sa.aead == nil || sa.isGMAC {
		start, e, err := sa.SealAt(src, off, end, nh, seq)
		if err != nil {
			return 0, err
		}
		return copy(dst, src[start:e]), nil
	}
	src = src[:cap(src)]
	pad := sa.padLen(end - off)
	ctEnd := end + pad + 2
	total := sa.hdrLen + ctEnd - off + sa.icvLen
	if ctEnd+ScratchLen > len(src) {
		return 0, ErrNoRoom
	}
	if seq == 0 {
		if seq, err = sa.nextSeq(1); err != nil {
			return 0, err
		}
	}
	if sa.fast {
		// One store, running into src's scratch space after the trailer.
		binary.LittleEndian.PutUint64(src[end:end+8], trailerWord(pad, nh))
	} else {
		writeTrailer(src[end:ctEnd], pad, nh)
	}
	sa.sealAEADTo(dst[:total], src[off:ctEnd], src[ctEnd:ctEnd+ScratchLen], seq)
	return total, nil
}

// writeTrailer writes ESP's padding (1, 2, 3, ...), pad length and next
// header into t[:pad+2] (RFC 4303 section 2.4).
func writeTrailer(t []byte, pad int, nh uint8) {
	for i := range pad {
		t[i] = byte(i + 1)
	}
	t[pad] = byte(pad)
	t[pad+1] = nh
}

// sealAEADTo writes the ESP header for seq at the start of dst and seals
// plain (payload and trailer) with the combined-mode cipher into the rest
// of it: dst is exactly the ESP packet. The nonce and AAD are built in
// scratch (ScratchLen bytes), cleared afterwards.
func (sa *SA) sealAEADTo(dst, plain, scratch []byte, seq uint64) {
	if sa.fast && sa.fixedIV == nil { // see sealFast
		iv := sa.putHeader16(dst[:16], seq)
		sa.ivAEAD.SealIV(dst[16:16:len(dst)], &sa.salt, iv, plain, dst[:8])
		return
	}
	hdr := dst[:sa.hdrLen]
	binary.BigEndian.PutUint32(hdr[0:4], sa.spi)
	binary.BigEndian.PutUint32(hdr[4:8], uint32(seq))
	iv := sa.putIV(hdr, seq)
	nonce := scratch[:12] // used only by an AEAD that wants it whole
	if !sa.esn {
		sa.sealAEAD(dst[sa.hdrLen:sa.hdrLen:len(dst)], iv, nonce, plain, hdr[:HeaderLen])
		if sa.ivAEAD == nil {
			clear(nonce) // only what was written: the line after is cold
		}
		return
	}
	sa.sealAEAD(dst[sa.hdrLen:sa.hdrLen:len(dst)], iv, nonce, plain, sa.aad(hdr, scratch[12:24], seq))
	clear(scratch[:24])
}

// SealsFrom reports whether EncapTunnelFrom works for the SA: true for the
// combined-mode ciphers that encrypt (AES-GCM, ChaCha20-Poly1305).
func (sa *SA) SealsFrom() bool { return sa.aead != nil && !sa.isGMAC }

// maxFromTrailer is the most padding and trailer EncapTunnelFrom writes
// after the packet (block alignment 16 at most, then pad length and next
// header).
const maxFromTrailer = 15 + 2

// EncapTunnelFrom is EncapTunnelTo for a source that must stay as it is
// around the packet src[off:end], such as the next packet of a
// super-packet: the padding and trailer the cipher reads after the packet
// are written to src[end:] and the bytes there put back afterwards (so
// cap(src) must leave TrailerLen()-ICV bytes, at most 17, after end), and
// the scratch space is taken in dst after the ESP packet (dst must hold
// Overhead(end-off)+end-off+ScratchLen bytes). It returns the ESP
// packet's length, or ErrNotSupported unless SealsFrom.
func (sa *SA) EncapTunnelFrom(dst, src []byte, off, end int) (int, error) {
	return sa.EncapTunnelFromAt(dst, src, off, end, 0)
}

// EncapTunnelFromAt is EncapTunnelFrom with sequence number seq, reserved
// by ReserveSeq (0 takes the next one).
func (sa *SA) EncapTunnelFromAt(dst, src []byte, off, end int, seq uint64) (int, error) {
	if !sa.SealsFrom() {
		return 0, fmt.Errorf("esp: %s does not seal from another buffer: %w", sa.enc.Name, ErrNotSupported)
	}
	if off < 0 || end < off || end > cap(src) {
		return 0, ErrNoRoom
	}
	src = src[:cap(src)]
	nh, err := innerProto(src[off:end])
	if err != nil {
		return 0, err
	}
	pad := sa.padLen(end - off)
	ctEnd := end + pad + 2
	total := sa.hdrLen + ctEnd - off + sa.icvLen
	if ctEnd > len(src) || pad+2 > maxFromTrailer || total+ScratchLen > len(dst) {
		return 0, ErrNoRoom
	}
	if seq == 0 {
		if seq, err = sa.nextSeq(1); err != nil {
			return 0, err
		}
	}
	var saved [maxFromTrailer]byte
	trailer := src[end:ctEnd]
	copy(saved[:], trailer)
	writeTrailer(trailer, pad, nh)
	sa.sealAEADTo(dst[:total], src[off:ctEnd], dst[total:total+ScratchLen], seq)
	copy(trailer, saved[:pad+2])
	return total, nil
}

func innerProto(pkt []byte) (uint8, error) {
	if len(pkt) == 0 {
		return 0, fmt.Errorf("esp: empty inner packet: %w", ErrBadInner)
	}
	switch pkt[0] >> 4 {
	case 4:
		return packet.ProtoIPv4, nil
	case 6:
		return packet.ProtoIPv6, nil
	}
	return 0, fmt.Errorf("esp: inner IP version %d: %w", pkt[0]>>4, ErrBadInner)
}

// EncapTransport protects the IP packet buf[off:end] in transport mode: the
// IP header (and the IPv6 extension headers that precede ESP) moves forward
// into the headroom, ESP is inserted after it, the protocol / next header
// field becomes ESP (or UDP when udp is set, RFC 3948) and lengths and the
// IPv4 checksum are fixed. It returns the bounds of the whole IP packet.
func (sa *SA) EncapTransport(buf []byte, off, end int, udp *UDPPorts) (start, newEnd int, err error) {
	buf = buf[:cap(buf)]
	if off < 0 || end < off || end > len(buf) {
		return 0, 0, ErrNoRoom
	}
	pkt := buf[off:end]
	nhOff, ins, err := packet.TransportInsertion(pkt)
	if err != nil {
		return 0, 0, fmt.Errorf("esp: transport: %w: %w", ErrBadInner, err)
	}
	if pkt[0]>>4 == 4 {
		ip := packet.IPv4(pkt)
		if ip.MoreFragments() || ip.FragmentOffset() != 0 {
			return 0, 0, fmt.Errorf("esp: transport mode on an IPv4 fragment: %w", ErrNotSupported)
		}
	}
	proto := pkt[nhOff]
	encap := 0
	if udp != nil {
		encap = UDPEncapLen
	}
	newOff := off - sa.hdrLen - encap
	if newOff < sa.preroom() {
		return 0, 0, ErrNoRoom
	}
	// The IP length fields are 16 bits (IPv6: the payload after the fixed
	// header): refuse what would not fit rather than wrap them.
	grown := len(pkt) + encap + sa.Overhead(len(pkt)-ins)
	if pkt[0]>>4 == 6 {
		grown -= packet.IPv6HeaderLen
	}
	if grown > 0xffff {
		return 0, 0, fmt.Errorf("esp: transport: %d bytes after ESP exceed the IP length field: %w", grown, ErrTooBig)
	}
	// Reserve the sequence number before touching the buffer.
	seq, err := sa.nextSeq(1)
	if err != nil {
		return 0, 0, err
	}
	copy(buf[newOff:], buf[off:off+ins])
	_, newEnd, err = sa.seal(buf, off+ins, end, proto, seq)
	if err != nil {
		return 0, 0, err
	}
	out := buf[newOff:newEnd]
	if udp != nil {
		out[nhOff] = packet.ProtoUDP
		writeUDP(out, ins, udp)
	} else {
		out[nhOff] = packet.ProtoESP
	}
	fixIPLength(out)
	return newOff, newEnd, nil
}

// UDPPorts are the ports of the RFC 3948 UDP header in front of ESP.
type UDPPorts struct {
	Src, Dst uint16
}

// writeUDP writes the UDP header at pkt[off:] covering the rest of pkt. The
// checksum is zero over IPv4 (RFC 3948 section 2.1) and computed over IPv6,
// where a zero UDP checksum is not allowed.
func writeUDP(pkt []byte, off int, udp *UDPPorts) {
	u := pkt[off:]
	binary.BigEndian.PutUint16(u[0:2], udp.Src)
	binary.BigEndian.PutUint16(u[2:4], udp.Dst)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	u[6], u[7] = 0, 0
	if pkt[0]>>4 == 6 {
		ip := packet.IPv6(pkt)
		sum := packet.PseudoHeaderSum(packet.ProtoUDP, ip.Src(), ip.Dst(), uint32(len(u)))
		c := ^packet.Checksum(u, uint32(sum))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:8], c)
	}
}

// fixIPLength sets the IP length field for the packet's new size and, for
// IPv4, the header checksum.
func fixIPLength(pkt []byte) {
	if pkt[0]>>4 == 4 {
		ip := packet.IPv4(pkt)
		ip.SetTotalLength(uint16(len(pkt)))
		ip.ComputeChecksum()
		return
	}
	packet.IPv6(pkt).SetPayloadLength(uint16(len(pkt) - packet.IPv6HeaderLen))
}

// DecapTunnel opens the ESP packet buf[off:end] of a tunnel-mode SA and
// returns the inner IP packet's bounds, with any TFC padding cut off.
func (sa *SA) DecapTunnel(buf []byte, off, end int) (start, newEnd int, err error) {
	var nh uint8
	if sa.fast && !sa.dead.Load() {
		start, newEnd, nh, _, err = sa.openFast(buf, off, end)
	} else {
		start, newEnd, nh, _, err = sa.Open(buf, off, end)
	}
	if err != nil {
		return 0, 0, err
	}
	inner := buf[:cap(buf)][start:newEnd]
	var n int
	switch nh {
	case packet.ProtoIPv4:
		if len(inner) < packet.IPv4MinHeaderLen || inner[0]>>4 != 4 {
			return 0, 0, sa.err(ErrBadInner)
		}
		n = int(packet.IPv4(inner).TotalLength())
	case packet.ProtoIPv6:
		if len(inner) < packet.IPv6HeaderLen || inner[0]>>4 != 6 {
			return 0, 0, sa.err(ErrBadInner)
		}
		n = packet.IPv6HeaderLen + int(packet.IPv6(inner).PayloadLength())
	default:
		return 0, 0, sa.err(ErrNextHeader)
	}
	if n > len(inner) || n < 20 {
		return 0, 0, sa.err(ErrBadInner)
	}
	return start, start + n, nil // the rest is TFC padding (RFC 4303 2.7)
}

// DecapTransport opens a transport-mode packet: buf[off:end] is the whole IP
// packet and the ESP header starts at espOff (after the IP header, its
// extension headers and, with UDP encapsulation, the UDP header). The IP
// header moves back to sit in front of the decrypted payload, with the next
// header, lengths and IPv4 checksum fixed. It returns the bounds of the
// resulting IP packet.
func (sa *SA) DecapTransport(buf []byte, off, espOff, end int) (start, newEnd int, err error) {
	buf = buf[:cap(buf)]
	if espOff <= off || espOff > end || end > len(buf) {
		return 0, 0, fmt.Errorf("esp: transport: ESP offset out of range: %w", ErrBadLength)
	}
	nhOff, hdrLen, err := outerChain(buf[off:espOff])
	if err != nil {
		return 0, 0, err
	}
	pstart, pend, nh, _, err := sa.Open(buf, espOff, end)
	if err != nil {
		return 0, 0, err
	}
	start = pstart - hdrLen
	copy(buf[start:pstart], buf[off:off+hdrLen])
	out := buf[start:pend]
	out[nhOff] = nh
	fixIPLength(out)
	return start, pend, nil
}

// outerChain finds, in hdr (the IP header up to the ESP header), the offset
// of the next-header byte that names ESP (or UDP, for RFC 3948) and the
// length of the IP header chain to keep.
func outerChain(hdr []byte) (nhOff, keep int, err error) {
	if len(hdr) < 1 {
		return 0, 0, ErrTruncated
	}
	var next uint8
	switch hdr[0] >> 4 {
	case 4:
		if len(hdr) < packet.IPv4MinHeaderLen {
			return 0, 0, ErrTruncated
		}
		nhOff, keep, next = 9, int(hdr[0]&0xf)*4, hdr[9]
	case 6:
		if len(hdr) < packet.IPv6HeaderLen {
			return 0, 0, ErrTruncated
		}
		nhOff, keep, next = 6, packet.IPv6HeaderLen, hdr[6]
		for i := 0; i < 16 && keep < len(hdr) && next != packet.ProtoESP && next != packet.ProtoUDP; i++ {
			if keep+8 > len(hdr) {
				return 0, 0, ErrTruncated
			}
			var l int
			switch next {
			case packet.ProtoHopByHop, packet.ProtoRouting, packet.ProtoDestOpts:
				l = (int(hdr[keep+1]) + 1) * 8
			case packet.ProtoFragment:
				l = 8
			default:
				return 0, 0, fmt.Errorf("esp: transport: extension header %d before ESP: %w", next, ErrBadInner)
			}
			nhOff, next = keep, hdr[keep]
			keep += l
		}
	default:
		return 0, 0, fmt.Errorf("esp: transport: IP version %d: %w", hdr[0]>>4, ErrBadInner)
	}
	switch {
	case next == packet.ProtoESP && keep == len(hdr):
	case next == packet.ProtoUDP && keep+UDPEncapLen == len(hdr):
	default:
		return 0, 0, fmt.Errorf("esp: transport: headers before ESP do not add up: %w", ErrBadLength)
	}
	return nhOff, keep, nil
}
