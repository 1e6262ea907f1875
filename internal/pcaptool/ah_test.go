package pcaptool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"

	"github.com/goipsec/goipsec/ah"
	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/saspec"
	"github.com/goipsec/goipsec/internal/xform"
)

// ahAlgs are the AH integrity algorithms, by strongSwan keyword.
func ahAlgs() []string {
	var out []string
	for _, i := range xform.Integs() {
		out = append(out, i.Name)
	}
	return out
}

// ahSpec returns an AH SA spec for the integrity algorithm alg with a
// fixed key.
func ahSpec(alg string, spi uint32, extra string) string {
	ig, err := xform.LookupInteg(alg)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("spi=%#x,proto=ah,integ=%s,authkey=%s%s", spi, alg, keyHex(ig.KeyLen, 0x33), extra)
}

// ahHeaderLen is the AH header length on the wire of spec over IP version v.
func ahHeaderLen(t testing.TB, spec *saspec.Spec, v int) int {
	t.Helper()
	cfg, err := spec.AHConfig()
	if err != nil {
		t.Fatal(err)
	}
	sa, err := ah.NewSA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sa.HeaderLen(v)
}

// IPv4 options: Router Alert (immutable for AH), Record Route (mutable),
// NOP and End of Options List.
var v4Options = []byte{0x94, 4, 0, 0, 0x07, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}

// udp4opts builds an IPv4 UDP packet with the IP options opts (a multiple
// of 4 bytes) and correct checksums.
func udp4opts(src, dst netip.Addr, opts []byte, sport, dport uint16, payload []byte) []byte {
	hl := 20 + len(opts)
	pkt := make([]byte, hl+8+len(payload))
	ip := packet.IPv4(pkt)
	pkt[0] = 0x40 | byte(hl/4)
	pkt[1] = 0x28
	ip.SetTotalLength(uint16(len(pkt)))
	ip.SetID(0x4321)
	ip.SetFlagsFragmentOffset(packet.IPv4FlagDontFragment, 0)
	ip.SetTTL(61)
	ip.SetProtocol(packet.ProtoUDP)
	ip.SetSrc(src)
	ip.SetDst(dst)
	copy(pkt[20:], opts)
	ip.ComputeChecksum()
	fillUDP(pkt[hl:], sport, dport, payload, src, dst)
	return pkt
}

// v6AHExt is an extension header chain with options AH treats both ways:
// a Hop-by-Hop header with Router Alert (immutable) and an experimental
// option whose change-en-route bit is set (mutable), a Destination Options
// header, a type 0 routing header with no segments left, and a second
// Destination Options header (after AH in transport mode).
func v6AHExt() []extHdr {
	hbh := []byte{0, 0, 0x05, 2, 0, 0, 0x3e, 4, 0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 0, 0}
	dst1 := []byte{0, 0, 0x1e, 2, 1, 2}
	dst1 = append(dst1, 1, 0) // PadN, 0 bytes
	rt := make([]byte, 8)     // type 0, segments left 0, no addresses
	dst2 := []byte{0, 0, 1, 4, 0, 0, 0, 0}
	return []extHdr{{packet.ProtoHopByHop, hbh}, {packet.ProtoDestOpts, dst1}, {packet.ProtoRouting, rt}, {packet.ProtoDestOpts, dst2}}
}

// ahPackets are the cleartext packets of the AH tests: IPv4 with and
// without options, IPv6 with and without extension headers (also an atomic
// Fragment header), of various sizes.
func ahPackets() [][]byte {
	return append(samplePackets(),
		udp4opts(v4a, v4b, v4Options, 1111, 2222, []byte("IPv4 with options")),
		udp6(v6a, v6b, 3333, 4444, bytes.Repeat([]byte("v6ext"), 30), v6AHExt()...),
	)
}

