package packet

import "encoding/binary"

// Layout locates the headers of an IP packet: the transport-mode insertion
// point for an ESP or AH header, and the next layer protocol header. All
// offsets are from the start of the packet and at most End.
type Layout struct {
	// Version is the IP version, 4 or 6.
	Version int
	// End is the length of the IP packet given by its header (IPv4 Total
	// Length, or 40 plus IPv6 Payload Length); any bytes after it are not
	// part of the packet.
	End int

	// InsertNHOff is the offset of the Next Header (IPv4: Protocol) byte
	// that a transport-mode ESP or AH header takes over: its value moves to
	// the new header's Next Header field and it is rewritten to 50 or 51.
	InsertNHOff int
	// InsertOff is the offset at which a transport-mode ESP or AH header
	// goes (RFC 4303 and RFC 4302 section 3.1.1): after the IPv4 header, or
	// after the IPv6 Hop-by-Hop, Routing and Fragment headers and any
	// Destination Options header before them.
	InsertOff int

	// Proto is the next layer protocol (RFC 4301 section 4.4.1.1): the first
	// header that is not an IPv6 Hop-by-Hop, Routing, Fragment or
	// Destination Options header. AH and ESP are next layer protocols.
	Proto uint8
	// ProtoNHOff is the offset of the Next Header (IPv4: Protocol) byte
	// holding Proto.
	ProtoNHOff int
	// ProtoOff is the offset of the next layer header; it equals End when
	// the packet has no payload after its headers.
	ProtoOff int

	// Fragment reports that the packet is a fragment: IPv4 MF set or a
	// non-zero offset, or an IPv6 Fragment header with M set or a non-zero
	// offset (an atomic fragment is not a fragment).
	Fragment bool
	// FragmentOffset is the fragment's offset in bytes. When it is not zero
	// the bytes after the (IPv6 Fragment) header are not headers, so the
	// walk stops there and ProtoOff is the start of the fragment data.
	FragmentOffset uint16
}

// ParseLayout walks the headers of the IPv4 or IPv6 packet pkt (the version
// nibble decides) and fills l. It checks the fixed header as ParseIPv4 and
// ParseIPv6 do, walks at most MaxExtensionHeaders IPv6 extension headers
// within End, and rejects a Hop-by-Hop header that does not directly follow
// the IPv6 header. On ErrTooManyHeaders, l describes the chain up to the
// header where the walk stopped (Proto is that header's type); on other
// errors l is unspecified.
func ParseLayout(pkt []byte, l *Layout) error {
	switch Version(pkt) {
	case IPv4Version:
		return parseLayout4(pkt, l)
	case IPv6Version:
		return parseLayout6(pkt, l)
	}
	if len(pkt) == 0 {
		return ErrTruncated
	}
	return ErrBadVersion
}

// TransportInsertion returns where a transport-mode ESP or AH header goes
// in the IPv4 or IPv6 packet pkt: nhOff is the offset of the Next Header
// (IPv4: Protocol) byte to rewrite and insOff the offset at which the new
// header is inserted. See Layout for the rules and ParseLayout for errors.
func TransportInsertion(pkt []byte) (nhOff, insOff int, err error) {
	var l Layout
	if err := ParseLayout(pkt, &l); err != nil {
		return 0, 0, err
	}
	return l.InsertNHOff, l.InsertOff, nil
}

// ExtensionHeaderLen returns the length of the IPv6 extension header of
// type proto (Hop-by-Hop, Routing, Fragment, Destination Options or AH) at
// the start of b. It returns ErrBadHeader for other protocols and
// ErrTruncated if the header does not fit in b.
func ExtensionHeaderLen(proto uint8, b []byte) (int, error) {
	var n int
	switch proto {
	case ProtoHopByHop, ProtoRouting, ProtoDestOpts:
		if len(b) < 2 {
			return 0, ErrTruncated
		}
		n = (int(b[1]) + 1) * 8
	case ProtoFragment:
		n = IPv6FragmentHeaderLen
	case ProtoAH:
		if len(b) < 2 {
			return 0, ErrTruncated
		}
		n = (int(b[1]) + 2) * 4
	default:
		return 0, ErrBadHeader
	}
	if n > len(b) {
		return 0, ErrTruncated
	}
	return n, nil
}

func parseLayout4(pkt []byte, l *Layout) error {
	ip, err := ParseIPv4(pkt)
	if err != nil {
		return err
	}
	hl := ip.HeaderLen()
	*l = Layout{
		Version:        IPv4Version,
		End:            len(ip),
		InsertNHOff:    IPv4ProtocolOffset,
		InsertOff:      hl,
		Proto:          ip.Protocol(),
		ProtoNHOff:     IPv4ProtocolOffset,
		ProtoOff:       hl,
		Fragment:       ip.IsFragment(),
		FragmentOffset: ip.FragmentOffset(),
	}
	return nil
}

func parseLayout6(pkt []byte, l *Layout) error {
	ip, err := ParseIPv6(pkt)
	if err != nil {
		return err
	}
	end := len(ip)
	*l = Layout{
		Version:     IPv6Version,
		End:         end,
		InsertNHOff: IPv6NextHeaderOffset,
		InsertOff:   IPv6HeaderLen,
	}
	nhOff, off := IPv6NextHeaderOffset, IPv6HeaderLen
	nh := ip[nhOff]
	for n := 0; ; n++ {
		switch nh {
		case ProtoHopByHop, ProtoRouting, ProtoDestOpts, ProtoFragment:
		default:
			l.Proto, l.ProtoNHOff, l.ProtoOff = nh, nhOff, off
			return nil
		}
		if n == MaxExtensionHeaders {
			l.Proto, l.ProtoNHOff, l.ProtoOff = nh, nhOff, off
			return ErrTooManyHeaders
		}
		if nh == ProtoHopByHop && off != IPv6HeaderLen {
			return ErrBadHeader
		}
		hl, err := ExtensionHeaderLen(nh, ip[off:end])
		if err != nil {
			return err
		}
		typ := nh
		nhOff, nh = off, ip[off]
		if typ == ProtoFragment {
			fo := binary.BigEndian.Uint16(ip[off+2:])
			if fo&0xfff9 != 0 { // offset or M flag
				l.Fragment = true
				l.FragmentOffset = fo &^ 7
			}
		}
		off += hl
		if typ != ProtoDestOpts {
			// ESP/AH goes after this header, and after any Destination
			// Options header before it (RFC 4303 section 3.1.1).
			l.InsertNHOff, l.InsertOff = nhOff, off
		}
		if l.FragmentOffset != 0 {
			// A non-first fragment: what follows is fragment data.
			l.Proto, l.ProtoNHOff, l.ProtoOff = nh, nhOff, off
			return nil
		}
	}
}
