package packet

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestIPv4Accessors(t *testing.T) {
	ip := gpIPv4(layers.IPProtocolTCP)
	ip.IHL = 0
	ip.TOS = 0xb9
	ip.Id = 0xbeef
	ip.Flags = layers.IPv4MoreFragments
	ip.FragOffset = 185 // 1480 bytes
	ip.TTL = 17
	ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
	pkt := serialize(t, ip, gopacket.Payload("0123456789"))

	v, err := ParseIPv4(append(pkt, 0xee, 0xee)) // with trailing padding
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != len(pkt) {
		t.Errorf("ParseIPv4 view has %d bytes, want %d", len(v), len(pkt))
	}
	if !v.IsValid(len(v)) || v.IsValid(len(v)-1) {
		t.Error("IsValid disagrees with Total Length")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Version", v.Version(), 4},
		{"HeaderLen", v.HeaderLen(), 24},
		{"TOS", v.TOS(), uint8(0xb9)},
		{"TotalLength", v.TotalLength(), uint16(len(pkt))},
		{"ID", v.ID(), uint16(0xbeef)},
		{"Flags", v.Flags(), uint8(IPv4FlagMoreFragments)},
		{"DontFragment", v.DontFragment(), false},
		{"MoreFragments", v.MoreFragments(), true},
		{"FragmentOffset", v.FragmentOffset(), uint16(1480)},
		{"IsFragment", v.IsFragment(), true},
		{"TTL", v.TTL(), uint8(17)},
		{"Protocol", v.Protocol(), uint8(ProtoTCP)},
		{"Checksum", v.Checksum(), ip.Checksum},
		{"ChecksumValid", v.ChecksumValid(), true},
		{"Src", v.Src(), src4},
		{"Dst", v.Dst(), dst4},
		{"Options", string(v.Options()), "\x94\x04\x00\x00"},
		{"Payload", string(v.Payload()), "0123456789"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestIPv4Setters(t *testing.T) {
	pkt := build4(6, ProtoUDP, []byte("abcd"))
	v := IPv4(pkt)
	newSrc, newDst := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("::ffff:10.9.8.7")
	v.SetTOS(0x2e)
	v.SetTotalLength(uint16(len(pkt)))
	v.SetID(777)
	v.SetFlagsFragmentOffset(IPv4FlagDontFragment, 0)
	v.SetTTL(3)
	v.SetProtocol(ProtoESP)
	v.SetSrc(newSrc)
	v.SetDst(newDst)
	v.ComputeChecksum()

	g := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if g.TOS != 0x2e || g.Id != 777 || g.Flags != layers.IPv4DontFragment || g.FragOffset != 0 ||
		g.TTL != 3 || g.Protocol != layers.IPProtocolESP || g.IHL != 6 ||
		!g.SrcIP.Equal(newSrc.AsSlice()) || !g.DstIP.Equal(newDst.Unmap().AsSlice()) {
		t.Errorf("gopacket decodes %+v", g)
	}
	// gopacket recomputes the checksum on serialization; ours must match.
	g.Checksum = 0
	re := serialize(t, g, gopacket.Payload(v.Payload()))
	if !bytes.Equal(re, pkt) {
		t.Errorf("gopacket re-serialization differs:\n got %x\nwant %x", pkt, re)
	}
	v.SetFlagsFragmentOffset(IPv4FlagMoreFragments|IPv4FlagDontFragment, 65528)
	if v.Flags() != 3 || v.FragmentOffset() != 65528 || !v.IsFragment() {
		t.Errorf("flags %d offset %d", v.Flags(), v.FragmentOffset())
	}
	v.SetFlagsFragmentOffset(IPv4FlagDontFragment, 0)
	if v.IsFragment() {
		t.Error("DF-only packet is a fragment")
	}
}

func TestParseIPv4Errors(t *testing.T) {
	good := build4(5, ProtoTCP, tcpHdr(1, 2))
	mod := func(f func([]byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, ErrTruncated},
		{"IPv6", build6(nil, ProtoTCP, nil), ErrBadVersion},
		{"short", good[:19], ErrTruncated},
		{"IHL 4", mod(func(b []byte) { b[0] = 0x44 }), ErrBadHeader},
		{"IHL past end", mod(func(b []byte) { b[0] = 0x4f }), ErrTruncated},
		{"TotalLength < IHL", mod(func(b []byte) { b[2], b[3] = 0, 16 }), ErrBadHeader},
		{"TotalLength past end", good[:len(good)-1], ErrTruncated},
	} {
		v, err := ParseIPv4(tc.b)
		if err != tc.err || v != nil {
			t.Errorf("%s: ParseIPv4 = %v, %v; want nil, %v", tc.name, v, err, tc.err)
		}
		if len(tc.b) >= IPv4MinHeaderLen && IPv4(tc.b).IsValid(len(tc.b)) {
			t.Errorf("%s: IsValid", tc.name)
		}
	}
	if IPv4(good[:10]).IsValid(100) {
		t.Error("IsValid on 10 bytes")
	}
	if v, err := ParseIPv4(good); err != nil || !v.IsValid(len(good)) {
		t.Errorf("good packet: %v", err)
	}
}

func TestIPv6Accessors(t *testing.T) {
	ip := gpIPv6(layers.IPProtocolUDP)
	ip.TrafficClass = 0xa5
	ip.FlowLabel = 0xfedcb
	ip.HopLimit = 255
	udp := &layers.UDP{SrcPort: 500, DstPort: 4500}
	udp.SetNetworkLayerForChecksum(ip)
	pkt := serialize(t, ip, udp, gopacket.Payload("data"))

	v, err := ParseIPv6(append(pkt, 0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != len(pkt) || !v.IsValid(len(pkt)) || v.IsValid(len(pkt)-1) {
		t.Errorf("ParseIPv6 view %d bytes, want %d", len(v), len(pkt))
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Version", v.Version(), 6},
		{"TrafficClass", v.TrafficClass(), uint8(0xa5)},
		{"FlowLabel", v.FlowLabel(), uint32(0xfedcb)},
		{"PayloadLength", v.PayloadLength(), uint16(12)},
		{"NextHeader", v.NextHeader(), uint8(ProtoUDP)},
		{"HopLimit", v.HopLimit(), uint8(255)},
		{"Src", v.Src(), src6},
		{"Dst", v.Dst(), dst6},
		{"Payload", len(v.Payload()), 12},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestIPv6Setters(t *testing.T) {
	pkt := build6([]eh{hbh}, ProtoTCP, tcpHdr(1, 2))
	v := IPv6(pkt)
	newSrc, newDst := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("2001:db8::99")
	v.SetTrafficClass(0xff)
	v.SetFlowLabel(0xfffff)
	v.SetTrafficClass(0x12) // must not disturb version or flow label
	v.SetFlowLabel(0x12345)
	v.SetFlowLabel(0xfff54321) // only 20 bits are kept
	v.SetHopLimit(1)
	v.SetNextHeader(ProtoDestOpts)
	v.SetPayloadLength(uint16(len(pkt) - 40))
	v.SetSrc(newSrc)
	v.SetDst(newDst)
	if v.Version() != 6 || v.TrafficClass() != 0x12 || v.FlowLabel() != 0x54321 || v.HopLimit() != 1 ||
		v.NextHeader() != ProtoDestOpts || v.Src() != newSrc || v.Dst() != newDst {
		t.Errorf("accessors after setters: tc %#x fl %#x", v.TrafficClass(), v.FlowLabel())
	}
	v.SetNextHeader(ProtoHopByHop)
	g := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if g.Version != 6 || g.TrafficClass != 0x12 || g.FlowLabel != 0x54321 || g.HopLimit != 1 ||
		g.Length != uint16(len(pkt)-40) || !g.SrcIP.Equal(newSrc.AsSlice()) || !g.DstIP.Equal(newDst.AsSlice()) {
		t.Errorf("gopacket decodes %+v", g)
	}
	v.SetSrc(src4) // an IPv4 address is stored mapped
	if v.Src() != netip.AddrFrom16(src4.As16()) {
		t.Errorf("Src = %v", v.Src())
	}
}

func TestParseIPv6Errors(t *testing.T) {
	good := build6([]eh{hbh}, ProtoTCP, tcpHdr(1, 2))
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", []byte{}, ErrTruncated},
		{"IPv4", build4(5, ProtoTCP, nil), ErrBadVersion},
		{"short", good[:39], ErrTruncated},
		{"payload past end", good[:len(good)-1], ErrTruncated},
	} {
		v, err := ParseIPv6(tc.b)
		if err != tc.err || v != nil {
			t.Errorf("%s: ParseIPv6 = %v, %v; want nil, %v", tc.name, v, err, tc.err)
		}
		if len(tc.b) >= IPv6HeaderLen && IPv6(tc.b).IsValid(len(tc.b)) {
			t.Errorf("%s: IsValid", tc.name)
		}
	}
	if IPv6(good[:39]).IsValid(100) {
		t.Error("IsValid on 39 bytes")
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want int
	}{{nil, 0}, {[]byte{0x45}, 4}, {[]byte{0x60, 0}, 6}, {[]byte{0xf0}, 15}} {
		if got := Version(tc.b); got != tc.want {
			t.Errorf("Version(%x) = %d, want %d", tc.b, got, tc.want)
		}
	}
}
