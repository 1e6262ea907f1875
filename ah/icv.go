package ah

import (
	"encoding/binary"

	"github.com/goipsec/goipsec/internal/packet"
)

// The ICV covers the whole IP packet as the receiver will see it, with the
// fields that may change in transit zeroed (RFC 4302 section 3.3.3.1). It is
// computed in place: walk zeroes the mutable fields (and, when sending,
// writes the values the receiver will see into the predictable ones),
// saving every byte it overwrites in a saver first; the MAC then runs over
// the contiguous packet and restore puts the saved bytes back. Every path
// out of compute restores, so the caller's packet is unchanged whatever
// happens.

// saver records the bytes overwritten while masking a packet.
type saver struct {
	data  []byte
	spans []span
}

type span struct{ off, n int }

func newSaver() *saver {
	return &saver{data: make([]byte, 0, 256), spans: make([]span, 0, 16)}
}

// save records b[off:off+n].
func (s *saver) save(b []byte, off, n int) {
	s.spans = append(s.spans, span{off, n})
	s.data = append(s.data, b[off:off+n]...)
}

// zero records and clears b[off:off+n].
func (s *saver) zero(b []byte, off, n int) {
	s.save(b, off, n)
	clear(b[off : off+n])
}

// restore puts every recorded span back into b, last first, and empties s.
func (s *saver) restore(b []byte) {
	p := len(s.data)
	for i := len(s.spans) - 1; i >= 0; i-- {
		sp := s.spans[i]
		p -= sp.n
		copy(b[sp.off:sp.off+sp.n], s.data[p:p+sp.n])
	}
	s.data = s.data[:0]
	s.spans = s.spans[:0]
}

// ipLen checks the fixed IP header at the start of pkt and returns the IP
// version and the packet length its header gives (at most len(pkt)).
func ipLen(pkt []byte) (version, n int, err error) {
	if len(pkt) == 0 {
		return 0, 0, ErrTruncated
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < packet.IPv4MinHeaderLen {
			return 4, 0, ErrTruncated
		}
		hl := int(pkt[0]&0xf) * 4
		n = int(binary.BigEndian.Uint16(pkt[2:4]))
		if hl < packet.IPv4MinHeaderLen || n < hl {
			return 4, 0, ErrBadHeader
		}
		if n > len(pkt) {
			return 4, 0, ErrTruncated
		}
		return 4, n, nil
	case 6:
		if len(pkt) < packet.IPv6HeaderLen {
			return 6, 0, ErrTruncated
		}
		n = packet.IPv6HeaderLen + int(binary.BigEndian.Uint16(pkt[4:6]))
		if n > len(pkt) {
			return 6, 0, ErrTruncated
		}
		return 6, n, nil
	}
	return 0, 0, ErrBadHeader
}

// Option types of IPv4 (RFC 4302 Appendix A): these are included in the
// ICV as they are; every other option, known or not, is zeroed whole.
func immutable4(typ byte) bool {
	switch typ {
	case 0x00, // End of Options List
		0x01, // No Operation
		0x82, // Security
		0x85, // Extended Security
		0x86, // Commercial Security
		0x94, // Router Alert
		0x95: // Sender Directed Multi-Destination Delivery
		return true
	}
	return false
}

// IPv4 source route options: the sender puts their last address in the
// destination field for the ICV, as the receiver will see it.
const (
	optLSRR = 0x83
	optSSRR = 0x89
)

// walk follows the IP header chain of pkt, a whole IP packet trimmed to its
// length, up to the AH header, and returns the AH header's offset and the
// offset of the next-header byte that names it. With stop >= 0 it stops at
// offset stop instead, which must be where the chain of IP header and
// extension headers ends, whatever the next header is.
//
// With sv set it masks the packet for the ICV, saving what it overwrites
// in sv: the mutable IPv4 header fields and options, the IPv6 traffic
// class, flow label and hop limit and the data of options whose
// change-en-route bit is set. When out is set (sending) it also writes the
// destination the receiver will see: the final address of an IPv4 source
// route, and an IPv6 type 0 or 2 routing header as it will arrive. On
// error, what was masked so far is recorded in sv; the caller restores.
// With sv nil walk only validates.
func walk(pkt []byte, stop int, out bool, sv *saver) (off, nhOff int, err error) {
	if pkt[0]>>4 == 4 {
		return walk4(pkt, stop, out, sv)
	}
	return walk6(pkt, stop, out, sv)
}

