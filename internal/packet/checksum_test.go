package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// refChecksum is a plain RFC 1071 sum, 16 bits at a time.
func refChecksum(b []byte, initial uint32) uint16 {
	s := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestChecksumRFC1071Example(t *testing.T) {
	// RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(b, 0); got != 0xddf2 {
		t.Errorf("Checksum = %#04x, want 0xddf2", got)
	}
}

func TestChecksumAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2100)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	ff := make([]byte, 2100)
	for i := range ff {
		ff[i] = 0xff
	}
	inits := []uint32{0, 1, 0xffff, 0x10000, 0xfffe_ffff, 0xffff_ffff}
	for _, data := range [][]byte{buf, ff, make([]byte, 2100)} {
		for n := 0; n <= 300; n++ {
			for _, start := range []int{0, 1, 3, 7} {
				b := data[start : start+n]
				for _, init := range append(inits, r.Uint32()) {
					if got, want := Checksum(b, init), refChecksum(b, init); got != want {
						t.Fatalf("len %d start %d init %#x: Checksum = %#04x, want %#04x", n, start, init, got, want)
					}
				}
			}
		}
		for _, n := range []int{1499, 1500, 2048, 2100} {
			b := data[:n]
			if got, want := Checksum(b, 0), refChecksum(b, 0); got != want {
				t.Fatalf("len %d: Checksum = %#04x, want %#04x", n, got, want)
			}
		}
	}
}

func TestChecksumChainingAndCombine(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 1501)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	whole := Checksum(b, 0)
	for _, cut := range []int{0, 2, 8, 64, 1000, 1500} {
		if got := Checksum(b[cut:], uint32(Checksum(b[:cut], 0))); got != whole {
			t.Errorf("chained at %d: %#04x, want %#04x", cut, got, whole)
		}
		if got := ChecksumCombine(Checksum(b[:cut], 0), Checksum(b[cut:], 0)); got != whole {
			t.Errorf("combined at %d: %#04x, want %#04x", cut, got, whole)
		}
	}
	if got := ChecksumCombine(0xffff, 0xffff); got != 0xffff {
		t.Errorf("ChecksumCombine(ffff, ffff) = %#04x", got)
	}
	if got := ChecksumCombine(0x8000, 0x8000); got != 0x0001 {
		t.Errorf("ChecksumCombine(8000, 8000) = %#04x", got)
	}
}

func TestIPv4HeaderChecksum(t *testing.T) {
	// A well-known example header whose checksum is 0xb861.
	h := IPv4{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	h.ComputeChecksum()
	if h.Checksum() != 0xb861 || !h.ChecksumValid() {
		t.Errorf("checksum %#04x, want 0xb861", h.Checksum())
	}
	h[8]--
	if h.ChecksumValid() {
		t.Error("ChecksumValid after TTL change")
	}

	// Against gopacket, with and without options.
	for _, opts := range [][]layers.IPv4Option{nil, {{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}} {
		ip := gpIPv4(layers.IPProtocolUDP)
		ip.TOS, ip.Id, ip.Flags = 0xb8, 0x1234, layers.IPv4DontFragment
		ip.Options = opts
		pkt := serialize(t, ip, gopacket.Payload("payload"))
		v := IPv4(pkt)
		want := v.Checksum()
		if !v.ChecksumValid() {
			t.Errorf("gopacket header does not verify")
		}
		v.SetChecksum(0xdead)
		v.ComputeChecksum()
		if v.Checksum() != want {
			t.Errorf("options %v: ComputeChecksum %#04x, gopacket %#04x", opts, v.Checksum(), want)
		}
	}
}

// csumOff returns the offset of the checksum field in a TCP, UDP or ICMPv6
// header.
func csumOff(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return 16
	case ProtoUDP:
		return 6
	}
	return 2 // ICMPv6
}

func TestTransportChecksumsAgainstGopacket(t *testing.T) {
	ip4 := func(p layers.IPProtocol) gopacket.NetworkLayer { return gpIPv4(p) }
	ip6 := func(p layers.IPProtocol) gopacket.NetworkLayer { return gpIPv6(p) }
	for _, mk := range []func(layers.IPProtocol) gopacket.NetworkLayer{ip4, ip6} {
		for _, n := range []int{0, 1, 2, 3, 17, 64, 1000, 1401} {
			payload := make([]byte, n)
			for i := range payload {
				payload[i] = byte(i*7 + n)
			}
			for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoICMPv6} {
				nl := mk(layers.IPProtocol(proto))
				if proto == ProtoICMPv6 {
					if _, ok := nl.(*layers.IPv6); !ok {
						continue
					}
				}
				var l4 gopacket.SerializableLayer
				switch proto {
				case ProtoTCP:
					tcp := &layers.TCP{SrcPort: 1234, DstPort: 80, Seq: 99, ACK: true, Window: 512}
					tcp.SetNetworkLayerForChecksum(nl)
					l4 = tcp
				case ProtoUDP:
					udp := &layers.UDP{SrcPort: 4500, DstPort: 4500}
					udp.SetNetworkLayerForChecksum(nl)
					l4 = udp
				default:
					icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
					icmp.SetNetworkLayerForChecksum(nl)
					l4 = icmp
				}
				pkt := serialize(t, nl.(gopacket.SerializableLayer), l4, gopacket.Payload(payload))

				var l Layout
				if err := ParseLayout(pkt, &l); err != nil {
					t.Fatal(err)
				}
				seg := pkt[l.ProtoOff:l.End]
				var ph, ph2 uint16
				if l.Version == 4 {
					ip := IPv4(pkt)
					ph = ip.PseudoHeaderSum(l.Proto, uint32(len(seg)))
					ph2 = PseudoHeaderSum(l.Proto, ip.Src(), ip.Dst(), uint32(len(seg)))
				} else {
					ip := IPv6(pkt)
					ph = ip.PseudoHeaderSum(l.Proto, uint32(len(seg)))
					ph2 = PseudoHeaderSum(l.Proto, ip.Src(), ip.Dst(), uint32(len(seg)))
				}
				if ph != ph2 {
					t.Errorf("view pseudo-header sum %#04x, PseudoHeaderSum %#04x", ph, ph2)
				}
				if got := Checksum(seg, uint32(ph)); got != 0xffff {
					t.Errorf("v%d proto %d len %d: gopacket checksum does not verify (%#04x)", l.Version, proto, n, got)
				}
				co := csumOff(proto)
				want := binary.BigEndian.Uint16(seg[co:])
				binary.BigEndian.PutUint16(seg[co:], 0)
				got := ^Checksum(seg, uint32(ph))
				if proto == ProtoUDP && got == 0 {
					got = 0xffff
				}
				if got != want {
					t.Errorf("v%d proto %d len %d: checksum %#04x, gopacket %#04x", l.Version, proto, n, got, want)
				}
			}
		}
	}
}

