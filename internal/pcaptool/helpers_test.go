package pcaptool

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/saspec"
	"github.com/goipsec/goipsec/internal/xform"
)

var (
	v4a = netip.MustParseAddr("10.1.0.1")
	v4b = netip.MustParseAddr("10.1.0.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
)

// record is one pcap record.
type record struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// udp4 builds an IPv4 UDP packet with correct checksums.
func udp4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	pkt := make([]byte, 20+8+len(payload))
	ip := packet.IPv4(pkt)
	pkt[0] = 0x45
	ip.SetTotalLength(uint16(len(pkt)))
	ip.SetID(0x1234)
	ip.SetFlagsFragmentOffset(packet.IPv4FlagDontFragment, 0)
	ip.SetTTL(63)
	ip.SetProtocol(packet.ProtoUDP)
	ip.SetSrc(src)
	ip.SetDst(dst)
	ip.ComputeChecksum()
	fillUDP(pkt[20:], sport, dport, payload, src, dst)
	return pkt
}

func fillUDP(u []byte, sport, dport uint16, payload []byte, src, dst netip.Addr) {
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	sum := packet.PseudoHeaderSum(packet.ProtoUDP, src, dst, uint32(len(u)))
	c := ^packet.Checksum(u, uint32(sum))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
}

// icmp4 builds an IPv4 ICMP echo request with an odd-length payload.
func icmp4(src, dst netip.Addr, n int) []byte {
	pkt := make([]byte, 20+8+n)
	ip := packet.IPv4(pkt)
	pkt[0] = 0x45
	pkt[1] = 0xb8 // DSCP EF: must survive
	ip.SetTotalLength(uint16(len(pkt)))
	ip.SetID(7)
	ip.SetTTL(64)
	ip.SetProtocol(packet.ProtoICMP)
	ip.SetSrc(src)
	ip.SetDst(dst)
	ip.ComputeChecksum()
	ic := pkt[20:]
	ic[0] = 8
	binary.BigEndian.PutUint16(ic[4:], 0x42)
	binary.BigEndian.PutUint16(ic[6:], 1)
	for i := 8; i < len(ic); i++ {
		ic[i] = byte(i)
	}
	binary.BigEndian.PutUint16(ic[2:], ^packet.Checksum(ic, 0))
	return pkt
}

// udp6 builds an IPv6 UDP packet; ext, if any, are extension headers
// (each: type, body of a multiple of 8 bytes with its first two bytes left
// for next header and length) placed between the IPv6 header and UDP.
func udp6(src, dst netip.Addr, sport, dport uint16, payload []byte, ext ...extHdr) []byte {
	n := 40
	for _, e := range ext {
		n += len(e.body)
	}
	pkt := make([]byte, n+8+len(payload))
	ip := packet.IPv6(pkt)
	binary.BigEndian.PutUint32(pkt[0:], 6<<28|0x12<<20|0xabcde)
	ip.SetPayloadLength(uint16(len(pkt) - 40))
	ip.SetHopLimit(64)
	ip.SetSrc(src)
	ip.SetDst(dst)
	nhOff, off := 6, 40
	for _, e := range ext {
		pkt[nhOff] = e.typ
		copy(pkt[off:], e.body)
		if e.typ != packet.ProtoFragment {
			pkt[off+1] = byte(len(e.body)/8 - 1)
		}
		nhOff = off
		off += len(e.body)
	}
	pkt[nhOff] = packet.ProtoUDP
	fillUDP(pkt[off:], sport, dport, payload, src, dst)
	return pkt
}

type extHdr struct {
	typ  uint8
	body []byte
}

// v6Ext is a header chain for transport-mode tests: Hop-by-Hop, Destination
// Options, Routing (type 0 with no segments left, so the destination field
// is final), an atomic Fragment header and a second Destination Options
// header, which ESP must protect.
func v6Ext() []extHdr {
	hbh := make([]byte, 8)
	hbh[2], hbh[3] = 1, 4 // PadN, 4 bytes
	dst1 := make([]byte, 16)
	dst1[2], dst1[3] = 1, 12
	rt := make([]byte, 8)
	rt[2], rt[3] = 0, 0 // type 0, segments left 0, no addresses
	frag := make([]byte, 8)
	binary.BigEndian.PutUint32(frag[4:], 0xdeadbeef)
	dst2 := make([]byte, 8)
	dst2[2], dst2[3] = 1, 4
	return []extHdr{{packet.ProtoHopByHop, hbh}, {packet.ProtoDestOpts, dst1}, {packet.ProtoRouting, rt}, {packet.ProtoFragment, frag}, {packet.ProtoDestOpts, dst2}}
}