// TestAHRoundTrip protects a capture of IPv4 (with and without options)
// and IPv6 (with and without extension headers) packets with AH and
// verifies it again, for every integrity algorithm, tunnel mode over IPv4
// and IPv6 and transport mode, with and without ESN, and checks the AH
// packets' headers and that every packet comes back byte for byte.
func TestAHRoundTrip(t *testing.T) {
	pkts := ahPackets()
	recs := records(LinkEthernet, pkts)
	recs = append(recs[:1], append([]record{{gopacket.CaptureInfo{Timestamp: recs[0].ci.Timestamp, CaptureLength: 42, Length: 42}, arpFrame()}}, recs[1:]...)...)
	in := writePcap(t, LinkEthernet, recs)
	for _, alg := range ahAlgs() {
		for _, mc := range modeCases {
			for _, esn := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/esn=%v", alg, mc.name, esn), func(t *testing.T) {
					extra, first := "", uint64(1)
					if esn {
						// Cross the 32-bit boundary on the way.
						extra, first = ",esn,seq=4294967293", 4294967293
					}
					sp := mustSpec(t, ahSpec(alg, 0xa400, extra))
					opts := &EncryptOptions{SA: sp, Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst}
					enc, st, log := encrypt(t, in, opts)
					if st.Encrypted != len(pkts) || st.Failed != 0 || st.Passed != 1 || log != "" {
						t.Fatalf("encrypt: %s; log:\n%s", st, log)
					}
					link, erecs := readPcap(t, enc)
					if link != LinkEthernet {
						t.Fatalf("link type %v", link)
					}
					checkAH(t, erecs, recs, opts, first)

					dec, dst, log := decrypt(t, enc, mustSpec(t, ahSpec(alg, 0xa400, extra)))
					if dst.Verified != len(pkts) || dst.Decrypted != 0 || dst.IPsec != len(pkts) || dst.Rejected != 0 || dst.Passed != 1 || log != "" {
						t.Fatalf("decrypt: %s; log:\n%s", dst, log)
					}
					_, drecs := readPcap(t, dec)
					sameRecords(t, drecs, recs)
				})
			}
		}
	}
}

// checkAH checks the AH packets Encrypt made from the records orig: the
// AH header's fields, the outer header of tunnel mode and the inner packet
// behind AH, the IP header of transport mode with only its protocol,
// lengths and checksum changed.
func checkAH(t *testing.T, got, orig []record, opts *EncryptOptions, firstSeq uint64) {
	t.Helper()
	if len(got) != len(orig) {
		t.Fatalf("%d records, want %d", len(got), len(orig))
	}
	seq := firstSeq
	for i, r := range got {
		if bytes.Equal(orig[i].data, arpFrame()) {
			if !bytes.Equal(r.data, orig[i].data) {
				t.Errorf("record %d: non-IP record changed", i+1)
			}
			continue
		}
		ip, in := r.data[14:], orig[i].data[14:]
		var l packet.Layout
		if err := packet.ParseLayout(ip, &l); err != nil || l.End != len(ip) {
			t.Fatalf("record %d: AH packet: %v (end %d of %d)", i+1, err, l.End, len(ip))
		}
		if et := binary.BigEndian.Uint16(r.data[12:]); (et == 0x0800) != (l.Version == 4) {
			t.Errorf("record %d: EtherType %#x for IPv%d", i+1, et, l.Version)
		}
		if l.Proto != packet.ProtoAH {
			t.Fatalf("record %d: protocol %d, want AH", i+1, l.Proto)
		}
		if l.Version == 4 && !packet.IPv4(ip).ChecksumValid() {
			t.Errorf("record %d: bad IPv4 header checksum", i+1)
		}
		ahLen := ahHeaderLen(t, opts.SA, l.Version)
		h := ip[l.ProtoOff:]
		if int(h[1]) != ahLen/4-2 || h[2] != 0 || h[3] != 0 {
			t.Errorf("record %d: AH payload length %d, reserved %x; want %d, 0", i+1, h[1], h[2:4], ahLen/4-2)
		}
		if spi := binary.BigEndian.Uint32(h[4:]); spi != opts.SA.SPI {
			t.Errorf("record %d: spi %#x", i+1, spi)
		}
		if s := binary.BigEndian.Uint32(h[8:]); s != uint32(seq) {
			t.Errorf("record %d: seq %d, want %d", i+1, s, uint32(seq))
		}
		seq++
		behind := ip[l.ProtoOff+ahLen:]
		if opts.Mode == esp.Tunnel {
			want := uint8(packet.ProtoIPv4)
			if in[0]>>4 == 6 {
				want = packet.ProtoIPv6
			}
			if h[0] != want || !bytes.Equal(behind, in) {
				t.Errorf("record %d: next header %d, inner packet\n %x\nwant %x", i+1, h[0], behind, in)
			}
			if l.Version == 4 {
				o := packet.IPv4(ip)
				if o.TTL() != 64 || o.DontFragment() || o.TOS() != 0 || o.Src() != opts.TunnelSrc || o.Dst() != opts.TunnelDst || o.HeaderLen() != 20 || o.ID() == 0 {
					t.Errorf("record %d: outer IPv4 header % x", i+1, ip[:20])
				}
			} else {
				o := packet.IPv6(ip)
				if o.HopLimit() != 64 || o.TrafficClass() != 0 || o.FlowLabel() != 0 || o.Src() != opts.TunnelSrc || o.Dst() != opts.TunnelDst || l.ProtoOff != 40 {
					t.Errorf("record %d: outer IPv6 header % x", i+1, ip[:40])
				}
			}
			continue
		}
		// Transport mode: AH sits where ESP would, at the original
		// packet's insertion point.
		var li packet.Layout
		if err := packet.ParseLayout(in, &li); err != nil {
			t.Fatal(err)
		}
		if l.ProtoOff != li.InsertOff || l.ProtoNHOff != li.InsertNHOff {
			t.Errorf("record %d: AH at %d (next header byte %d), want %d (%d)", i+1, l.ProtoOff, l.ProtoNHOff, li.InsertOff, li.InsertNHOff)
		}
		if h[0] != in[li.InsertNHOff] || !bytes.Equal(behind, in[li.InsertOff:]) {
			t.Errorf("record %d: next header %d, payload behind AH differs", i+1, h[0])
		}
		hdr, ohdr := append([]byte(nil), ip[:l.ProtoOff]...), append([]byte(nil), in[:li.InsertOff]...)
		hdr[l.ProtoNHOff], ohdr[li.InsertNHOff] = 0, 0
		if l.Version == 4 {
			clear(hdr[2:4])
			clear(hdr[10:12])
			clear(ohdr[2:4])
			clear(ohdr[10:12])
		} else {
			clear(hdr[4:6])
			clear(ohdr[4:6])
		}
		if !bytes.Equal(hdr, ohdr) {
			t.Errorf("record %d: IP header\n %x\nwant %x", i+1, hdr, ohdr)
		}
	}
}

