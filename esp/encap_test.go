package esp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/xform"
)

// mkUDP4 builds an IPv4/UDP packet (with IP options when opts is set).
func mkUDP4(t testing.TB, payload []byte, opts bool) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 1, 0, 1}, DstIP: net.IP{10, 1, 0, 2}, Id: 77}
	if opts {
		ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert
	}
	udp := &layers.UDP{SrcPort: 1234, DstPort: 5678}
	udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, udp, gopacket.Payload(payload))
}

// mkUDP6 builds an IPv6/UDP packet, with Hop-by-Hop and Destination Options
// headers when ext is set.
func mkUDP6(t testing.TB, payload []byte, ext bool) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	udp := &layers.UDP{SrcPort: 1234, DstPort: 5678}
	udp.SetNetworkLayerForChecksum(ip)
	if !ext {
		return serialize(t, ip, udp, gopacket.Payload(payload))
	}
	ip.NextHeader = layers.IPProtocolIPv6HopByHop
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolUDP
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	return serialize(t, ip, hbh, dst, udp, gopacket.Payload(payload))
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b.Bytes()...)
}

func TestTunnelRoundTrip(t *testing.T) {
	for _, s := range []suite{{"aes128gcm16", ""}, {"aes256", "sha384"}} {
		out, in := newPair(t, s, false, 0)
		for _, pkt := range [][]byte{mkUDP4(t, []byte("hi"), false), mkUDP6(t, []byte("hello"), true)} {
			buf, off, end := bufWith(pkt)
			start, pend, err := out.EncapTunnel(buf, off, end)
			if err != nil {
				t.Fatal(err)
			}
			ps, pe, err := in.DecapTunnel(buf, start, pend)
			if err != nil || !bytes.Equal(buf[ps:pe], pkt) {
				t.Fatalf("%s: got %x err %v, want %x", s, buf[ps:pe], err, pkt)
			}
		}
	}
}

// TestTunnelTFC sends an inner packet followed by TFC padding: the receiver
// cuts the padding off using the inner header's length.
func TestTunnelTFC(t *testing.T) {
	out, in := newPair(t, suite{"aes128gcm16", ""}, false, 0)
	for _, pkt := range [][]byte{mkUDP4(t, []byte("tfc"), false), mkUDP6(t, []byte("tfc6"), false)} {
		padded := append(append([]byte(nil), pkt...), make([]byte, 37)...)
		buf, off, end := bufWith(padded)
		start, pend, err := out.Seal(buf, off, end, map[byte]uint8{4: 4, 6: 41}[pkt[0]>>4])
		if err != nil {
			t.Fatal(err)
		}
		ps, pe, err := in.DecapTunnel(buf, start, pend)
		if err != nil || !bytes.Equal(buf[ps:pe], pkt) {
			t.Fatalf("got %x err %v", buf[ps:pe], err)
		}
	}
	// An inner length beyond the payload is rejected.
	pkt := mkUDP4(t, []byte("x"), false)
	packet.IPv4(pkt).SetTotalLength(uint16(len(pkt) + 10))
	buf, off, end := bufWith(pkt)
	start, pend, _ := out.Seal(buf, off, end, 4)
	if _, _, err := in.DecapTunnel(buf, start, pend); !errors.Is(err, ErrBadInner) {
		t.Fatalf("inner length too long: %v", err)
	}
	// Transport next header on a tunnel SA is rejected.
	buf, off, end = bufWith([]byte("segment"))
	start, pend, _ = out.Seal(buf, off, end, 17)
	if _, _, err := in.DecapTunnel(buf, start, pend); !errors.Is(err, ErrNextHeader) {
		t.Fatalf("next header 17 in tunnel mode: %v", err)
	}
}

func TestTransportRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		pkt  []byte
	}{
		{"ipv4", mkUDP4(t, []byte("transport v4"), false)},
		{"ipv4 options", mkUDP4(t, []byte("transport v4 opts"), true)},
		{"ipv6", mkUDP6(t, []byte("transport v6"), false)},
		{"ipv6 ext", mkUDP6(t, []byte("transport v6 ext"), true)},
	}
	for _, s := range []suite{{"aes128gcm16", ""}, {"aes128", "sha256"}, {"aes128gmac", ""}} {
		for _, esn := range []bool{false, true} {
			for _, udp := range []*UDPPorts{nil, {Src: 4500, Dst: 4500}} {
				out, in := newPair(t, s, esn, 0)
				for _, tc := range cases {
					buf, off, end := bufWith(tc.pkt)
					start, pend, err := out.EncapTransport(buf, off, end, udp)
					if err != nil {
						t.Fatalf("%s %s: %v", s, tc.name, err)
					}
					wire := buf[start:pend]
					// The wire packet must parse as IP carrying ESP (or UDP).
					p := gopacket.NewPacket(wire, map[byte]gopacket.LayerType{4: layers.LayerTypeIPv4, 6: layers.LayerTypeIPv6}[wire[0]>>4], gopacket.Default)
					if el := p.ErrorLayer(); el != nil {
						t.Fatalf("%s: wire packet does not parse: %v", tc.name, el.Error())
					}
					espOff := len(wire) - 0
					if udp != nil {
						if l, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); !ok || l.DstPort != 4500 || int(l.Length) != len(l.Contents)+len(l.Payload) {
							t.Fatalf("%s: no UDP-encapsulated ESP: %v", tc.name, p)
						}
						espOff = len(wire) - len(p.Layer(layers.LayerTypeUDP).LayerPayload())
					} else {
						l := p.Layer(layers.LayerTypeIPSecESP)
						if l == nil {
							t.Fatalf("%s: no ESP layer: %v", tc.name, p)
						}
						espOff = len(wire) - len(l.LayerContents()) - len(l.LayerPayload())
					}
					if wire[0]>>4 == 4 && !packet.IPv4(wire).ChecksumValid() {
						t.Fatalf("%s: bad IPv4 header checksum", tc.name)
					}
					ps, pe, err := in.DecapTransport(buf, start, start+espOff, pend)
					if err != nil {
						t.Fatalf("%s %s udp=%v: decap: %v", s, tc.name, udp != nil, err)
					}
					if !bytes.Equal(buf[ps:pe], tc.pkt) {
						t.Fatalf("%s %s: got\n%x\nwant\n%x", s, tc.name, buf[ps:pe], tc.pkt)
					}
				}
			}
		}
	}
}

// TestTransportTooBig checks that a packet that would outgrow the 16-bit IP
// length fields is refused instead of having its lengths wrapped.
func TestTransportTooBig(t *testing.T) {
	out, _ := newPair(t, suite{"aes128gcm16", ""}, false, 0)
	for _, pkt := range [][]byte{mkUDP4(t, make([]byte, 65535-28), false), mkUDP6(t, make([]byte, 65535-8), false)} {
		if pkt[0]>>4 == 4 && len(pkt) != 65535 {
			t.Fatalf("test packet of %d bytes", len(pkt))
		}
		buf, off, end := bufWith(pkt)
		if _, _, err := out.EncapTransport(buf, off, end, nil); !errors.Is(err, ErrTooBig) {
			t.Fatalf("IPv%d: got %v, want ErrTooBig", pkt[0]>>4, err)
		}
	}
	// Just small enough still works.
	pkt := mkUDP4(t, make([]byte, 65535-28-out.Overhead(65535-20)-8), false)
	buf, off, end := bufWith(pkt)
	s, e, err := out.EncapTransport(buf, off, end, nil)
	if err != nil {
		t.Fatalf("largest packet: %v", err)
	}
	if got := int(packet.IPv4(buf[s:e]).TotalLength()); got != e-s || got > 65535 {
		t.Fatalf("total length %d for %d bytes", got, e-s)
	}
}

// TestEncapTunnelTo: sealing into another buffer gives the same ESP packet
// as sealing in place with the same sequence number (byte for byte where
// the IV is the sequence number), it opens, and buffers too small are
// refused.
func TestEncapTunnelTo(t *testing.T) {
	for _, s := range suites {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/esn=%v", s, esn), func(t *testing.T) {
				out, twin := newPair(t, s, esn, 0)
				for _, n := range []int{0, 1, 13, 64, 1400} {
					pkt := mkUDP4(t, bytes.Repeat([]byte{byte(n)}, n), false)
					// In place, on the twin (same keys, own counter).
					buf, off, end := bufWith(pkt)
					start, pend, err := twin.EncapTunnel(buf, off, end)
					if err != nil {
						t.Fatal(err)
					}
					want := slices.Clone(buf[start:pend])
					// Into dst, from a source without headroom for the
					// combined modes.
					srcOff := 0
					if out.aead == nil || out.enc.Kind == xform.KindGMAC {
						srcOff = out.Headroom()
					}
					src := make([]byte, srcOff+len(pkt), srcOff+len(pkt)+out.TrailerLen()+ScratchLen)
					copy(src[srcOff:], pkt)
					dst := make([]byte, out.Overhead(len(pkt))+len(pkt)+7)
					got, err := out.EncapTunnelTo(dst, src, srcOff, srcOff+len(pkt))
					if err != nil {
						t.Fatalf("%d bytes: %v", n, err)
					}
					if got != len(want) {
						t.Fatalf("%d bytes: length %d, in place %d", n, got, len(want))
					}
					if out.block == nil && !bytes.Equal(dst[:got], want) {
						t.Errorf("%d bytes: differs from the in-place seal", n)
					}
					// Opens to the packet.
					ob, o2, oe := bufWith(dst[:got])
					s2, e2, err := twin.DecapTunnel(ob, o2, oe)
					if err != nil {
						t.Fatalf("%d bytes: open: %v", n, err)
					}
					if !bytes.Equal(ob[s2:e2], pkt) {
						t.Errorf("%d bytes: opened to something else", n)
					}
				}
				pkt := mkUDP4(t, make([]byte, 100), false)
				src := make([]byte, out.Headroom()+len(pkt), out.Headroom()+len(pkt)+out.TrailerLen()+ScratchLen)
				copy(src[out.Headroom():], pkt)
				short := make([]byte, out.Overhead(len(pkt))+len(pkt)-1)
				if _, err := out.EncapTunnelTo(short, src, out.Headroom(), len(src)); !errors.Is(err, ErrNoRoom) {
					t.Errorf("dst one byte short: %v", err)
				}
				copy(src[out.Headroom():], pkt)
				tight := slices.Clip(src)
				if _, err := out.EncapTunnelTo(make([]byte, 2048), tight, out.Headroom(), len(tight)); !errors.Is(err, ErrNoRoom) {
					t.Errorf("source without tailroom: %v", err)
				}
			})
		}
	}
}

