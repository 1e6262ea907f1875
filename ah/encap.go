package ah

import (
	"encoding/binary"
	"fmt"

	"github.com/goipsec/goipsec/internal/packet"
)

// Mode is the IPsec mode of an SA.
type Mode uint8

// IPsec modes.
const (
	Tunnel    Mode = iota + 1 // the whole inner IP packet is protected, behind a new outer header
	Transport                 // AH goes into the packet, after its IP header
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

// maxIPLen is the largest IPv4 Total Length and IPv6 Payload Length.
const maxIPLen = 0xffff

// EncapTunnel protects the IP packet buf[off:end] in tunnel mode: it writes
// the outer header outer and the AH header in front of it, in the headroom,
// and returns the bounds of the outer packet. outer is a template: an IPv4
// header (options included) or an IPv6 header with any Hop-by-Hop,
// Destination Options and Routing headers; its lengths, checksum and last
// next header are filled in, and an IPv4 Identification of 0 is replaced by
// the low 16 bits of the sequence number. off must leave len(outer) plus
// HeaderLen of the outer version, and cap(buf) ScratchLen after end.
func (sa *SA) EncapTunnel(buf []byte, off, end int, outer []byte) (start, newEnd int, err error) {
	seq, err := sa.nextSeq(1)
	if err != nil {
		return 0, 0, err
	}
	start, newEnd, _, err = sa.encapTunnelSeq(buf, off, end, outer, seq)
	return start, newEnd, err
}

// encapTunnelSeq is EncapTunnel with a reserved sequence number; it also
// returns AH's next header.
func (sa *SA) encapTunnelSeq(buf []byte, off, end int, outer []byte, seq uint64) (int, int, uint8, error) {
	buf = buf[:cap(buf)]
	if off < 0 || end < off || end+ScratchLen > len(buf) {
		return 0, 0, 0, ErrNoRoom
	}
	nh, err := innerProto(buf[off:end])
	if err != nil {
		return 0, 0, 0, err
	}
	v, nhOff, err := template(outer)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("ah: spi %#x: outer header: %w", sa.spi, err)
	}
	ahLen := sa.HeaderLen(v)
	start := off - ahLen - len(outer)
	if start < 0 {
		return 0, 0, 0, ErrNoRoom
	}
	copy(buf[start:], outer)
	pkt := buf[start:end]
	pkt[nhOff] = packet.ProtoAH
	if err := setLength(pkt); err != nil {
		return 0, 0, 0, fmt.Errorf("ah: spi %#x: %w", sa.spi, err)
	}
	if v == 4 && binary.BigEndian.Uint16(pkt[4:6]) == 0 {
		binary.BigEndian.PutUint16(pkt[4:6], uint16(seq))
	}
	if err := sa.sealSeq(buf, start, start+len(outer), end, nh, seq); err != nil {
		return 0, 0, 0, err
	}
	return start, end, nh, nil
}

// innerProto returns the protocol number of the tunnelled IP packet.
func innerProto(pkt []byte) (uint8, error) {
	switch packet.Version(pkt) {
	case 4:
		if len(pkt) >= packet.IPv4MinHeaderLen {
			return packet.ProtoIPv4, nil
		}
	case 6:
		if len(pkt) >= packet.IPv6HeaderLen {
			return packet.ProtoIPv6, nil
		}
	default:
		return 0, fmt.Errorf("ah: inner IP version %d: %w", packet.Version(pkt), ErrBadInner)
	}
	return 0, fmt.Errorf("ah: inner packet of %d bytes: %w", len(pkt), ErrBadInner)
}