// ahTransportRecords returns pkts (raw IP) protected with spec in
// transport mode.
func ahTransportRecords(t *testing.T, spec string, pkts [][]byte) []record {
	t.Helper()
	enc, st, log := encrypt(t, writePcap(t, LinkRaw, records(LinkRaw, pkts)), &EncryptOptions{SA: mustSpec(t, spec), Mode: esp.Transport})
	if st.Encrypted != len(pkts) {
		t.Fatalf("%s\n%s", st, log)
	}
	_, recs := readPcap(t, enc)
	return recs
}

// modify returns a copy of r with f applied to its data.
func modify(r record, f func(p []byte)) record {
	r = clone(r)
	f(r.data)
	return r
}

func fixIPv4Sum(p []byte) { packet.IPv4(p).ComputeChecksum() }

// TestAHRejections checks the per-packet report and the counts for AH
// packets with immutable fields changed, replayed, unknown SPI, the wrong
// protocol for the SA, truncated and with an AH length that does not fit
// the SA, that packets whose mutable fields changed en route still verify,
// and that the good packets around them come through.
func TestAHRejections(t *testing.T) {
	v4 := udp4opts(v4a, v4b, v4Options, 1, 2, []byte("four"))
	v6 := udp6(v6a, v6b, 3, 4, []byte("six"), v6AHExt()...)
	spec := ahSpec("sha256", 0x1234, "")
	enc := ahTransportRecords(t, spec, [][]byte{v4, v6, v4, v6, v4})
	tun := encryptRecords(t, spec, false, [][]byte{v6}) // seq 1 of its own: a replay
	other := ahTransportRecords(t, ahSpec("sha256", 0x9999, ""), [][]byte{v4})
	longer := ahTransportRecords(t, ahSpec("sha512", 0x1234, ""), [][]byte{v4})
	espRec := encryptRecords(t, transform{enc: "aes128gcm16"}.spec(0x5555, ""), false, [][]byte{v4})

	// Mutable fields: TTL (checksum left stale, as a router that does
	// not care would), TOS and DF, record route data; hop limit, traffic
	// class, flow label and the change-en-route option's data.
	ttl := modify(enc[0], func(p []byte) { p[8] -= 7 })
	tos := modify(enc[2], func(p []byte) {
		p[1] = 0xb8
		p[6] ^= 0x40
		copy(p[27:31], []byte{192, 0, 2, 99})
		p[26] = 8
		fixIPv4Sum(p)
	})
	hop := modify(enc[1], func(p []byte) { p[7] = 1; p[0] ^= 0x0f; p[1] ^= 0xf0; p[3] ^= 0x55; p[40+8] ^= 0xff })
	// Immutable fields.
	payload := modify(enc[3], func(p []byte) { p[len(p)-1] ^= 0x01 })
	src := modify(enc[4], func(p []byte) { p[12] ^= 0x80; fixIPv4Sum(p) })
	alert := modify(enc[4], func(p []byte) { p[22] ^= 1; fixIPv4Sum(p) }) // Router Alert value
	seqField := modify(enc[4], func(p []byte) { p[40+11] ^= 0x10 })       // AH at 40: after the options
	icv := modify(enc[4], func(p []byte) { p[40+12] ^= 0x01 })
	// Cut the ICV short, with consistent IP lengths.
	short := modify(enc[4], func(p []byte) {})
	short.data = short.data[:40+20]
	binary.BigEndian.PutUint16(short.data[2:], uint16(len(short.data)))
	fixIPv4Sum(short.data)
	short.ci.CaptureLength, short.ci.Length = len(short.data), len(short.data)
	// Snapped by the capture.
	snapped := clone(enc[4])
	snapped.data = snapped.data[:50]
	snapped.ci.CaptureLength = 50
	// An IPv4 fragment.
	frag := modify(enc[4], func(p []byte) { packet.IPv4(p).SetFlagsFragmentOffset(packet.IPv4FlagMoreFragments, 0); fixIPv4Sum(p) })

	in := []record{
		ttl,       // 1 verifies (seq 1)
		hop,       // 2 verifies (seq 2)
		payload,   // 3 bad ICV (seq 4)
		tos,       // 4 verifies (seq 3)
		enc[1],    // 5 replay (seq 2)
		tun[0],    // 6 replay (seq 1)
		other[0],  // 7 unknown SPI
		espRec[0], // 8 ESP packet, unknown SPI
		src,       // 9 bad ICV
		alert,     // 10 bad ICV
		seqField,  // 11 bad ICV (seq 21)
		icv,       // 12 bad ICV
		longer[0], // 13 AH length for sha512
		short,     // 14 truncated
		snapped,   // 15 truncated by the capture
		frag,      // 16 fragment
		enc[3],    // 17 verifies (seq 4)
		enc[4],    // 18 verifies (seq 5)
		enc[4],    // 19 replay
	}
	out, st, log := decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec), mustSpec(t, transform{enc: "aes128gcm16"}.spec(0x7777, "")))
	want := []string{
		"packet 3: spi 0x1234 seq 4: bad ICV",
		"packet 5: spi 0x1234 seq 2: replay (sequence number already received)",
		"packet 6: spi 0x1234 seq 1: replay (sequence number already received)",
		"packet 7: spi 0x9999 seq 1: unknown SPI",
		"packet 8: spi 0x5555 seq 1: unknown SPI",
		"packet 9: spi 0x1234 seq 5: bad ICV",
		"packet 10: spi 0x1234 seq 5: bad ICV",
		"packet 11: spi 0x1234 seq 21: bad ICV",
		"packet 12: spi 0x1234 seq 5: bad ICV",
		"packet 13: spi 0x1234 seq 1: bad length: the AH header's length does not match the SA's integrity algorithm",
		"packet 14: spi 0x1234 seq 5: truncated: shorter than the AH header and ICV",
		fmt.Sprintf("packet 15: IPsec packet truncated by the capture (50 of %d bytes captured)", len(enc[4].data)),
		"packet 16: AH in an IP fragment: reassembly not supported",
		"packet 19: spi 0x1234 seq 5: replay (sequence number already received)",
	}
	if got := strings.Split(strings.TrimSpace(log), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", log, strings.Join(want, "\n"))
	}
	if st.Packets != 19 || st.IPsec != 19 || st.Verified != 5 || st.Decrypted != 0 || st.Rejected != 14 || st.Written != 5 {
		t.Errorf("stats %s", st)
	}
	_, recs := readPcap(t, out)
	// What the receiver gets: the packet as it arrived, without AH, its
	// checksum valid.
	ttlWant := append([]byte(nil), v4...)
	ttlWant[8] -= 7
	fixIPv4Sum(ttlWant)
	tosWant := append([]byte(nil), v4...)
	tosWant[1] = 0xb8
	tosWant[6] ^= 0x40
	copy(tosWant[27:31], []byte{192, 0, 2, 99})
	tosWant[26] = 8
	fixIPv4Sum(tosWant)
	hopWant := append([]byte(nil), v6...)
	hopWant[7] = 1
	hopWant[0] ^= 0x0f
	hopWant[1] ^= 0xf0
	hopWant[3] ^= 0x55
	hopWant[40+8] ^= 0xff
	wantOut := [][]byte{ttlWant, hopWant, tosWant, v6, v4}
	if len(recs) != len(wantOut) {
		t.Fatalf("%d records written, want %d", len(recs), len(wantOut))
	}
	for i, w := range wantOut {
		if !bytes.Equal(recs[i].data, w) {
			t.Errorf("record %d:\n got %x\nwant %x", i+1, recs[i].data, w)
		}
	}
}

