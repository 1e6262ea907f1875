package packet

import (
	"errors"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	hbh   = eh{typ: ProtoHopByHop}
	dest  = eh{typ: ProtoDestOpts}
	rt    = eh{typ: ProtoRouting}
	frag  = eh{typ: ProtoFragment}
	ah    = eh{typ: ProtoAH}
	fragM = eh{typ: ProtoFragment, more: true}
)

func repeat(h eh, n int) []eh {
	out := make([]eh, n)
	for i := range out {
		out[i] = h
	}
	return out
}

// Default lengths: HBH 8, Dest 16, Routing 24, Fragment 8, AH 24.
var insertionTests = []struct {
	name    string
	chain   []eh
	ulp     uint8
	payload []byte

	nhOff, insOff        int
	proto                uint8
	protoNHOff, protoOff int
	fragment             bool
	fragOff              uint16
}{
	{name: "no ext", ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 6, insOff: 40, proto: ProtoTCP, protoNHOff: 6, protoOff: 40},
	{name: "HBH", chain: []eh{hbh}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 40, insOff: 48, proto: ProtoTCP, protoNHOff: 40, protoOff: 48},
	{name: "Dest alone goes inside", chain: []eh{dest}, ulp: ProtoUDP, payload: tcpHdr(1, 2),
		nhOff: 6, insOff: 40, proto: ProtoUDP, protoNHOff: 40, protoOff: 56},
	{name: "HBH Dest", chain: []eh{hbh, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 40, insOff: 48, proto: ProtoTCP, protoNHOff: 48, protoOff: 64},
	{name: "HBH Dest Routing", chain: []eh{hbh, dest, rt}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 64, insOff: 88, proto: ProtoTCP, protoNHOff: 64, protoOff: 88},
	{name: "Dest Routing Dest", chain: []eh{dest, rt, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 56, insOff: 80, proto: ProtoTCP, protoNHOff: 80, protoOff: 96},
	{name: "HBH Dest Routing Dest", chain: []eh{hbh, dest, rt, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 64, insOff: 88, proto: ProtoTCP, protoNHOff: 88, protoOff: 104},
	{name: "HBH Dest Routing Frag Dest", chain: []eh{hbh, dest, rt, frag, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 88, insOff: 96, proto: ProtoTCP, protoNHOff: 96, protoOff: 112},
	{name: "atomic Frag", chain: []eh{frag}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 40, insOff: 48, proto: ProtoTCP, protoNHOff: 40, protoOff: 48},
	{name: "Dest Frag", chain: []eh{dest, frag}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 56, insOff: 64, proto: ProtoTCP, protoNHOff: 56, protoOff: 64},
	{name: "Frag Dest Dest", chain: []eh{frag, dest, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 40, insOff: 48, proto: ProtoTCP, protoNHOff: 64, protoOff: 80},
	{name: "Routing Dest Routing", chain: []eh{rt, dest, rt}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 80, insOff: 104, proto: ProtoTCP, protoNHOff: 80, protoOff: 104},
	{name: "Routing HBH-sized Dest Frag", chain: []eh{rt, {typ: ProtoDestOpts, n: 8}, frag}, ulp: ProtoUDP, payload: tcpHdr(1, 2),
		nhOff: 72, insOff: 80, proto: ProtoUDP, protoNHOff: 72, protoOff: 80},
	{name: "first fragment", chain: []eh{hbh, fragM, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 48, insOff: 56, proto: ProtoTCP, protoNHOff: 56, protoOff: 72, fragment: true},
	{name: "non-first fragment", chain: []eh{hbh, {typ: ProtoFragment, fragOff: 1448}}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 48, insOff: 56, proto: ProtoTCP, protoNHOff: 48, protoOff: 56, fragment: true, fragOff: 1448},
	{name: "non-first fragment hides Dest", chain: []eh{{typ: ProtoFragment, fragOff: 8, more: true}, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 40, insOff: 48, proto: ProtoDestOpts, protoNHOff: 40, protoOff: 48, fragment: true, fragOff: 8},
	{name: "AH is next layer", chain: []eh{hbh, ah}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 40, insOff: 48, proto: ProtoAH, protoNHOff: 40, protoOff: 48},
	{name: "Dest AH", chain: []eh{dest, ah, dest}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 6, insOff: 40, proto: ProtoAH, protoNHOff: 40, protoOff: 56},
	{name: "ESP", chain: []eh{hbh}, ulp: ProtoESP, payload: make([]byte, 32),
		nhOff: 40, insOff: 48, proto: ProtoESP, protoNHOff: 40, protoOff: 48},
	{name: "NoNext", chain: []eh{hbh, rt}, ulp: ProtoNoNext,
		nhOff: 48, insOff: 72, proto: ProtoNoNext, protoNHOff: 48, protoOff: 72},
	{name: "16 headers", chain: repeat(eh{typ: ProtoDestOpts, n: 8}, 16), ulp: ProtoUDP, payload: tcpHdr(1, 2),
		nhOff: 6, insOff: 40, proto: ProtoUDP, protoNHOff: 160, protoOff: 168},
	{name: "long headers", chain: []eh{{typ: ProtoHopByHop, n: 2048}, {typ: ProtoRouting, n: 8 + 16*127}}, ulp: ProtoTCP, payload: tcpHdr(1, 2),
		nhOff: 2088, insOff: 4128, proto: ProtoTCP, protoNHOff: 2088, protoOff: 4128},
}

func TestTransportInsertionIPv6(t *testing.T) {
	for _, tt := range insertionTests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := build6(tt.chain, tt.ulp, tt.payload)
			nhOff, insOff, err := TransportInsertion(pkt)
			if err != nil {
				t.Fatalf("TransportInsertion: %v", err)
			}
			if nhOff != tt.nhOff || insOff != tt.insOff {
				t.Errorf("TransportInsertion = %d, %d; want %d, %d", nhOff, insOff, tt.nhOff, tt.insOff)
			}
			var l Layout
			if err := ParseLayout(pkt, &l); err != nil {
				t.Fatalf("ParseLayout: %v", err)
			}
			want := Layout{
				Version: 6, End: len(pkt),
				InsertNHOff: tt.nhOff, InsertOff: tt.insOff,
				Proto: tt.proto, ProtoNHOff: tt.protoNHOff, ProtoOff: tt.protoOff,
				Fragment: tt.fragment, FragmentOffset: tt.fragOff,
			}
			if l != want {
				t.Errorf("ParseLayout =\n%+v, want\n%+v", l, want)
			}
			if pkt[l.ProtoNHOff] != l.Proto {
				t.Errorf("pkt[ProtoNHOff] = %d, want Proto %d", pkt[l.ProtoNHOff], l.Proto)
			}
		})
	}
}

// TestLayoutAgainstGopacket checks the next layer header we find against
// the layer boundaries gopacket's decoder finds in the same packets.
func TestLayoutAgainstGopacket(t *testing.T) {
	ext := map[gopacket.LayerType]bool{
		layers.LayerTypeIPv6:            true,
		layers.LayerTypeIPv6HopByHop:    true,
		layers.LayerTypeIPv6Destination: true,
		layers.LayerTypeIPv6Routing:     true,
		layers.LayerTypeIPv6Fragment:    true,
	}
	for _, tt := range insertionTests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := build6(tt.chain, tt.ulp, tt.payload)
			var l Layout
			if err := ParseLayout(pkt, &l); err != nil {
				t.Fatal(err)
			}
			gl := gpDecode(t, pkt)
			i := 0
			for i < len(gl) && ext[gl[i].typ] {
				i++
			}
			if tt.ulp == ProtoNoNext {
				if i != len(gl) || l.ProtoOff != l.End {
					t.Errorf("NoNext: gopacket layers %v, ProtoOff %d", gl, l.ProtoOff)
				}
				return
			}
			if i == len(gl) {
				t.Fatalf("gopacket found no next layer: %v", gl)
			}
			wantType, wantOff := layers.IPProtocol(l.Proto).LayerType(), l.ProtoOff
			if off, ok := afterFirstFrag(tt.chain); ok {
				// gopacket treats everything after a Fragment header as
				// fragment data, so it can only confirm the chain up to there.
				wantType, wantOff = gopacket.LayerTypeFragment, off
			}
			if gl[i].typ != wantType || gl[i].off != wantOff {
				t.Errorf("next layer per gopacket is %v at %d, want %v at %d", gl[i].typ, gl[i].off, wantType, wantOff)
			}
		})
	}
}

// afterFirstFrag returns the offset just past the first Fragment header in
// a build6 chain.
func afterFirstFrag(chain []eh) (int, bool) {
	off := IPv6HeaderLen
	for _, h := range chain {
		n := h.n
		if n == 0 {
			n = defaultLen(h.typ)
		}
		off += n
		if h.typ == ProtoFragment {
			return off, true
		}
	}
	return 0, false
}

func TestTransportInsertionIPv4(t *testing.T) {
	for _, tc := range []struct {
		ihl   int
		proto uint8
		flags uint8
		off   uint16
	}{
		{5, ProtoTCP, IPv4FlagDontFragment, 0},
		{6, ProtoUDP, 0, 0},
		{15, ProtoICMP, IPv4FlagMoreFragments, 0},
		{5, ProtoESP, 0, 0},
		{5, ProtoTCP, 0, 1480},
	} {
		pkt := build4(tc.ihl, tc.proto, tcpHdr(7, 8))
		IPv4(pkt).SetFlagsFragmentOffset(tc.flags, tc.off)
		pkt = append(pkt, 0, 0, 0, 0) // link-layer padding after Total Length
		nhOff, insOff, err := TransportInsertion(pkt)
		if err != nil || nhOff != 9 || insOff != tc.ihl*4 {
			t.Errorf("ihl %d: TransportInsertion = %d, %d, %v; want 9, %d, nil", tc.ihl, nhOff, insOff, err, tc.ihl*4)
		}
		var l Layout
		if err := ParseLayout(pkt, &l); err != nil {
			t.Fatal(err)
		}
		want := Layout{
			Version: 4, End: len(pkt) - 4,
			InsertNHOff: 9, InsertOff: tc.ihl * 4,
			Proto: tc.proto, ProtoNHOff: 9, ProtoOff: tc.ihl * 4,
			Fragment: tc.flags&IPv4FlagMoreFragments != 0 || tc.off != 0, FragmentOffset: tc.off,
		}
		if l != want {
			t.Errorf("ParseLayout = %+v, want %+v", l, want)
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	v4 := build4(5, ProtoTCP, tcpHdr(1, 2))
	v6 := build6([]eh{hbh, dest}, ProtoTCP, tcpHdr(1, 2))
	mod := func(b []byte, f func([]byte)) []byte {
		b = append([]byte(nil), b...)
		f(b)
		return b
	}
	tooMany := build6(repeat(eh{typ: ProtoDestOpts, n: 8}, 17), ProtoTCP, tcpHdr(1, 2))
	for _, tc := range []struct {
		name string
		pkt  []byte
		err  error
	}{
		{"nil", nil, ErrTruncated},
		{"empty", []byte{}, ErrTruncated},
		{"version 0", []byte{0x05}, ErrBadVersion},
		{"version 5", mod(v4, func(b []byte) { b[0] = 0x55 }), ErrBadVersion},
		{"version 15", mod(v6, func(b []byte) { b[0] = 0xf0 }), ErrBadVersion},
		{"v4 one byte", []byte{0x45}, ErrTruncated},
		{"v4 19 bytes", v4[:19], ErrTruncated},
		{"v4 IHL 4", mod(v4, func(b []byte) { b[0] = 0x44 }), ErrBadHeader},
		{"v4 IHL 0", mod(v4, func(b []byte) { b[0] = 0x40 }), ErrBadHeader},
		{"v4 IHL beyond packet", mod(v4[:40], func(b []byte) { b[0] = 0x4f; b[3] = 40 }), ErrTruncated},
		{"v4 total length below IHL", mod(v4, func(b []byte) { b[2], b[3] = 0, 19 }), ErrBadHeader},
		{"v4 total length beyond packet", v4[:len(v4)-1], ErrTruncated},
		{"v6 one byte", []byte{0x60}, ErrTruncated},
		{"v6 39 bytes", v6[:39], ErrTruncated},
		{"v6 payload beyond packet", v6[:len(v6)-1], ErrTruncated},
		{"v6 ext header cut by payload length", mod(v6, func(b []byte) { b[4], b[5] = 0, 12 }), ErrTruncated},
		{"v6 ext header 1 byte", mod(v6[:41], func(b []byte) { b[4], b[5] = 0, 1 }), ErrTruncated},
		{"v6 ext header length beyond packet", mod(v6, func(b []byte) { b[41] = 200 }), ErrTruncated},
		{"v6 fragment header short", mod(build6([]eh{frag}, ProtoTCP, nil)[:44], func(b []byte) { b[5] = 4 }), ErrTruncated},
		{"v6 HBH not first", build6([]eh{dest, hbh}, ProtoTCP, nil), ErrBadHeader},
		{"v6 two HBH", build6([]eh{hbh, hbh}, ProtoTCP, nil), ErrBadHeader},
		{"v6 jumbogram unsupported", mod(v6, func(b []byte) { b[4], b[5] = 0, 0 }), ErrTruncated},
		{"v6 17 headers", tooMany, ErrTooManyHeaders},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Layout
			if err := ParseLayout(tc.pkt, &l); err != tc.err {
				t.Errorf("ParseLayout: %v, want %v", err, tc.err)
			}
			nhOff, insOff, err := TransportInsertion(tc.pkt)
			if !errors.Is(err, tc.err) || nhOff != 0 || insOff != 0 {
				t.Errorf("TransportInsertion = %d, %d, %v; want 0, 0, %v", nhOff, insOff, err, tc.err)
			}
		})
	}
}

func TestTooManyHeadersLayout(t *testing.T) {
	pkt := build6(repeat(eh{typ: ProtoDestOpts, n: 8}, 17), ProtoTCP, tcpHdr(1, 2))
	var l Layout
	if err := ParseLayout(pkt, &l); err != ErrTooManyHeaders {
		t.Fatalf("err = %v", err)
	}
	want := Layout{Version: 6, End: len(pkt), InsertNHOff: 6, InsertOff: 40,
		Proto: ProtoDestOpts, ProtoNHOff: 160, ProtoOff: 168}
	if l != want {
		t.Errorf("Layout = %+v, want %+v", l, want)
	}
}

func TestExtensionHeaderLen(t *testing.T) {
	for _, tc := range []struct {
		proto uint8
		b     []byte
		n     int
		err   error
	}{
		{ProtoHopByHop, make([]byte, 8), 8, nil},
		{ProtoDestOpts, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 99}, 16, nil},
		{ProtoRouting, []byte{0, 1, 0, 0, 0, 0, 0, 0}, 0, ErrTruncated},
		{ProtoRouting, []byte{0}, 0, ErrTruncated},
		{ProtoFragment, make([]byte, 8), 8, nil},
		{ProtoFragment, make([]byte, 7), 0, ErrTruncated},
		{ProtoAH, append([]byte{0, 4}, make([]byte, 22)...), 24, nil},
		{ProtoAH, append([]byte{0, 4}, make([]byte, 21)...), 0, ErrTruncated},
		{ProtoAH, []byte{0}, 0, ErrTruncated},
		{ProtoAH, nil, 0, ErrTruncated},
		{ProtoTCP, make([]byte, 20), 0, ErrBadHeader},
		{ProtoESP, make([]byte, 20), 0, ErrBadHeader},
	} {
		n, err := ExtensionHeaderLen(tc.proto, tc.b)
		if n != tc.n || err != tc.err {
			t.Errorf("ExtensionHeaderLen(%d, %d bytes) = %d, %v; want %d, %v", tc.proto, len(tc.b), n, err, tc.n, tc.err)
		}
	}
}