// template checks an outer header template and returns its IP version and
// the offset of its last next-header byte.
func template(h []byte) (version, nhOff int, err error) {
	switch packet.Version(h) {
	case 4:
		if len(h) < packet.IPv4MinHeaderLen || int(h[0]&0xf)*4 != len(h) {
			return 0, 0, fmt.Errorf("IPv4 header length: %w", ErrBadHeader)
		}
		return 4, packet.IPv4ProtocolOffset, nil
	case 6:
		if len(h) < packet.IPv6HeaderLen {
			return 0, 0, ErrTruncated
		}
		nhOff, off := packet.IPv6NextHeaderOffset, packet.IPv6HeaderLen
		for n := 0; off < len(h); n++ {
			switch h[nhOff] {
			case packet.ProtoHopByHop, packet.ProtoDestOpts, packet.ProtoRouting:
			default:
				return 0, 0, fmt.Errorf("extension header %d in a tunnel header: %w", h[nhOff], ErrBadHeader)
			}
			if n == packet.MaxExtensionHeaders || off+2 > len(h) {
				return 0, 0, ErrBadHeader
			}
			nhOff, off = off, off+(int(h[off+1])+1)*8
		}
		if off != len(h) {
			return 0, 0, fmt.Errorf("extension headers overrun the template: %w", ErrBadHeader)
		}
		return 6, nhOff, nil
	}
	return 0, 0, fmt.Errorf("IP version %d: %w", packet.Version(h), ErrBadHeader)
}

// setLength sets the IP length field for the packet's size.
func setLength(pkt []byte) error {
	if pkt[0]>>4 == 4 {
		if len(pkt) > maxIPLen {
			return fmt.Errorf("packet of %d bytes: %w", len(pkt), ErrBadLength)
		}
		binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
		return nil
	}
	if len(pkt)-packet.IPv6HeaderLen > maxIPLen {
		return fmt.Errorf("packet of %d bytes: %w", len(pkt), ErrBadLength)
	}
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(pkt)-packet.IPv6HeaderLen))
	return nil
}

// EncapTransport protects the IP packet buf[off:end] in transport mode: the
// IP header (and the IPv6 extension headers that go before AH) moves
// forward into the headroom, AH is inserted after it, the protocol / next
// header field becomes AH and the lengths and IPv4 checksum are fixed. It
// returns the bounds of the whole IP packet; bytes beyond the packet's IP
// length are dropped. off must leave HeaderLen of the packet's version and
// cap(buf) ScratchLen after end.
func (sa *SA) EncapTransport(buf []byte, off, end int) (start, newEnd int, err error) {
	start, newEnd, _, err = sa.encapTransport(buf, off, end, 0, false)
	return start, newEnd, err
}

// encapTransport is EncapTransport, with the sequence number seq if
// haveSeq is set; it also returns AH's next header.
func (sa *SA) encapTransport(buf []byte, off, end int, seq uint64, haveSeq bool) (int, int, uint8, error) {
	buf = buf[:cap(buf)]
	if off < 0 || end < off || end+ScratchLen > len(buf) {
		return 0, 0, 0, ErrNoRoom
	}
	pkt := buf[off:end]
	var l packet.Layout
	if err := packet.ParseLayout(pkt, &l); err != nil {
		return 0, 0, 0, fmt.Errorf("ah: transport: %w: %w", ErrBadInner, err)
	}
	if l.Fragment {
		return 0, 0, 0, fmt.Errorf("ah: transport mode on a fragment: %w", ErrFragment)
	}
	end = off + l.End
	pkt = pkt[:l.End]
	// Check the options and extension headers before anything moves.
	if _, _, err := walk(pkt, l.InsertOff, true, nil); err != nil {
		return 0, 0, 0, fmt.Errorf("ah: transport: %w: %w", ErrBadInner, err)
	}
	ahLen := sa.HeaderLen(l.Version)
	start := off - ahLen
	if start < 0 {
		return 0, 0, 0, ErrNoRoom
	}
	if l.End+ahLen-ipFixedLen(l.Version) > maxIPLen {
		return 0, 0, 0, fmt.Errorf("ah: transport: packet of %d bytes: %w", l.End, ErrBadLength)
	}
	if !haveSeq {
		var err error
		if seq, err = sa.nextSeq(1); err != nil {
			return 0, 0, 0, err
		}
	}
	proto := pkt[l.InsertNHOff]
	copy(buf[start:], buf[off:off+l.InsertOff])
	out := buf[start:end]
	out[l.InsertNHOff] = packet.ProtoAH
	if err := setLength(out); err != nil {
		return 0, 0, 0, err
	}
	if err := sa.sealSeq(buf, start, start+l.InsertOff, end, proto, seq); err != nil {
		return 0, 0, 0, err
	}
	return start, end, proto, nil
}