// TestAHWrongProto checks the reports for ESP packets under an AH SA's SPI
// and AH packets under an ESP SA's.
func TestAHWrongProto(t *testing.T) {
	pkts := samplePackets()[:1]
	ahRec := ahTransportRecords(t, ahSpec("sha1", 0x2000, ""), pkts)
	espRec := encryptRecords(t, transform{enc: "aes128gcm16"}.spec(0x3000, ""), false, pkts)
	_, st, log := decrypt(t, writePcap(t, LinkRaw, []record{ahRec[0], espRec[0]}),
		mustSpec(t, transform{enc: "aes128gcm16"}.spec(0x2000, "")), mustSpec(t, ahSpec("sha1", 0x3000, "")))
	want := "packet 1: spi 0x2000 seq 1: AH packet for an ESP SA\npacket 2: spi 0x3000 seq 1: ESP packet for an AH SA\n"
	if log != want || st.Rejected != 2 {
		t.Errorf("%s\nlog %q\nwant %q", st, log, want)
	}
}

// TestAHTooOld checks the report for a packet left of the window, and
// that window=0 turns anti-replay off.
func TestAHTooOld(t *testing.T) {
	var pkts [][]byte
	for i := 0; i < 70; i++ {
		pkts = append(pkts, udp4(v4a, v4b, 1, uint16(i), nil))
	}
	spec := ahSpec("aes128gmac", 0x1234, "")
	enc := ahTransportRecords(t, spec, pkts)
	in := append(enc[1:], enc[0])
	_, st, log := decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec+",window=64"))
	if st.Rejected != 1 || strings.TrimSpace(log) != "packet 70: spi 0x1234 seq 1: replay window: sequence number too old" {
		t.Errorf("%s\n%s", st, log)
	}
	in = append(in, enc[5])
	_, st, log = decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec+",window=0"))
	if st.Rejected != 0 || st.Verified != 71 {
		t.Errorf("%s\n%s", st, log)
	}
	// seq=N: the first sequence number expected; those before are replays.
	_, st, log = decrypt(t, writePcap(t, LinkRaw, enc[:3]), mustSpec(t, spec+",seq=3"))
	if st.Rejected != 2 || st.Verified != 1 || !strings.HasPrefix(log, "packet 1: spi 0x1234 seq 1: replay") {
		t.Errorf("%s\n%s", st, log)
	}
}