// TestTransportInsertionGopacketBuilt inserts at the offsets found in
// packets serialized by gopacket (HBH and Destination Options, TCP).
func TestTransportInsertionGopacketBuilt(t *testing.T) {
	opt := func(n int) []*layers.IPv6HopByHopOption {
		return []*layers.IPv6HopByHopOption{{OptionType: 0x1e, OptionData: make([]byte, n)}}
	}
	dopt := func(n int) []*layers.IPv6DestinationOption {
		return []*layers.IPv6DestinationOption{{OptionType: 0x1e, OptionData: make([]byte, n)}}
	}
	ip := gpIPv6(layers.IPProtocolIPv6HopByHop)
	h := &layers.IPv6HopByHop{Options: opt(4)}
	h.NextHeader = layers.IPProtocolIPv6Destination
	d := &layers.IPv6Destination{Options: dopt(12)}
	d.NextHeader = layers.IPProtocolTCP
	tcp := &layers.TCP{SrcPort: 443, DstPort: 50000, SYN: true, Window: 1000}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	pkt := serialize(t, ip, h, d, tcp, gopacket.Payload("hello"))
	nhOff, insOff, err := TransportInsertion(pkt)
	if err != nil || nhOff != 40 || insOff != 48 {
		t.Fatalf("TransportInsertion = %d, %d, %v; want 40, 48, nil", nhOff, insOff, err)
	}
	var f Flow
	if err := ParseFlow(pkt, &f); err != nil {
		t.Fatal(err)
	}
	if f.Proto != ProtoTCP || f.SrcPort != 443 || f.DstPort != 50000 || f.Opaque {
		t.Errorf("flow %+v", f)
	}
}