func walk4(pkt []byte, stop int, out bool, sv *saver) (int, int, error) {
	hl := int(pkt[0]&0xf) * 4
	if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 { // MF or an offset
		return 0, 0, ErrFragment
	}
	if stop >= 0 && stop != hl {
		return 0, 0, ErrBadHeader
	}
	if stop < 0 && pkt[packet.IPv4ProtocolOffset] != packet.ProtoAH {
		return 0, 0, ErrNextHeader
	}
	if sv != nil {
		sv.zero(pkt, 1, 1)  // TOS (DSCP, ECN)
		sv.zero(pkt, 6, 3)  // flags, fragment offset, TTL
		sv.zero(pkt, 10, 2) // header checksum
	}
	for o := packet.IPv4MinHeaderLen; o < hl; {
		typ := pkt[o]
		if typ == 0x00 { // End of Options List: the rest is padding
			break
		}
		if typ == 0x01 {
			o++
			continue
		}
		if o+1 >= hl {
			return 0, 0, ErrBadHeader
		}
		l := int(pkt[o+1])
		if l < 2 || o+l > hl {
			return 0, 0, ErrBadHeader
		}
		if !immutable4(typ) && sv != nil {
			if out && (typ == optLSRR || typ == optSSRR) && l >= 7 {
				sv.save(pkt, 16, 4)
				copy(pkt[16:20], pkt[o+l-4:o+l])
			}
			sv.zero(pkt, o, l)
		}
		o += l
	}
	return hl, packet.IPv4ProtocolOffset, nil
}

func walk6(pkt []byte, stop int, out bool, sv *saver) (int, int, error) {
	if sv != nil {
		sv.save(pkt, 0, 4) // version, traffic class, flow label
		pkt[0] &= 0xf0
		pkt[1], pkt[2], pkt[3] = 0, 0, 0
		sv.zero(pkt, 7, 1) // hop limit
	}
	end := len(pkt)
	if stop >= 0 {
		end = stop
	}
	nhOff, off := packet.IPv6NextHeaderOffset, packet.IPv6HeaderLen
	nh := pkt[nhOff]
	for n := 0; ; n++ {
		if stop >= 0 {
			if off == stop {
				return off, nhOff, nil
			}
		} else if nh == packet.ProtoAH {
			return off, nhOff, nil
		}
		if n == packet.MaxExtensionHeaders {
			return 0, 0, ErrBadHeader
		}
		var l int
		switch nh {
		case packet.ProtoHopByHop, packet.ProtoDestOpts, packet.ProtoRouting:
			if off+2 > end {
				return 0, 0, truncOrBad(stop)
			}
			l = (int(pkt[off+1]) + 1) * 8
		case packet.ProtoFragment:
			l = packet.IPv6FragmentHeaderLen
		default:
			if stop >= 0 {
				return 0, 0, ErrBadHeader
			}
			return 0, 0, ErrNextHeader
		}
		if off+l > end {
			return 0, 0, truncOrBad(stop)
		}
		h := pkt[off : off+l]
		switch nh {
		case packet.ProtoHopByHop:
			if off != packet.IPv6HeaderLen {
				return 0, 0, ErrBadHeader
			}
			fallthrough
		case packet.ProtoDestOpts:
			if err := maskOptions(pkt, off, l, sv); err != nil {
				return 0, 0, err
			}
		case packet.ProtoRouting:
			if err := maskRouting(pkt, off, l, out, sv); err != nil {
				return 0, 0, err
			}
		case packet.ProtoFragment:
			if binary.BigEndian.Uint16(h[2:4])&0xfff9 != 0 { // offset or M
				return 0, 0, ErrFragment
			}
		}
		nhOff, nh = off, h[0]
		off += l
	}
}

func truncOrBad(stop int) error {
	if stop >= 0 {
		return ErrBadHeader
	}
	return ErrTruncated
}

// maskOptions walks the options of the Hop-by-Hop or Destination Options
// header pkt[off:off+l] and zeroes the data of those whose change-en-route
// bit (0x20 of the type) is set (RFC 8200 section 4.2).
func maskOptions(pkt []byte, off, l int, sv *saver) error {
	end := off + l
	for o := off + 2; o < end; {
		if pkt[o] == 0 { // Pad1
			o++
			continue
		}
		if o+2 > end {
			return ErrBadHeader
		}
		n := int(pkt[o+1])
		if o+2+n > end {
			return ErrBadHeader
		}
		if pkt[o]&0x20 != 0 && sv != nil && n > 0 {
			sv.zero(pkt, o+2, n)
		}
		o += 2 + n
	}
	return nil
}