// ipFixedLen is what the IP length field does not count: 0 for IPv4 (Total
// Length counts the header), 40 for IPv6.
func ipFixedLen(version int) int {
	if version == 6 {
		return packet.IPv6HeaderLen
	}
	return 0
}

// DecapTunnel opens the tunnel-mode AH packet buf[off:end] (the outer IP
// packet) and returns the inner IP packet's bounds.
func (sa *SA) DecapTunnel(buf []byte, off, end int) (start, newEnd int, err error) {
	o, err := sa.Open(buf, off, end)
	if err != nil {
		return 0, 0, err
	}
	return sa.decapTunnel(buf, o)
}

// decapTunnel finds the inner packet of the tunnel-mode packet Open
// verified.
func (sa *SA) decapTunnel(buf []byte, o Opened) (start, newEnd int, err error) {
	inner := buf[:cap(buf)][o.PayloadOff:o.End]
	var n int
	switch o.NextHeader {
	case packet.ProtoIPv4:
		if len(inner) < packet.IPv4MinHeaderLen || inner[0]>>4 != 4 {
			return 0, 0, fmt.Errorf("ah: spi %#x: inner IPv4 header: %w", sa.spi, ErrBadInner)
		}
		n = int(binary.BigEndian.Uint16(inner[2:4]))
	case packet.ProtoIPv6:
		if len(inner) < packet.IPv6HeaderLen || inner[0]>>4 != 6 {
			return 0, 0, fmt.Errorf("ah: spi %#x: inner IPv6 header: %w", sa.spi, ErrBadInner)
		}
		n = packet.IPv6HeaderLen + int(binary.BigEndian.Uint16(inner[4:6]))
	default:
		return 0, 0, fmt.Errorf("ah: spi %#x: next header %d in tunnel mode: %w", sa.spi, o.NextHeader, ErrNextHeader)
	}
	if n > len(inner) || n < packet.IPv4MinHeaderLen {
		return 0, 0, fmt.Errorf("ah: spi %#x: inner length %d, payload %d: %w", sa.spi, n, len(inner), ErrBadInner)
	}
	return o.PayloadOff, o.PayloadOff + n, nil
}

// DecapTransport opens the transport-mode AH packet buf[off:end] and
// removes AH: the IP header chain in front of it moves back to sit before
// the payload, with its next header, lengths and IPv4 checksum fixed. It
// returns the bounds of the resulting IP packet.
func (sa *SA) DecapTransport(buf []byte, off, end int) (start, newEnd int, err error) {
	o, err := sa.Open(buf, off, end)
	if err != nil {
		return 0, 0, err
	}
	start, newEnd = sa.decapTransport(buf, off, o)
	return start, newEnd, nil
}

// decapTransport removes AH from the packet at buf[off:] that Open
// verified.
func (sa *SA) decapTransport(buf []byte, off int, o Opened) (start, newEnd int) {
	buf = buf[:cap(buf)]
	hdrLen := o.AHOff - off
	start = o.PayloadOff - hdrLen
	copy(buf[start:o.PayloadOff], buf[off:o.AHOff])
	out := buf[start:o.End]
	out[o.NHOff-off] = o.NextHeader
	_ = setLength(out) // cannot fail: the packet shrank
	if out[0]>>4 == 4 {
		packet.IPv4(out).ComputeChecksum()
	}
	return start, o.End
}