// TestAHESNLateStart verifies an ESN capture that starts after 2^32
// packets: without seq= the receiver assumes the high-order bits 0 and the
// ICV fails; with it the packets verify.
func TestAHESNLateStart(t *testing.T) {
	for _, alg := range []string{"sha256", "aes256gmac"} {
		enc := ahTransportRecords(t, ahSpec(alg, 0x6666, ",esn,seq=0x500000010"), samplePackets()[:2])
		in := writePcap(t, LinkRaw, enc)
		_, st, log := decrypt(t, in, mustSpec(t, ahSpec(alg, 0x6666, ",esn")))
		if st.Verified != 0 || st.Rejected != 2 || !strings.Contains(log, "bad ICV") {
			t.Errorf("%s without seq: %s\n%s", alg, st, log)
		}
		_, st, log = decrypt(t, in, mustSpec(t, ahSpec(alg, 0x6666, ",esn,seq=0x500000001")))
		if st.Verified != 2 || st.Rejected != 0 {
			t.Errorf("%s with seq: %s\n%s", alg, st, log)
		}
	}
}

// TestMixedESPAndAH decrypts one capture holding ESP (tunnel, and in UDP),
// AH (transport and tunnel) and cleartext packets with all their SAs at
// once.
func TestMixedESPAndAH(t *testing.T) {
	pkts := ahPackets()
	specs := []string{
		transform{enc: "aes256gcm16"}.spec(0x1001, ""),
		transform{"aes128", "sha256"}.spec(0x1002, ",esn"),
		ahSpec("sha384", 0x2001, ""),
		ahSpec("aes192gmac", 0x2002, ",esn"),
	}
	encs := []*EncryptOptions{
		{SA: mustSpec(t, specs[0]), Mode: esp.Tunnel, TunnelSrc: modeCases[0].src, TunnelDst: modeCases[0].dst},
		{SA: mustSpec(t, specs[1]), Mode: esp.Transport, UDP: &esp.UDPPorts{Src: 4500, Dst: 4500}},
		{SA: mustSpec(t, specs[2]), Mode: esp.Transport},
		{SA: mustSpec(t, specs[3]), Mode: esp.Tunnel, TunnelSrc: modeCases[1].src, TunnelDst: modeCases[1].dst},
	}
	orig := records(LinkEthernet, pkts)
	var protected [][]record
	for _, o := range encs {
		enc, st, log := encrypt(t, writePcap(t, LinkEthernet, orig), o)
		if st.Encrypted != len(pkts) {
			t.Fatalf("%s\n%s", st, log)
		}
		_, r := readPcap(t, enc)
		protected = append(protected, r)
	}
	// Packet i goes through SA i%5 (4: in clear).
	var in, want []record
	for i := range pkts {
		want = append(want, orig[i])
		if k := i % 5; k < 4 {
			in = append(in, protected[k][i])
		} else {
			in = append(in, orig[i])
		}
	}
	var sas []*saspec.Spec
	for _, s := range specs {
		sas = append(sas, mustSpec(t, s))
	}
	dec, st, log := decrypt(t, writePcap(t, LinkEthernet, in), sas...)
	if st.IPsec != len(pkts)-1 || st.Decrypted != 4 || st.Verified != 3 || st.Rejected != 0 || st.Passed != 1 || log != "" {
		t.Fatalf("%s\n%s", st, log)
	}
	_, got := readPcap(t, dec)
	sameRecords(t, got, want)
}

