package pcaptool

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/saspec"
)

// encryptRecords returns the records of pkts encrypted with spec in
// tunnel mode over IPv4 (raw IP link type).
func encryptRecords(t *testing.T, spec string, udp bool, pkts [][]byte) []record {
	t.Helper()
	opts := &EncryptOptions{SA: mustSpec(t, spec), Mode: esp.Tunnel, TunnelSrc: modeCases[0].src, TunnelDst: modeCases[0].dst}
	if udp {
		opts.UDP = &esp.UDPPorts{Src: 4500, Dst: 4500}
	}
	enc, st, _ := encrypt(t, writePcap(t, LinkRaw, records(LinkRaw, pkts)), opts)
	if st.Encrypted != len(pkts) {
		t.Fatal(st)
	}
	_, recs := readPcap(t, enc)
	return recs
}

func clone(r record) record {
	r.data = append([]byte(nil), r.data...)
	return r
}

// TestRejections checks the per-packet report and the counts for tampered,
// replayed, unknown-SPI and truncated packets, and that the good packets
// around them still come through.
func TestRejections(t *testing.T) {
	pkts := samplePackets()[:4]
	spec := transform{"aes128", "sha256"}.spec(0x1234, "")
	enc := encryptRecords(t, spec, false, pkts)
	other := encryptRecords(t, transform{enc: "aes128gcm16"}.spec(0x9999, ""), false, pkts[:1])

	tampered := clone(enc[1])
	tampered.data[len(tampered.data)-20] ^= 0x01 // in the ciphertext

	badICV := clone(enc[3])
	badICV.data[len(badICV.data)-1] ^= 0x80

	// Cut inside the ESP payload, with consistent IP lengths.
	short := clone(enc[2])
	short.data = short.data[:20+8+16+4]
	binary.BigEndian.PutUint16(short.data[2:], uint16(len(short.data)))
	packet.IPv4(short.data).ComputeChecksum()
	short.ci.CaptureLength, short.ci.Length = len(short.data), len(short.data)

	// A capture with a small snap length.
	snapped := clone(enc[2])
	snapped.data = snapped.data[:40]
	snapped.ci.CaptureLength = 40

	in := []record{
		enc[0],   // 1 ok
		tampered, // 2 bad ICV
		enc[1],   // 3 ok
		enc[1],   // 4 replay
		other[0], // 5 unknown SPI
		short,    // 6 truncated
		snapped,  // 7 truncated by the capture
		enc[2],   // 8 ok
		badICV,   // 9 bad ICV
		enc[0],   // 10 replay (old)
	}
	out, st, log := decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec))
	want := []string{
		"packet 2: spi 0x1234 seq 2: bad ICV",
		"packet 4: spi 0x1234 seq 2: replay (sequence number already received)",
		"packet 5: spi 0x9999 seq 1: unknown SPI",
		"packet 6: spi 0x1234 seq 3: truncated: shorter than the ESP header, IV and ICV",
		"packet 7: IPsec packet truncated by the capture (40 of " + strconv.Itoa(len(enc[2].data)) + " bytes captured)",
		"packet 9: spi 0x1234 seq 4: bad ICV",
		"packet 10: spi 0x1234 seq 1: replay (sequence number already received)",
	}
	if got := strings.Split(strings.TrimSpace(log), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", log, strings.Join(want, "\n"))
	}
	if st.Packets != 10 || st.IPsec != 10 || st.Decrypted != 3 || st.Rejected != 7 || st.Written != 3 {
		t.Errorf("stats %s", st)
	}
	_, recs := readPcap(t, out)
	if len(recs) != 3 || !bytes.Equal(recs[0].data, pkts[0]) || !bytes.Equal(recs[1].data, pkts[1]) || !bytes.Equal(recs[2].data, pkts[2]) {
		t.Errorf("output records %v", recs)
	}
}

