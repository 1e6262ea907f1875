package packet

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func flow4(proto uint8, sp, dp uint16) Flow {
	return Flow{Src: src4, Dst: dst4, Proto: proto, SrcPort: sp, DstPort: dp}
}

func flow6(proto uint8, sp, dp uint16) Flow {
	return Flow{Src: src6, Dst: dst6, Proto: proto, SrcPort: sp, DstPort: dp}
}

func opaque(f Flow) Flow {
	f.Opaque = true
	return f
}

// gopacket-built packets for ParseFlow.
func gpFlowPackets(t *testing.T) []struct {
	name string
	pkt  []byte
	want Flow
} {
	tcp4 := gpIPv4(layers.IPProtocolTCP)
	tcp4.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
	tcp := &layers.TCP{SrcPort: 51000, DstPort: 443, SYN: true}
	tcp.SetNetworkLayerForChecksum(tcp4)

	udp6 := gpIPv6(layers.IPProtocolIPv6HopByHop)
	h := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{{OptionType: 0x1e, OptionData: make([]byte, 4)}}}
	h.NextHeader = layers.IPProtocolIPv6Destination
	d := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 0x1e, OptionData: make([]byte, 12)}}}
	d.NextHeader = layers.IPProtocolUDP
	udp := &layers.UDP{SrcPort: 500, DstPort: 4500}
	udp.SetNetworkLayerForChecksum(udp6)

	icmp6ip := gpIPv6(layers.IPProtocolICMPv6)
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}
	icmp6.SetNetworkLayerForChecksum(icmp6ip)

	sctpip := gpIPv4(layers.IPProtocolSCTP)

	return []struct {
		name string
		pkt  []byte
		want Flow
	}{
		{"gopacket v4 TCP with options", serialize(t, tcp4, tcp, gopacket.Payload("GET")), flow4(ProtoTCP, 51000, 443)},
		{"gopacket v6 HBH Dest UDP", serialize(t, udp6, h, d, udp, gopacket.Payload("ike")), flow6(ProtoUDP, 500, 4500)},
		{"gopacket v6 ICMPv6 unreachable", serialize(t, icmp6ip, icmp6, &layers.ICMPv6Echo{}), flow6(ProtoICMPv6, 1, 4)},
		{"gopacket v4 ICMP echo", serialize(t, gpIPv4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}), flow4(ProtoICMP, 8, 0)},
		{"gopacket v4 SCTP", serialize(t, sctpip, &layers.SCTP{SrcPort: 2905, DstPort: 36412, VerificationTag: 7}), flow4(ProtoSCTP, 2905, 36412)},
	}
}