// TestEncapTunnelFrom: sealing from a packet in the middle of other data
// gives the ESP packet EncapTunnelTo gives with the same sequence number,
// opens, and leaves every byte of the source as it was; the ciphers that
// cannot, and buffers too small, are refused without touching anything.
func TestEncapTunnelFrom(t *testing.T) {
	for _, s := range suites {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/esn=%v", s, esn), func(t *testing.T) {
				out, twin := newPair(t, s, esn, 0)
				pkt := mkUDP4(t, make([]byte, 100), false)
				if !out.SealsFrom() {
					src := append(slices.Clone(pkt), make([]byte, 64)...)
					if _, err := out.EncapTunnelFrom(make([]byte, 2048), src, 0, len(pkt)); !errors.Is(err, ErrNotSupported) {
						t.Fatalf("%v, want ErrNotSupported", err)
					}
					if out.LastSeq() != 0 {
						t.Fatal("a sequence number was taken")
					}
					return
				}
				for _, n := range []int{0, 1, 2, 3, 13, 64, 1400} {
					pkt := mkUDP4(t, bytes.Repeat([]byte{byte(n)}, n), false)
					// The reference: EncapTunnelTo on the twin.
					ref := make([]byte, len(pkt), len(pkt)+out.TrailerLen()+ScratchLen)
					copy(ref, pkt)
					want := make([]byte, out.Overhead(len(pkt))+len(pkt))
					if _, err := twin.EncapTunnelTo(want, ref, 0, len(pkt)); err != nil {
						t.Fatal(err)
					}
					// The packet between other bytes, with just the room
					// for its trailer after it.
					const before = 5
					src := make([]byte, before+len(pkt)+out.padLen(len(pkt))+2)
					for i := range src {
						src[i] = byte(0xa0 + i)
					}
					copy(src[before:], pkt)
					orig := slices.Clone(src)
					dst := make([]byte, len(want)+ScratchLen)
					got, err := out.EncapTunnelFrom(dst, src, before, before+len(pkt))
					if err != nil {
						t.Fatalf("%d bytes: %v", n, err)
					}
					if !bytes.Equal(dst[:got], want) {
						t.Errorf("%d bytes: differs from EncapTunnelTo's", n)
					}
					if !bytes.Equal(src, orig) {
						t.Errorf("%d bytes: the source changed", n)
					}
					if !bytes.Equal(dst[got:], make([]byte, ScratchLen)) {
						t.Errorf("%d bytes: scratch left behind", n)
					}
					ob, o2, oe := bufWith(dst[:got])
					s2, e2, err := twin.DecapTunnel(ob, o2, oe)
					if err != nil || !bytes.Equal(ob[s2:e2], pkt) {
						t.Errorf("%d bytes: open: %v", n, err)
					}
				}
				seq := out.LastSeq()
				src := append(slices.Clone(pkt), make([]byte, out.padLen(len(pkt))+2)...)
				need := out.Overhead(len(pkt)) + len(pkt) + ScratchLen
				if _, err := out.EncapTunnelFrom(make([]byte, need-1), src, 0, len(pkt)); !errors.Is(err, ErrNoRoom) {
					t.Errorf("dst one byte short: %v", err)
				}
				if _, err := out.EncapTunnelFrom(make([]byte, need), src[:len(pkt)+1:len(pkt)+1], 0, len(pkt)); !errors.Is(err, ErrNoRoom) {
					t.Errorf("source without room for the trailer: %v", err)
				}
				if out.LastSeq() != seq {
					t.Error("a refused packet took a sequence number")
				}
			})
		}
	}
}