// maskRouting handles the routing header pkt[off:off+l]. It is immutable
// at the receiver, which sees it as it arrived. The sender orders it as it
// will arrive (RFC 4302 section 3.3.3.1.2.2): for types 0 and 2, whose
// addresses the nodes on the path swap with the destination, the remaining
// addresses shift by one, the current destination takes the first free
// slot, the last address becomes the destination and Segments Left 0.
// Other types with segments left cannot be predicted and are refused.
func maskRouting(pkt []byte, off, l int, out bool, sv *saver) error {
	typ, left := pkt[off+2], int(pkt[off+3])
	if !out || left == 0 {
		return nil
	}
	if typ != 0 && typ != 2 {
		return ErrNotSupported
	}
	if (l-8)%16 != 0 || left > (l-8)/16 {
		return ErrBadHeader
	}
	if sv == nil {
		return nil
	}
	n := (l - 8) / 16
	first := n - left // index of the next address to visit
	addrs := off + 8
	var final [16]byte
	copy(final[:], pkt[addrs+16*(n-1):addrs+16*n])
	sv.save(pkt, addrs+16*first, 16*left)
	sv.save(pkt, 24, 16)
	sv.save(pkt, off+3, 1)
	copy(pkt[addrs+16*(first+1):addrs+16*n], pkt[addrs+16*first:addrs+16*(n-1)])
	copy(pkt[addrs+16*first:addrs+16*(first+1)], pkt[24:40])
	copy(pkt[24:40], final[:])
	pkt[off+3] = 0
	return nil
}

// compute computes (open false) or verifies (open true) the ICV of the IP
// packet buf[off:pktEnd] whose AH header, with the sequence number field
// already in place, starts at ahOff. Scratch space is buf[end:end+ScratchLen]
// (end >= pktEnd; the bytes between are left alone). Sealing writes the ICV
// field; verifying leaves the packet as it was. out says whether the packet
// is being sent (see walk).
func (sa *SA) compute(buf []byte, off, ahOff, pktEnd, end int, seq uint64, open, out bool) (bool, error) {
	var sv *saver
	select {
	case sv = <-sa.savers:
	default:
		sv = newSaver()
	}
	// ext reaches into the tailroom: GMAC under ESN appends the high
	// sequence bits to the packet as part of its AAD.
	ext := buf[off : end+ScratchLen]
	pkt := ext[:pktEnd-off]
	scratch := buf[end : end+ScratchLen]
	_, nhOff, err := walk(pkt, ahOff-off, out, sv)
	if err == nil && pkt[nhOff] != packet.ProtoAH {
		err = ErrBadHeader
	}
	if err != nil {
		sv.restore(ext)
		sa.putSaver(sv)
		return false, err
	}
	icv := ahOff - off + HeaderLen
	recv := len(sv.data)
	if open {
		sv.zero(ext, icv, sa.icvLen)
	} else {
		clear(pkt[icv : icv+sa.icvLen])
	}
	hi := uint32(seq >> 32)
	ok := true
	if sa.aead != nil {
		aadEnd := len(pkt)
		if sa.esn {
			sv.save(ext, aadEnd, 4)
			binary.BigEndian.PutUint32(ext[aadEnd:], hi)
			aadEnd += 4
		}
		// scratch[0:4] may hold those ESN bytes: the nonce and the tag go
		// further on.
		nonce := scratch[16:28]
		copy(nonce, sa.salt[:])
		if open {
			copy(nonce[4:], sv.data[recv:recv+gmacIVLen])
			_, oerr := sa.aead.Open(nil, nonce, sv.data[recv+gmacIVLen:recv+sa.icvLen], ext[:aadEnd])
			ok = oerr == nil
		} else {
			binary.BigEndian.PutUint64(nonce[4:], seq) // unique per key (RFC 4543 section 3.1)
			sa.aead.Seal(scratch[32:32], nonce, nil, ext[:aadEnd])
		}
		sv.restore(ext)
		if !open {
			copy(pkt[icv:icv+gmacIVLen], nonce[4:])
			copy(pkt[icv+gmacIVLen:icv+sa.icvLen], scratch[32:48])
		}
	} else {
		s := sa.mac.Begin()
		s.Write(pkt)
		if sa.esn {
			binary.BigEndian.PutUint32(scratch[:4], hi)
			s.Write(scratch[:4])
		}
		if open {
			ok = sa.mac.Verify(s, sv.data[recv:recv+sa.icvLen], scratch)
		} else {
			sa.mac.Finish(s, pkt[icv:icv+sa.icvLen], scratch)
		}
		sv.restore(ext)
	}
	clear(scratch)
	sa.putSaver(sv)
	return ok, nil
}

// putSaver returns sv to the free list, or lets it go when the list is full.
func (sa *SA) putSaver(sv *saver) {
	select {
	case sa.savers <- sv:
	default:
	}
}