func TestParseFlow(t *testing.T) {
	udplite := []byte{0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0}
	frag4 := func(flags uint8, off uint16, payload []byte) []byte {
		p := build4(5, ProtoUDP, payload)
		IPv4(p).SetFlagsFragmentOffset(flags, off)
		return p
	}
	tooMany := build6(repeat(eh{typ: ProtoDestOpts, n: 8}, 17), ProtoTCP, tcpHdr(1, 2))
	withTCP := opaque(flow6(ProtoDestOpts, 0, 0))
	tests := []struct {
		name string
		pkt  []byte
		want Flow
	}{
		{"v4 TCP", build4(5, ProtoTCP, tcpHdr(1234, 80)), flow4(ProtoTCP, 1234, 80)},
		{"v4 TCP with options", build4(15, ProtoTCP, tcpHdr(1234, 80)), flow4(ProtoTCP, 1234, 80)},
		{"v4 UDP 4 bytes", build4(5, ProtoUDP, []byte{0x11, 0x94, 0x11, 0x94}), flow4(ProtoUDP, 4500, 4500)},
		{"v4 UDP 3 bytes", build4(5, ProtoUDP, []byte{0x11, 0x94, 0x11}), opaque(flow4(ProtoUDP, 0, 0))},
		{"v4 UDP-Lite", build4(5, ProtoUDPLite, udplite), flow4(ProtoUDPLite, 12345, 53)},
		{"v4 SCTP short", build4(5, ProtoSCTP, []byte{1}), opaque(flow4(ProtoSCTP, 0, 0))},
		{"v4 ICMP", build4(5, ProtoICMP, []byte{3, 13, 0, 0}), flow4(ProtoICMP, 3, 13)},
		{"v4 ICMP 1 byte", build4(5, ProtoICMP, []byte{3}), opaque(flow4(ProtoICMP, 0, 0))},
		{"v4 ESP", build4(5, ProtoESP, make([]byte, 16)), flow4(ProtoESP, 0, 0)},
		{"v4 AH", build4(5, ProtoAH, make([]byte, 24)), flow4(ProtoAH, 0, 0)},
		{"v4 IPIP", build4(5, ProtoIPv4, build4(5, ProtoTCP, tcpHdr(1, 2))), flow4(ProtoIPv4, 0, 0)},
		{"v4 GRE no ports", build4(5, 47, make([]byte, 8)), flow4(47, 0, 0)},
		{"v4 first fragment", frag4(IPv4FlagMoreFragments, 0, []byte{0, 53, 0, 99}), flow4(ProtoUDP, 53, 99)},
		{"v4 non-first fragment", frag4(IPv4FlagMoreFragments, 8, []byte{0, 53, 0, 99}), opaque(flow4(ProtoUDP, 0, 0))},
		{"v4 last fragment", frag4(0, 1480, []byte{0, 53, 0, 99}), opaque(flow4(ProtoUDP, 0, 0))},
		{"v4 padding not read as ports", append(build4(5, ProtoUDP, nil), 1, 2, 3, 4), opaque(flow4(ProtoUDP, 0, 0))},
		{"v6 TCP", build6(nil, ProtoTCP, tcpHdr(22, 60000)), flow6(ProtoTCP, 22, 60000)},
		{"v6 HBH Dest Routing Frag Dest UDP", build6([]eh{hbh, dest, rt, frag, dest}, ProtoUDP, []byte{0, 1, 0, 2}), flow6(ProtoUDP, 1, 2)},
		{"v6 ICMPv6", build6([]eh{dest}, ProtoICMPv6, []byte{128, 0, 0, 0}), flow6(ProtoICMPv6, 128, 0)},
		{"v6 ICMPv6 empty", build6(nil, ProtoICMPv6, nil), opaque(flow6(ProtoICMPv6, 0, 0))},
		{"v6 SCTP", build6([]eh{rt}, ProtoSCTP, []byte{0, 1, 0, 2}), flow6(ProtoSCTP, 1, 2)},
		{"v6 UDP-Lite", build6(nil, ProtoUDPLite, udplite), flow6(ProtoUDPLite, 12345, 53)},
		{"v6 AH then TCP", build6([]eh{hbh, ah}, ProtoTCP, tcpHdr(1, 2)), flow6(ProtoAH, 0, 0)},
		{"v6 ESP", build6([]eh{dest}, ProtoESP, make([]byte, 20)), flow6(ProtoESP, 0, 0)},
		{"v6 NoNext", build6([]eh{hbh}, ProtoNoNext, nil), flow6(ProtoNoNext, 0, 0)},
		{"v6 first fragment", build6([]eh{fragM}, ProtoTCP, tcpHdr(7, 8)), flow6(ProtoTCP, 7, 8)},
		{"v6 non-first fragment", build6([]eh{{typ: ProtoFragment, fragOff: 1232}}, ProtoTCP, tcpHdr(7, 8)), opaque(flow6(ProtoTCP, 0, 0))},
		{"v6 too many headers", tooMany, withTCP},
	}
	for _, tc := range gpFlowPackets(t) {
		tests = append(tests, struct {
			name string
			pkt  []byte
			want Flow
		}{tc.name, tc.pkt, tc.want})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := Flow{SrcPort: 0xdead, Opaque: true} // must be overwritten
			if err := ParseFlow(tc.pkt, &f); err != nil {
				t.Fatalf("ParseFlow: %v", err)
			}
			if f != tc.want {
				t.Errorf("ParseFlow =\n%+v, want\n%+v", f, tc.want)
			}
		})
	}
}