// TestAHLinkTypes round-trips AH through each link type read.
func TestAHLinkTypes(t *testing.T) {
	v4 := [][]byte{udp4(v4a, v4b, 1, 2, []byte("abc")), udp4opts(v4a, v4b, v4Options, 3, 4, []byte("opts"))}
	v6 := [][]byte{udp6(v6a, v6b, 1, 2, []byte("abc")), udp6(v6a, v6b, 3, 4, []byte("defg"), v6AHExt()...)}
	linkTypeRoundTrips(t, v4, v6, ahSpec("sha512", 0x1000, ""),
		func(st *DecryptStats) int { return st.Verified })
}

// TestAHEncryptFailures checks that packets AH cannot protect are reported
// and left out, never written in clear.
func TestAHEncryptFailures(t *testing.T) {
	good := samplePackets()[0]
	frag := append([]byte(nil), good...)
	packet.IPv4(frag).SetFlagsFragmentOffset(packet.IPv4FlagMoreFragments, 0)
	packet.IPv4(frag).ComputeChecksum()
	badOpt := udp4opts(v4a, v4b, []byte{0x94, 9, 0, 0}, 1, 2, nil) // option overruns the header
	big := udp4(v4a, v4b, 1, 2, make([]byte, 65535-28-16))         // fits IPv4, not with AH
	var in []record
	for _, p := range [][]byte{good, frag, badOpt, big} {
		in = append(in, record{gopacket.CaptureInfo{CaptureLength: len(p), Length: len(p)}, p})
	}
	raw := writePcap(t, LinkRaw, in)
	spec := ahSpec("sha256", 0x1234, "")
	out, st, log := encrypt(t, raw, &EncryptOptions{SA: mustSpec(t, spec), Mode: esp.Transport})
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 3 || st.Encrypted != 1 || st.Failed != 3 || st.Written != 1 ||
		lines[0] != "packet 2: not encrypted: an IP fragment cannot be protected in transport mode" ||
		!strings.HasPrefix(lines[1], "packet 3: not encrypted: ") || !strings.Contains(lines[1], "malformed") ||
		lines[2] != fmt.Sprintf("packet 4: not encrypted: protected packet of %d bytes exceeds the IP length limit", len(big)+28) {
		t.Errorf("%s\nlog:\n%s", st, log)
	}
	_, recs := readPcap(t, out)
	if len(recs) != 1 || recs[0].data[9] != packet.ProtoAH {
		t.Errorf("records %v", recs)
	}
	// Tunnel mode protects fragments and the packet with the bad option
	// (the inner packet is opaque to it), not the one that outgrows IPv4.
	_, st, log = encrypt(t, raw, &EncryptOptions{SA: mustSpec(t, spec), Mode: esp.Tunnel, TunnelSrc: v4a, TunnelDst: v4b})
	if st.Encrypted != 3 || st.Failed != 1 || log != fmt.Sprintf("packet 4: not encrypted: protected packet of %d bytes exceeds the IP length limit\n", 20+len(big)+28) {
		t.Errorf("tunnel: %s\n%s", st, log)
	}
	_, st, log = encrypt(t, raw, &EncryptOptions{SA: mustSpec(t, spec), Mode: esp.Tunnel, TunnelSrc: v6a, TunnelDst: v6b})
	if st.Encrypted != 3 || st.Failed != 1 || log != fmt.Sprintf("packet 4: not encrypted: protected packet of %d bytes exceeds the IP length limit\n", 40+len(big)+32) {
		t.Errorf("tunnel over IPv6: %s\n%s", st, log)
	}
}