// samplePackets is a mix of IPv4 and IPv6 packets of various sizes.
func samplePackets() [][]byte {
	return [][]byte{
		udp4(v4a, v4b, 1234, 53, []byte("hello, world")),
		icmp4(v4b, v4a, 57),
		udp6(v6a, v6b, 5000, 6000, bytes.Repeat([]byte{0xa5}, 333)),
		udp4(v4a, v4b, 1, 2, nil),
		udp6(v6b, v6a, 7, 9, []byte("x"), v6Ext()...),
		udp4(v4a, v4b, 4000, 5000, bytes.Repeat([]byte{0x5a}, 1400)),
	}
}

var macHdr = []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2}

// frameFor wraps an IP packet in a record of the link type.
func frameFor(link layers.LinkType, ip []byte) []byte {
	et := []byte{0x08, 0x00}
	if ip[0]>>4 == 6 {
		et = []byte{0x86, 0xdd}
	}
	var h []byte
	switch link {
	case LinkEthernet:
		h = append(append([]byte(nil), macHdr...), et...)
	case LinkSLL:
		h = []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}
		h = append(h, et...)
	case LinkRaw, LinkIPv4, LinkIPv6:
	default:
		panic("link type")
	}
	return append(h, ip...)
}

// arpFrame is an Ethernet record without IP.
func arpFrame() []byte {
	f := append([]byte(nil), macHdr...)
	f = append(f, 0x08, 0x06)
	return append(f, make([]byte, 28)...)
}

func records(link layers.LinkType, pkts [][]byte) []record {
	var recs []record
	t := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	for i, p := range pkts {
		d := frameFor(link, p)
		recs = append(recs, record{gopacket.CaptureInfo{Timestamp: t.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(d), Length: len(d)}, d})
	}
	return recs
}

func writePcap(t testing.TB, link layers.LinkType, recs []record) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WritePacket(r.ci, r.data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func readPcap(t testing.TB, b []byte) (layers.LinkType, []record) {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var recs []record
	for {
		d, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, record{ci, d})
	}
	return r.LinkType(), recs
}

func mustSpec(t testing.TB, s string) *saspec.Spec {
	t.Helper()
	sp, err := saspec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func keyHex(n int, seed byte) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)*7
	}
	return "0x" + hex.EncodeToString(b)
}

// transform is one SA algorithm choice.
type transform struct {
	enc, integ string
}

func (tr transform) String() string {
	if tr.integ == "" {
		return tr.enc
	}
	return tr.enc + "-" + tr.integ
}

// spec returns an SA spec for tr with fixed keys.
func (tr transform) spec(spi uint32, extra string) string {
	e, err := xform.LookupEnc(tr.enc)
	if err != nil {
		panic(err)
	}
	s := "spi=0x" + strings.TrimLeft(hex.EncodeToString(binary.BigEndian.AppendUint32(nil, spi)), "0") + ",proto=esp,enc=" + tr.enc
	if e.KeyLen() > 0 {
		s += ",key=" + keyHex(e.KeyLen(), 0x11)
	}
	if tr.integ != "" {
		ig, err := xform.LookupInteg(tr.integ)
		if err != nil {
			panic(err)
		}
		s += ",integ=" + tr.integ + ",authkey=" + keyHex(ig.KeyLen, 0x55)
	}
	return s + extra
}

// allTransforms lists every encryption transform, CBC and null with every
// ESP integrity algorithm.
func allTransforms() []transform {
	var out []transform
	for _, e := range xform.Encs() {
		if e.Kind == xform.KindAEAD || e.Kind == xform.KindGMAC {
			out = append(out, transform{enc: e.Name})
			continue
		}
		for _, i := range xform.Integs() {
			if !i.GMAC {
				out = append(out, transform{e.Name, i.Name})
			}
		}
	}
	return out
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