// TestParseFlowAgainstGopacket compares ports and addresses with gopacket's
// decoding of the same packets.
func TestParseFlowAgainstGopacket(t *testing.T) {
	for _, tc := range gpFlowPackets(t) {
		var f Flow
		if err := ParseFlow(tc.pkt, &f); err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(tc.pkt, gpFirst(tc.pkt), gopacket.Default)
		nsrc, ndst := p.NetworkLayer().NetworkFlow().Endpoints()
		if nsrc.String() != f.Src.String() || ndst.String() != f.Dst.String() {
			t.Errorf("%s: addresses %v %v, gopacket %v %v", tc.name, f.Src, f.Dst, nsrc, ndst)
		}
		if tl := p.TransportLayer(); tl != nil {
			tsrc, tdst := tl.TransportFlow().Endpoints()
			if tsrc.Raw() == nil || binary.BigEndian.Uint16(tsrc.Raw()) != f.SrcPort || binary.BigEndian.Uint16(tdst.Raw()) != f.DstPort {
				t.Errorf("%s: ports %d %d, gopacket %v %v", tc.name, f.SrcPort, f.DstPort, tsrc, tdst)
			}
		}
	}
}

func gpFirst(pkt []byte) gopacket.LayerType {
	if Version(pkt) == 6 {
		return layers.LayerTypeIPv6
	}
	return layers.LayerTypeIPv4
}

func TestParseFlowErrors(t *testing.T) {
	v4 := build4(5, ProtoTCP, tcpHdr(1, 2))
	v6 := build6([]eh{hbh}, ProtoTCP, tcpHdr(1, 2))
	for _, tc := range []struct {
		name string
		pkt  []byte
		err  error
	}{
		{"empty", nil, ErrTruncated},
		{"bad version", []byte{0x70, 0, 0, 0}, ErrBadVersion},
		{"v4 truncated", v4[:len(v4)-1], ErrTruncated},
		{"v4 bad IHL", append([]byte{0x43}, v4[1:]...), ErrBadHeader},
		{"v6 truncated", v6[:45], ErrTruncated},
		{"v6 HBH misplaced", build6([]eh{rt, hbh}, ProtoTCP, tcpHdr(1, 2)), ErrBadHeader},
	} {
		f := Flow{Proto: 99, Opaque: true}
		if err := ParseFlow(tc.pkt, &f); err != tc.err || f != (Flow{}) {
			t.Errorf("%s: ParseFlow = %+v, %v; want zero Flow, %v", tc.name, f, err, tc.err)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	v4 := build4(5, ProtoTCP, tcpHdr(1, 2))
	v6 := build6([]eh{hbh, dest, rt, frag, dest}, ProtoUDP, []byte{0, 1, 0, 2})
	bad := v6[:50]
	buf := make([]byte, 1500)
	var f Flow
	var l Layout
	for name, fn := range map[string]func(){
		"ParseFlow v4":          func() { _ = ParseFlow(v4, &f) },
		"ParseFlow v6":          func() { _ = ParseFlow(v6, &f) },
		"ParseFlow error":       func() { _ = ParseFlow(bad, &f) },
		"ParseLayout":           func() { _ = ParseLayout(v6, &l) },
		"TransportInsertion":    func() { _, _, _ = TransportInsertion(v6) },
		"Checksum":              func() { _ = Checksum(buf, 0) },
		"PseudoHeaderSum":       func() { _ = PseudoHeaderSum(ProtoTCP, src6, dst6, 1000) },
		"IPv4 Src/Dst/checksum": func() { ip := IPv4(v4); _, _ = ip.Src(), ip.Dst(); ip.ComputeChecksum() },
		"IPv6 Src/Dst":          func() { ip := IPv6(v6); _, _ = ip.Src(), ip.Dst() },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocs/op", name, n)
		}
	}
}