// TestAHSeqOverflow checks that the run stops when the sequence numbers
// run out, as for ESP.
func TestAHSeqOverflow(t *testing.T) {
	pkts := samplePackets()[:3]
	var out, log bytes.Buffer
	st, err := Encrypt(bytes.NewReader(writePcap(t, LinkRaw, records(LinkRaw, pkts))), &out,
		&EncryptOptions{SA: mustSpec(t, ahSpec("md5", 0x1234, ",seq=4294967295")), Mode: esp.Transport, Log: &log})
	if !errors.Is(err, ah.ErrSeqOverflow) || st.Encrypted != 1 || st.Failed != 1 {
		t.Errorf("Encrypt: %v, %s\n%s", err, st, log.String())
	}
}

// TestAHOptions checks the option checks for AH.
func TestAHOptions(t *testing.T) {
	sp := mustSpec(t, ahSpec("sha256", 0x4444, ""))
	err := (&EncryptOptions{SA: sp, Mode: esp.Transport, UDP: &esp.UDPPorts{Src: 4500, Dst: 4500}}).Validate()
	if err == nil || err.Error() != "UDP encapsulation (--udp-encap, RFC 3948) is for ESP only; SA spi 0x4444 is proto=ah" {
		t.Errorf("Validate: %v", err)
	}
	for _, o := range []EncryptOptions{{SA: sp, Mode: esp.Transport}, {SA: sp, Mode: esp.Tunnel, TunnelSrc: v6a, TunnelDst: v6b}} {
		if err := o.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", o, err)
		}
	}
	if _, err := Encrypt(bytes.NewReader(writePcap(t, LinkRaw, nil)), &bytes.Buffer{},
		&EncryptOptions{SA: sp, Mode: esp.Tunnel, TunnelSrc: v4a, TunnelDst: v4b, UDP: &esp.UDPPorts{Src: 1, Dst: 2}}); err == nil {
		t.Error("Encrypt with AH in UDP succeeded")
	}
	// Duplicate SPIs across protocols.
	_, err = Decrypt(bytes.NewReader(writePcap(t, LinkRaw, nil)), &bytes.Buffer{},
		&DecryptOptions{SAs: []*saspec.Spec{mustSpec(t, transform{enc: "aes128gcm16"}.spec(0x4444, "")), sp}})
	if err == nil || err.Error() != "two SAs with spi 0x4444" {
		t.Errorf("Decrypt: %v", err)
	}
}