// TestTooOld checks the report for a packet left of the window.
func TestTooOld(t *testing.T) {
	var pkts [][]byte
	for i := 0; i < 70; i++ {
		pkts = append(pkts, udp4(v4a, v4b, 1, uint16(i), nil))
	}
	spec := transform{enc: "aes128gcm16"}.spec(0x1234, "")
	enc := encryptRecords(t, spec, false, pkts)
	in := append(enc[1:], enc[0])
	_, st, log := decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec+",window=64"))
	if st.Rejected != 1 || strings.TrimSpace(log) != "packet 70: spi 0x1234 seq 1: replay window: sequence number too old" {
		t.Errorf("%s\n%s", st, log)
	}
	// Without anti-replay, the replayed and the old packet pass.
	in = append(in, enc[5])
	_, st, log = decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec+",window=0"))
	if st.Rejected != 0 || st.Decrypted != 71 {
		t.Errorf("%s\n%s", st, log)
	}
	// seq=N: the first sequence number expected; the ones before it count
	// as received, and those left of the window as too old.
	_, st, log = decrypt(t, writePcap(t, LinkRaw, enc), mustSpec(t, spec+",window=64,seq=67"))
	if st.Rejected != 66 || st.Decrypted != 4 || !strings.HasPrefix(log, "packet 1: spi 0x1234 seq 1: replay window: sequence number too old\n") ||
		!strings.HasSuffix(log, "packet 66: spi 0x1234 seq 66: replay (sequence number already received)\n") {
		t.Errorf("%s\n%s", st, log)
	}
}

// TestNATTDemux checks ESP-in-UDP demultiplexing: IKE (non-ESP marker) and
// NAT-T keepalives pass through, ESP on port 4500 (either side) is
// decrypted, other UDP passes through, and a runt is rejected.
func TestNATTDemux(t *testing.T) {
	spec := transform{enc: "aes256gcm16"}.spec(0x5555, "")
	enc := encryptRecords(t, spec, true, samplePackets()[:2])
	ike := udp4(v4a, v4b, 4500, 4500, append([]byte{0, 0, 0, 0}, bytes.Repeat([]byte{0x11}, 28)...))
	keepalive := udp4(v4a, v4b, 4500, 4500, []byte{0xff})
	dns := udp4(v4a, v4b, 53, 53, []byte("not ipsec"))
	runt := udp4(v4a, v4b, 4500, 4500, []byte{1, 2, 3, 4, 5})
	ike500 := udp4(v4a, v4b, 500, 500, bytes.Repeat([]byte{0x22}, 28))
	// ESP from a non-4500 source port to 4500.
	sport := clone(enc[1])
	binary.BigEndian.PutUint16(sport.data[20:], 33333)

	var in []record
	in = append(in, enc[0])
	for _, p := range [][]byte{ike, keepalive, dns, runt, ike500} {
		in = append(in, record{gopacket.CaptureInfo{CaptureLength: len(p), Length: len(p)}, p})
	}
	in = append(in, sport)
	out, st, log := decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec))
	if st.Decrypted != 2 || st.IKE != 1 || st.Keepalives != 1 || st.Passed != 2 || st.Rejected != 1 || st.Written != 6 {
		t.Errorf("stats %s", st)
	}
	if strings.TrimSpace(log) != "packet 5: ESP packet of 5 bytes: truncated" {
		t.Errorf("log %q", log)
	}
	_, recs := readPcap(t, out)
	want := [][]byte{samplePackets()[0], ike, keepalive, dns, ike500, samplePackets()[1]}
	for i := range want {
		if i >= len(recs) || !bytes.Equal(recs[i].data, want[i]) {
			t.Errorf("record %d differs", i+1)
		}
	}

	// With --udp-port 4501, port 4500 is just UDP.
	var b bytes.Buffer
	st, err := Decrypt(bytes.NewReader(writePcap(t, LinkRaw, in)), &b, &DecryptOptions{SAs: nil, UDPPorts: []uint16{4501}})
	if err != nil || st.IPsec != 0 || st.Passed != len(in) {
		t.Errorf("%v %s", err, st)
	}
}