func TestUpdateChecksumRFC1624(t *testing.T) {
	// RFC 1624 section 4: HC 0xdd2f, m 0x5555 -> m' 0x3285 gives 0x0000.
	if got := UpdateChecksum(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Errorf("UpdateChecksum = %#04x, want 0x0000", got)
	}
}

func TestUpdateChecksumRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, 60)
	for iter := 0; iter < 20000; iter++ {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], ^Checksum(b, 0))
		field := binary.BigEndian.Uint16(b[10:])
		switch iter % 3 {
		case 0:
			at := 2 * r.IntN(30)
			if at == 10 {
				continue
			}
			from := binary.BigEndian.Uint16(b[at:])
			to := uint16(r.Uint32())
			if iter%7 == 0 {
				to = from
			}
			binary.BigEndian.PutUint16(b[at:], to)
			field = UpdateChecksum(field, from, to)
		case 1:
			at := 12 + 2*r.IntN(5) // avoid the field at 10
			from := binary.BigEndian.Uint32(b[at:])
			to := r.Uint32()
			binary.BigEndian.PutUint32(b[at:], to)
			field = UpdateChecksum32(field, from, to)
		case 2:
			at := 12 + 2*r.IntN(8)
			from := append([]byte(nil), b[at:at+16]...)
			for i := at; i < at+16; i++ {
				b[i] = byte(r.Uint32())
			}
			field = UpdateChecksumBytes(field, from, b[at:at+16])
		}
		binary.BigEndian.PutUint16(b[10:], field)
		if Checksum(b, 0) != 0xffff {
			t.Fatalf("iter %d: updated checksum does not verify", iter)
		}
		binary.BigEndian.PutUint16(b[10:], 0)
		if full := ^Checksum(b, 0); full != field {
			t.Fatalf("iter %d: incremental %#04x, full %#04x", iter, field, full)
		}
	}
}

// TestUpdateChecksumNAT rewrites addresses in gopacket-built TCP packets
// and checks the incrementally updated checksums against gopacket's.
func TestUpdateChecksumNAT(t *testing.T) {
	newSrc4 := netip.MustParseAddr("203.0.113.9")
	newSrc6 := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
	build := func(v6 bool, src netip.Addr) []byte {
		var nl gopacket.NetworkLayer
		if v6 {
			ip := gpIPv6(layers.IPProtocolTCP)
			ip.SrcIP = src.AsSlice()
			nl = ip
		} else {
			ip := gpIPv4(layers.IPProtocolTCP)
			ip.SrcIP = src.AsSlice()
			nl = ip
		}
		tcp := &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true}
		tcp.SetNetworkLayerForChecksum(nl)
		return serialize(t, nl.(gopacket.SerializableLayer), tcp, gopacket.Payload("xyz"))
	}
	for _, v6 := range []bool{false, true} {
		orig, repl := src4, newSrc4
		if v6 {
			orig, repl = src6, newSrc6
		}
		pkt, want := build(v6, orig), build(v6, repl)
		var l Layout
		if err := ParseLayout(pkt, &l); err != nil {
			t.Fatal(err)
		}
		tcpField := binary.BigEndian.Uint16(pkt[l.ProtoOff+16:])
		if v6 {
			ip := IPv6(pkt)
			from := ip.Src().As16()
			ip.SetSrc(repl)
			tcpField = UpdateChecksumBytes(tcpField, from[:], pkt[8:24])
		} else {
			ip := IPv4(pkt)
			from := binary.BigEndian.Uint32(pkt[12:])
			ip.SetSrc(repl)
			to := binary.BigEndian.Uint32(pkt[12:])
			ip.SetChecksum(UpdateChecksum32(ip.Checksum(), from, to))
			tcpField = UpdateChecksum32(tcpField, from, to)
		}
		binary.BigEndian.PutUint16(pkt[l.ProtoOff+16:], tcpField)
		if string(pkt) != string(want) {
			t.Errorf("v6=%v: NAT result differs from gopacket's packet\n got %x\nwant %x", v6, pkt, want)
		}
	}
}
