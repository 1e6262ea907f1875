package packet

import "testing"

// fuzzSeeds returns well-formed and malformed packets to seed the fuzzers.
func fuzzSeeds() [][]byte {
	seeds := [][]byte{
		nil,
		{0x45},
		{0x60},
		build4(5, ProtoTCP, tcpHdr(1, 2)),
		build4(15, ProtoUDP, []byte{0, 1, 0, 2}),
		build4(5, ProtoICMP, []byte{8, 0, 0, 0}),
		build4(5, ProtoESP, make([]byte, 16)),
		build6(nil, ProtoTCP, tcpHdr(1, 2)),
		build6([]eh{hbh, dest, rt, frag, dest}, ProtoUDP, []byte{0, 1, 0, 2}),
		build6([]eh{dest, rt, dest}, ProtoICMPv6, []byte{128, 0}),
		build6([]eh{fragM, dest}, ProtoTCP, tcpHdr(1, 2)),
		build6([]eh{{typ: ProtoFragment, fragOff: 8}}, ProtoTCP, tcpHdr(1, 2)),
		build6([]eh{hbh, ah}, ProtoTCP, tcpHdr(1, 2)),
		build6(repeat(eh{typ: ProtoDestOpts, n: 8}, 17), ProtoTCP, nil),
		build6([]eh{dest, hbh}, ProtoTCP, nil),
	}
	p := build4(5, ProtoUDP, []byte{0, 1, 0, 2})
	IPv4(p).SetFlagsFragmentOffset(IPv4FlagMoreFragments, 64)
	seeds = append(seeds, p)
	cut := build6([]eh{hbh, rt}, ProtoTCP, tcpHdr(1, 2))
	seeds = append(seeds, cut[:60])
	return seeds
}

// checkLayout checks the invariants every successful (or ErrTooManyHeaders)
// ParseLayout result must hold.
func checkLayout(t *testing.T, pkt []byte, l *Layout) {
	t.Helper()
	if l.End > len(pkt) || l.ProtoOff > l.End || l.InsertOff > l.ProtoOff ||
		l.InsertNHOff < 0 || l.InsertNHOff >= l.InsertOff ||
		l.ProtoNHOff < 0 || l.ProtoNHOff >= l.ProtoOff || l.ProtoNHOff < l.InsertNHOff {
		t.Fatalf("inconsistent layout %+v for %d-byte packet", *l, len(pkt))
	}
	if pkt[l.ProtoNHOff] != l.Proto {
		t.Fatalf("pkt[ProtoNHOff] = %d, Proto = %d", pkt[l.ProtoNHOff], l.Proto)
	}
	switch l.Version {
	case 4:
		ip, err := ParseIPv4(pkt)
		if err != nil || len(ip) != l.End || l.InsertOff != ip.HeaderLen() || l.InsertNHOff != 9 {
			t.Fatalf("IPv4 layout %+v disagrees with ParseIPv4 (%v)", *l, err)
		}
	case 6:
		ip, err := ParseIPv6(pkt)
		if err != nil || len(ip) != l.End || l.InsertOff < IPv6HeaderLen {
			t.Fatalf("IPv6 layout %+v disagrees with ParseIPv6 (%v)", *l, err)
		}
		if l.InsertNHOff != IPv6NextHeaderOffset && l.InsertNHOff < IPv6HeaderLen {
			t.Fatalf("InsertNHOff %d inside the fixed header", l.InsertNHOff)
		}
		if pkt[l.InsertNHOff] == ProtoHopByHop && l.InsertNHOff != IPv6NextHeaderOffset && l.FragmentOffset == 0 {
			t.Fatalf("ESP would go before a Hop-by-Hop header: %+v", *l)
		}
	default:
		t.Fatalf("version %d", l.Version)
	}
}

func FuzzTransportInsertion(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		nhOff, insOff, err := TransportInsertion(pkt)
		var l Layout
		lerr := ParseLayout(pkt, &l)
		if err != lerr {
			t.Fatalf("TransportInsertion error %v, ParseLayout error %v", err, lerr)
		}
		switch err {
		case nil:
			if nhOff < 0 || nhOff >= insOff || insOff > len(pkt) {
				t.Fatalf("offsets %d, %d out of a %d-byte packet", nhOff, insOff, len(pkt))
			}
			if nhOff != l.InsertNHOff || insOff != l.InsertOff {
				t.Fatalf("TransportInsertion %d, %d; Layout %+v", nhOff, insOff, l)
			}
			checkLayout(t, pkt, &l)
		case ErrTooManyHeaders:
			checkLayout(t, pkt, &l)
		case ErrTruncated, ErrBadVersion, ErrBadHeader:
			if nhOff != 0 || insOff != 0 {
				t.Fatalf("offsets %d, %d with error %v", nhOff, insOff, err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzParseFlow(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var fl Flow
		err := ParseFlow(pkt, &fl)
		if err != nil {
			if fl != (Flow{}) {
				t.Fatalf("flow %+v with error %v", fl, err)
			}
			if err != ErrTruncated && err != ErrBadVersion && err != ErrBadHeader {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		var l Layout
		lerr := ParseLayout(pkt, &l)
		if lerr != nil && lerr != ErrTooManyHeaders {
			t.Fatalf("ParseFlow succeeded, ParseLayout: %v", lerr)
		}
		checkLayout(t, pkt, &l)
		if !fl.Src.IsValid() || !fl.Dst.IsValid() || fl.Src.Is4() != (l.Version == 4) {
			t.Fatalf("addresses %v %v for version %d", fl.Src, fl.Dst, l.Version)
		}
		if fl.Proto != l.Proto {
			t.Fatalf("Proto %d, layout %d", fl.Proto, l.Proto)
		}
		if fl.Opaque && (fl.SrcPort != 0 || fl.DstPort != 0) {
			t.Fatalf("opaque flow with ports: %+v", fl)
		}
		if (lerr != nil || l.FragmentOffset != 0) && !fl.Opaque {
			t.Fatalf("flow %+v not opaque (layout %+v, %v)", fl, l, lerr)
		}
	})
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, uint32(0))
	f.Add(make([]byte, 1500), uint32(0xffffffff))
	f.Add([]byte{0xff, 0xff, 0xff}, uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, initial uint32) {
		if got, want := Checksum(b, initial), refChecksum(b, initial); got != want {
			t.Fatalf("Checksum(%d bytes, %#x) = %#04x, reference %#04x", len(b), initial, got, want)
		}
	})
}