// TestDummyAndTFC decrypts hand-made packets: a dummy packet (next header
// 59), which is dropped without being a rejection, and a tunnel packet
// with TFC padding after the inner packet, which is cut off.
func TestDummyAndTFC(t *testing.T) {
	spec := transform{enc: "aes128gcm16"}.spec(0x2222, "")
	cfg, err := mustSpec(t, spec).ESPConfig()
	if err != nil {
		t.Fatal(err)
	}
	sa, err := esp.NewSA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(payload []byte, nh uint8) []byte {
		head := 20 + sa.Headroom()
		buf := make([]byte, head+len(payload), head+len(payload)+sa.Tailroom())
		copy(buf[head:], payload)
		start, end, err := sa.Seal(buf, head, head+len(payload), nh)
		if err != nil {
			t.Fatal(err)
		}
		pkt := buf[start-20 : end]
		ip := packet.IPv4(pkt)
		pkt[0] = 0x45
		ip.SetTotalLength(uint16(len(pkt)))
		ip.SetTTL(64)
		ip.SetProtocol(packet.ProtoESP)
		ip.SetSrc(v4a)
		ip.SetDst(v4b)
		ip.ComputeChecksum()
		return pkt
	}
	inner := samplePackets()[0]
	dummy := seal(bytes.Repeat([]byte{0}, 40), esp.NextHeaderNone)
	tfc := seal(append(append([]byte(nil), inner...), make([]byte, 100)...), packet.ProtoIPv4)
	badInner := seal(inner[:30], packet.ProtoIPv4) // total length 40 > 30
	in := []record{
		{gopacket.CaptureInfo{CaptureLength: len(dummy), Length: len(dummy)}, dummy},
		{gopacket.CaptureInfo{CaptureLength: len(tfc), Length: len(tfc)}, tfc},
		{gopacket.CaptureInfo{CaptureLength: len(badInner), Length: len(badInner)}, badInner},
	}
	out, st, log := decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec))
	if st.Dummy != 1 || st.Decrypted != 1 || st.Rejected != 1 {
		t.Errorf("stats %s", st)
	}
	wantLog := "packet 1: spi 0x2222 seq 1: dummy packet, dropped\npacket 3: spi 0x2222 seq 3: inner IPv4 packet: packet: truncated\n"
	if log != wantLog {
		t.Errorf("log %q, want %q", log, wantLog)
	}
	_, recs := readPcap(t, out)
	if len(recs) != 1 || !bytes.Equal(recs[0].data, inner) {
		t.Errorf("records %v", recs)
	}
}

// TestFragmentsAndAH checks what is rejected because it cannot be
// verified here, ESP in an IP fragment, and a hand-made AH packet whose
// ICV is zeros.
func TestFragmentsAndAH(t *testing.T) {
	spec := transform{enc: "aes128gcm16"}.spec(0x3333, "")
	enc := encryptRecords(t, spec, false, samplePackets()[:1])
	frag := clone(enc[0])
	packet.IPv4(frag.data).SetFlagsFragmentOffset(packet.IPv4FlagMoreFragments, 0)
	packet.IPv4(frag.data).ComputeChecksum()

	ah := make([]byte, 20+24)
	ip := packet.IPv4(ah)
	ah[0] = 0x45
	ip.SetTotalLength(uint16(len(ah)))
	ip.SetProtocol(packet.ProtoAH)
	ip.SetSrc(v4a)
	ip.SetDst(v4b)
	ip.ComputeChecksum()
	ah[20], ah[21] = packet.ProtoTCP, 4
	binary.BigEndian.PutUint32(ah[24:], 0x4444)
	binary.BigEndian.PutUint32(ah[28:], 9)

	in := []record{frag, {gopacket.CaptureInfo{CaptureLength: len(ah), Length: len(ah)}, ah}}
	_, st, log := decrypt(t, writePcap(t, LinkRaw, in), mustSpec(t, spec),
		mustSpec(t, "spi=0x4444,proto=ah,integ=sha1,authkey="+keyHex(20, 1)))
	want := "packet 1: ESP in an IP fragment: reassembly not supported\npacket 2: spi 0x4444 seq 9: bad ICV\n"
	if log != want || st.Rejected != 2 {
		t.Errorf("%s\nlog %q\nwant %q", st, log, want)
	}
}

// TestESNLateStart decrypts an ESN capture that starts after 2^32 packets:
// without seq= the receiver cannot infer the high-order bits and rejects
// the packets; with it they verify.
func TestESNLateStart(t *testing.T) {
	tr := transform{enc: "aes128gcm16"}
	enc := encryptRecords(t, tr.spec(0x6666, ",esn,seq=0x500000010"), false, samplePackets()[:2])
	in := writePcap(t, LinkRaw, enc)
	_, st, _ := decrypt(t, in, mustSpec(t, tr.spec(0x6666, ",esn")))
	if st.Decrypted != 0 || st.Rejected != 2 {
		t.Errorf("without seq: %s", st)
	}
	_, st, log := decrypt(t, in, mustSpec(t, tr.spec(0x6666, ",esn,seq=0x500000001")))
	if st.Decrypted != 2 || st.Rejected != 0 {
		t.Errorf("with seq: %s\n%s", st, log)
	}
}

