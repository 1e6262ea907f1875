package packet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	dst4 = netip.MustParseAddr("198.51.100.7")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8:ffff::2")
)

// eh describes one IPv6 extension header for build6.
type eh struct {
	typ     uint8
	n       int    // length in bytes; 0 picks a default per type
	fragOff uint16 // Fragment: offset in bytes
	more    bool   // Fragment: M flag
}

func defaultLen(typ uint8) int {
	switch typ {
	case ProtoHopByHop, ProtoFragment:
		return 8
	case ProtoDestOpts:
		return 16
	case ProtoRouting, ProtoAH:
		return 24
	}
	panic("bad type")
}

// build6 assembles an IPv6 packet with the given extension header chain
// followed by protocol ulp carrying payload. Headers are well formed enough
// for gopacket to decode (PadN options, routing type 0).
func build6(chain []eh, ulp uint8, payload []byte) []byte {
	pkt := make([]byte, IPv6HeaderLen, 256)
	pkt[0] = 0x60
	pkt[7] = 64
	s, d := src6.As16(), dst6.As16()
	copy(pkt[8:], s[:])
	copy(pkt[24:], d[:])
	nhOff := IPv6NextHeaderOffset
	for _, h := range chain {
		n := h.n
		if n == 0 {
			n = defaultLen(h.typ)
		}
		pkt[nhOff] = h.typ
		off := len(pkt)
		pkt = append(pkt, make([]byte, n)...)
		b := pkt[off:]
		switch h.typ {
		case ProtoHopByHop, ProtoDestOpts:
			b[1] = uint8(n/8 - 1)
			b[2], b[3] = 1, uint8(n-4) // PadN
		case ProtoRouting:
			b[1] = uint8(n/8 - 1) // type 0, segments left 0, n-8 bytes of addresses
		case ProtoFragment:
			fo := h.fragOff
			if h.more {
				fo |= 1
			}
			binary.BigEndian.PutUint16(b[2:], fo)
			binary.BigEndian.PutUint32(b[4:], 0xabcdef01)
		case ProtoAH:
			b[1] = uint8(n/4 - 2)
			binary.BigEndian.PutUint32(b[4:], 0x1000) // SPI
			binary.BigEndian.PutUint32(b[8:], 1)      // sequence number
		}
		nhOff = off
	}
	pkt[nhOff] = ulp
	pkt = append(pkt, payload...)
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-IPv6HeaderLen))
	return pkt
}

// build4 assembles an IPv4 packet with IHL ihl (in 32-bit words) carrying
// protocol proto and payload, with a correct header checksum.
func build4(ihl int, proto uint8, payload []byte) []byte {
	pkt := make([]byte, ihl*4, ihl*4+len(payload))
	pkt[0] = 0x40 | uint8(ihl)
	pkt[8] = 64
	pkt[9] = proto
	s, d := src4.As4(), dst4.As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	for i := 20; i < len(pkt); i++ {
		pkt[i] = 1 // NOP options
	}
	pkt = append(pkt, payload...)
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	IPv4(pkt).ComputeChecksum()
	return pkt
}

// tcpHdr returns a 20-byte TCP header with the given ports.
func tcpHdr(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:], 65535)
	return b
}

// serialize builds a packet with gopacket, fixing lengths and computing
// checksums.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("gopacket serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func gpIPv4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, TTL: 64, Protocol: proto,
		SrcIP: net.IP(src4.AsSlice()), DstIP: net.IP(dst4.AsSlice()),
	}
}

func gpIPv6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, HopLimit: 64, NextHeader: next,
		SrcIP: net.IP(src6.AsSlice()), DstIP: net.IP(dst6.AsSlice()),
	}
}

// gpLayer is a layer gopacket found, with its offset in the packet.
type gpLayer struct {
	typ gopacket.LayerType
	off int
}

// gpDecode decodes pkt with gopacket and returns its layers and offsets.
func gpDecode(t testing.TB, pkt []byte) []gpLayer {
	t.Helper()
	first := layers.LayerTypeIPv4
	if Version(pkt) == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(pkt, first, gopacket.DecodeOptions{NoCopy: true, Lazy: false})
	var out []gpLayer
	for _, l := range p.Layers() {
		c := l.LayerContents()
		off := len(pkt)
		if cap(c) > 0 {
			off = cap(pkt) - cap(c) // c is a subslice of pkt
		}
		out = append(out, gpLayer{l.LayerType(), off})
	}
	return out
}