// TestEncryptFailures checks that packets that cannot be protected are
// reported and left out, never written in clear.
func TestEncryptFailures(t *testing.T) {
	good := samplePackets()[0]
	frag := append([]byte(nil), good...)
	packet.IPv4(frag).SetFlagsFragmentOffset(packet.IPv4FlagMoreFragments, 0)
	packet.IPv4(frag).ComputeChecksum()
	bad := append([]byte(nil), good...)
	bad[0] = 0x43 // IHL 3
	big := udp4(v4a, v4b, 1, 2, make([]byte, 65535-28))
	var in []record
	for _, p := range [][]byte{good, frag, bad, big} {
		in = append(in, record{gopacket.CaptureInfo{CaptureLength: len(p), Length: len(p)}, p})
	}
	snapped := record{gopacket.CaptureInfo{CaptureLength: 30, Length: len(good)}, good[:30]}
	in = append(in, snapped)
	spec := transform{enc: "aes128gcm16"}.spec(0x1234, "")
	raw := writePcap(t, LinkRaw, in)
	out, st, log := encrypt(t, raw, &EncryptOptions{SA: mustSpec(t, spec), Mode: esp.Transport})
	want := "packet 2: not encrypted: an IP fragment cannot be protected in transport mode\n" +
		"packet 3: not encrypted: bad IP packet: packet: malformed header\n" +
		"packet 4: not encrypted: protected packet of 65572 bytes exceeds the IP length limit\n" +
		"packet 5: truncated by the capture (30 of 40 bytes captured), not encrypted\n"
	if log != want || st.Encrypted != 1 || st.Failed != 4 || st.Written != 1 {
		t.Errorf("%s\nlog %q\nwant %q", st, log, want)
	}
	_, recs := readPcap(t, out)
	if len(recs) != 1 || recs[0].data[9] != packet.ProtoESP {
		t.Errorf("records %v", recs)
	}
	// Tunnel mode protects fragments.
	_, st, log = encrypt(t, raw, &EncryptOptions{SA: mustSpec(t, spec), Mode: esp.Tunnel, TunnelSrc: v4a, TunnelDst: v4b})
	if st.Encrypted != 2 || st.Failed != 3 {
		t.Errorf("tunnel: %s\n%s", st, log)
	}
}

func TestEncryptOptions(t *testing.T) {
	sp := mustSpec(t, transform{enc: "aes128gcm16"}.spec(0x1234, ""))
	ah := mustSpec(t, "spi=0x4444,proto=ah,integ=sha1,authkey="+keyHex(20, 1))
	tests := []struct {
		opts EncryptOptions
		want string
	}{
		{EncryptOptions{Mode: esp.Tunnel}, "no SA"},
		{EncryptOptions{SA: ah, Mode: esp.Transport, UDP: &esp.UDPPorts{Src: 4500, Dst: 4500}}, "UDP encapsulation (--udp-encap, RFC 3948) is for ESP only; SA spi 0x4444 is proto=ah"},
		{EncryptOptions{SA: sp, Mode: esp.Tunnel, TunnelSrc: v4a}, "tunnel mode needs the outer addresses (--tunnel-src and --tunnel-dst)"},
		{EncryptOptions{SA: sp, Mode: esp.Tunnel, TunnelSrc: v4a, TunnelDst: v6a}, "tunnel addresses 10.1.0.1 and 2001:db8::1 are of different IP versions"},
		{EncryptOptions{SA: sp, Mode: esp.Transport, TunnelDst: v6a}, "tunnel addresses (--tunnel-src, --tunnel-dst) are for tunnel mode only"},
		{EncryptOptions{SA: sp}, "mode mode(0): want tunnel or transport"},
		{EncryptOptions{SA: sp, Mode: esp.Transport, UDP: &esp.UDPPorts{Src: 0, Dst: 4500}}, "UDP encapsulation ports must not be 0"},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		if err == nil || err.Error() != tt.want {
			t.Errorf("Validate(%+v) = %v, want %q", tt.opts, err, tt.want)
		}
	}
	ok := EncryptOptions{SA: sp, Mode: esp.Tunnel, TunnelSrc: v4a, TunnelDst: v4b}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

func TestDuplicateSPI(t *testing.T) {
	sp := mustSpec(t, transform{enc: "aes128gcm16"}.spec(0x1234, ""))
	_, err := Decrypt(bytes.NewReader(writePcap(t, LinkRaw, nil)), &bytes.Buffer{}, &DecryptOptions{SAs: []*saspec.Spec{sp, sp}})
	if err == nil || err.Error() != "two SAs with spi 0x1234" {
		t.Errorf("Decrypt: %v", err)
	}
}
