package pcaptool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/saspec"
)

// modeCase is an encapsulation choice.
type modeCase struct {
	name     string
	mode     esp.Mode
	src, dst netip.Addr
}

var modeCases = []modeCase{
	{"tunnel4", esp.Tunnel, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")},
	{"tunnel6", esp.Tunnel, netip.MustParseAddr("2001:db8:f::1"), netip.MustParseAddr("2001:db8:f::2")},
	{"transport", esp.Transport, netip.Addr{}, netip.Addr{}},
}

func encrypt(t testing.TB, in []byte, opts *EncryptOptions) ([]byte, *EncryptStats, string) {
	t.Helper()
	var out, log bytes.Buffer
	opts.Log = &log
	st, err := Encrypt(bytes.NewReader(in), &out, opts)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.Bytes(), st, log.String()
}

func decrypt(t testing.TB, in []byte, sas ...*saspec.Spec) ([]byte, *DecryptStats, string) {
	t.Helper()
	var out, log bytes.Buffer
	st, err := Decrypt(bytes.NewReader(in), &out, &DecryptOptions{SAs: sas, Log: &log})
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	return out.Bytes(), st, log.String()
}

func sameRecords(t testing.TB, got, want []record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].data, want[i].data) {
			t.Errorf("record %d differs:\n got %x\nwant %x", i+1, got[i].data, want[i].data)
		}
		if !got[i].ci.Timestamp.Equal(want[i].ci.Timestamp) {
			t.Errorf("record %d: timestamp %v, want %v", i+1, got[i].ci.Timestamp, want[i].ci.Timestamp)
		}
	}
}

// TestRoundTrip encrypts a capture of IPv4 and IPv6 packets (one with
// extension headers) and decrypts it again, for every transform, tunnel
// mode over IPv4 and IPv6 and transport mode, with and without UDP
// encapsulation and ESN, and checks that every packet comes back byte for
// byte.
func TestRoundTrip(t *testing.T) {
	pkts := samplePackets()
	recs := records(LinkEthernet, pkts)
	recs = append(recs[:2], append([]record{{gopacket.CaptureInfo{Timestamp: recs[1].ci.Timestamp, CaptureLength: 42, Length: 42}, arpFrame()}}, recs[2:]...)...)
	in := writePcap(t, LinkEthernet, recs)
	for _, tr := range allTransforms() {
		for _, mc := range modeCases {
			for _, udp := range []bool{false, true} {
				for _, esn := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/udp=%v/esn=%v", tr, mc.name, udp, esn)
					t.Run(name, func(t *testing.T) {
						extra := ""
						first := uint64(1)
						if esn {
							// Cross the 32-bit boundary on the way.
							extra, first = ",esn,seq=4294967294", 4294967294
						}
						sp := mustSpec(t, tr.spec(0xc0de, extra))
						opts := &EncryptOptions{SA: sp, Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst}
						if udp {
							opts.UDP = &esp.UDPPorts{Src: 4500, Dst: 4500}
						}
						enc, st, log := encrypt(t, in, opts)
						if st.Encrypted != len(pkts) || st.Failed != 0 || st.Passed != 1 || log != "" {
							t.Fatalf("encrypt: %s; log:\n%s", st, log)
						}
						link, erecs := readPcap(t, enc)
						if link != LinkEthernet {
							t.Fatalf("link type %v", link)
						}
						checkProtected(t, erecs, recs, opts, first)

						dec, dst, log := decrypt(t, enc, mustSpec(t, tr.spec(0xc0de, extra)))
						if dst.Decrypted != len(pkts) || dst.Rejected != 0 || dst.Passed != 1 || log != "" {
							t.Fatalf("decrypt: %s; log:\n%s", dst, log)
						}
						_, drecs := readPcap(t, dec)
						sameRecords(t, drecs, recs)
					})
				}
			}
		}
	}
}

// checkProtected checks the outer headers of encrypted records.
func checkProtected(t *testing.T, got, orig []record, opts *EncryptOptions, firstSeq uint64) {
	t.Helper()
	seq := firstSeq
	for i, r := range got {
		if bytes.Equal(orig[i].data, arpFrame()) {
			if !bytes.Equal(r.data, orig[i].data) {
				t.Errorf("record %d: non-IP record changed", i+1)
			}
			continue
		}
		if !bytes.Equal(r.data[:12], macHdr) {
			t.Errorf("record %d: MAC header changed", i+1)
		}
		ip := r.data[14:]
		et := binary.BigEndian.Uint16(r.data[12:])
		var l packet.Layout
		if err := packet.ParseLayout(ip, &l); err != nil || l.End != len(ip) {
			t.Fatalf("record %d: outer packet: %v (end %d of %d)", i+1, err, l.End, len(ip))
		}
		if (et == 0x0800) != (l.Version == 4) {
			t.Errorf("record %d: EtherType %#x for IPv%d", i+1, et, l.Version)
		}
		if l.Version == 4 && !packet.IPv4(ip).ChecksumValid() {
			t.Errorf("record %d: bad IPv4 header checksum", i+1)
		}
		if opts.Mode == esp.Tunnel {
			if l.Version == 4 {
				h := packet.IPv4(ip)
				if h.TTL() != 64 || h.DontFragment() || h.Src() != opts.TunnelSrc || h.Dst() != opts.TunnelDst || h.HeaderLen() != 20 {
					t.Errorf("record %d: outer IPv4 header % x", i+1, ip[:20])
				}
			} else {
				h := packet.IPv6(ip)
				if h.HopLimit() != 64 || h.Src() != opts.TunnelSrc || h.Dst() != opts.TunnelDst || l.ProtoOff != 40 {
					t.Errorf("record %d: outer IPv6 header % x", i+1, ip[:40])
				}
			}
		}
		espOff := l.ProtoOff
		if opts.UDP != nil {
			if l.Proto != packet.ProtoUDP {
				t.Fatalf("record %d: protocol %d, want UDP", i+1, l.Proto)
			}
			u := ip[l.ProtoOff:]
			if binary.BigEndian.Uint16(u[0:]) != opts.UDP.Src || binary.BigEndian.Uint16(u[2:]) != opts.UDP.Dst || int(binary.BigEndian.Uint16(u[4:])) != len(u) {
				t.Errorf("record %d: UDP header % x", i+1, u[:8])
			}
			c := binary.BigEndian.Uint16(u[6:])
			if l.Version == 4 && c != 0 {
				t.Errorf("record %d: UDP checksum %#x over IPv4, want 0", i+1, c)
			}
			if l.Version == 6 {
				var src, dst netip.Addr
				src, dst = packet.IPv6(ip).Src(), packet.IPv6(ip).Dst()
				if packet.Checksum(u, uint32(packet.PseudoHeaderSum(packet.ProtoUDP, src, dst, uint32(len(u))))) != 0xffff || c == 0 {
					t.Errorf("record %d: bad UDP checksum over IPv6", i+1)
				}
			}
			espOff += 8
		} else if l.Proto != packet.ProtoESP {
			t.Fatalf("record %d: protocol %d, want ESP", i+1, l.Proto)
		}
		if spi := binary.BigEndian.Uint32(ip[espOff:]); spi != opts.SA.SPI {
			t.Errorf("record %d: spi %#x", i+1, spi)
		}
		if s := binary.BigEndian.Uint32(ip[espOff+4:]); s != uint32(seq) {
			t.Errorf("record %d: seq %d, want %d", i+1, s, uint32(seq))
		}
		seq++
	}
}

// TestLinkTypes round-trips a capture through each link type read, and a
// pcapng input.
func TestLinkTypes(t *testing.T) {
	v4 := [][]byte{udp4(v4a, v4b, 1, 2, []byte("abc")), icmp4(v4a, v4b, 10)}
	v6 := [][]byte{udp6(v6a, v6b, 1, 2, []byte("abc")), udp6(v6a, v6b, 3, 4, []byte("defg"), v6Ext()...)}
	linkTypeRoundTrips(t, v4, v6, transform{enc: "aes256gcm16"}.spec(0x1000, ""),
		func(st *DecryptStats) int { return st.Decrypted })
}

// linkTypeRoundTrips encrypts the IPv4 and IPv6 packets with spec in
// every mode and link type and decrypts them again: the link type stays,
// the packets come back, and opened(the decryption's stats) counts them
// all.
func linkTypeRoundTrips(t *testing.T, v4, v6 [][]byte, spec string, opened func(*DecryptStats) int) {
	t.Helper()
	both := append(append([][]byte(nil), v4...), v6...)
	for _, tt := range []struct {
		link layers.LinkType
		pkts [][]byte
	}{{LinkEthernet, both}, {LinkRaw, both}, {LinkSLL, both}, {LinkIPv4, v4}, {LinkIPv6, v6}} {
		for _, mc := range modeCases {
			if mc.mode == esp.Tunnel && ((tt.link == LinkIPv4 && mc.src.Is6()) || (tt.link == LinkIPv6 && mc.src.Is4())) {
				continue // see TestLinkTypeSwitch
			}
			t.Run(fmt.Sprintf("%s/%s", linkName(tt.link), mc.name), func(t *testing.T) {
				recs := records(tt.link, tt.pkts)
				enc, st, log := encrypt(t, writePcap(t, tt.link, recs), &EncryptOptions{SA: mustSpec(t, spec), Mode: mc.mode, TunnelSrc: mc.src, TunnelDst: mc.dst})
				if st.Encrypted != len(tt.pkts) {
					t.Fatalf("encrypt: %s\n%s", st, log)
				}
				if link, _ := readPcap(t, enc); link != tt.link {
					t.Fatalf("encrypted link type %v, want %v", link, tt.link)
				}
				dec, dst, log := decrypt(t, enc, mustSpec(t, spec))
				if opened(dst) != len(tt.pkts) {
					t.Fatalf("decrypt: %s\n%s", dst, log)
				}
				dlink, drecs := readPcap(t, dec)
				if dlink != tt.link {
					t.Errorf("decrypted link type %v, want %v", dlink, tt.link)
				}
				sameRecords(t, drecs, recs)
			})
		}
	}
}

// TestLinkTypeSwitch checks that a capture with link type IPv4 (228)
// becomes raw IP (101) when IPv6 packets must go into it, and that this
// needs a seekable output.
func TestLinkTypeSwitch(t *testing.T) {
	recs := records(LinkIPv4, [][]byte{udp4(v4a, v4b, 1, 2, []byte("abc")), icmp4(v4a, v4b, 10)})
	in := writePcap(t, LinkIPv4, recs)
	sp := transform{enc: "aes128gcm16"}.spec(0x1000, "")
	opts := func() *EncryptOptions {
		return &EncryptOptions{SA: mustSpec(t, sp), Mode: esp.Tunnel,
			TunnelSrc: netip.MustParseAddr("2001:db8::a"), TunnelDst: netip.MustParseAddr("2001:db8::b")}
	}

	// Not seekable: an error, not a wrong file.
	var buf bytes.Buffer
	if _, err := Encrypt(bytes.NewReader(in), &buf, opts()); err == nil || !strings.Contains(err.Error(), "cannot seek") {
		t.Fatalf("Encrypt to a buffer: %v", err)
	}

	f, err := os.Create(t.TempDir() + "/out.pcap")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	o := opts()
	o.Log = &log
	st, err := Encrypt(bytes.NewReader(in), f, o)
	if err != nil || st.Encrypted != 2 {
		t.Fatalf("Encrypt: %v, %v", st, err)
	}
	f.Close()
	if !strings.Contains(log.String(), "output link type changed from IPv4 (228) to raw IP (101)") {
		t.Errorf("log: %q", log.String())
	}
	enc, _ := os.ReadFile(f.Name())
	link, erecs := readPcap(t, enc)
	if link != LinkRaw || len(erecs) != 2 || erecs[0].data[0]>>4 != 6 {
		t.Fatalf("link %v, %d records", link, len(erecs))
	}
	dec, dst, dlog := decrypt(t, enc, mustSpec(t, sp))
	if dst.Decrypted != 2 {
		t.Fatalf("%s\n%s", dst, dlog)
	}
	dlink, drecs := readPcap(t, dec)
	if dlink != LinkRaw {
		t.Errorf("decrypted link type %v", dlink)
	}
	sameRecords(t, drecs, recs)
}

// TestPcapng reads a pcapng capture.
func TestPcapng(t *testing.T) {
	recs := records(LinkEthernet, samplePackets())
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriter(&b, LinkEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WritePacket(r.ci, r.data); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	sp := transform{"aes128", "sha256"}.spec(0x4242, "")
	enc, st, log := encrypt(t, b.Bytes(), &EncryptOptions{SA: mustSpec(t, sp), Mode: esp.Transport, UDP: &esp.UDPPorts{Src: 4500, Dst: 4500}})
	if st.Encrypted != len(recs) {
		t.Fatalf("%s\n%s", st, log)
	}
	dec, dst, log := decrypt(t, enc, mustSpec(t, sp))
	if dst.Decrypted != len(recs) {
		t.Fatalf("%s\n%s", dst, log)
	}
	_, drecs := readPcap(t, dec)
	sameRecords(t, drecs, recs)
}

func TestUnsupportedLinkType(t *testing.T) {
	in := writePcap(t, layers.LinkTypeIEEE802_11, nil)
	_, err := Decrypt(bytes.NewReader(in), &bytes.Buffer{}, &DecryptOptions{})
	if err == nil || !strings.Contains(err.Error(), "link type") {
		t.Fatalf("Decrypt: %v", err)
	}
	// SLL2 (276) must not pass as link type 20 (276 mod 256).
	in = writePcap(t, LinkRaw, nil)
	binary.LittleEndian.PutUint32(in[20:], 276)
	_, err = Decrypt(bytes.NewReader(in), &bytes.Buffer{}, &DecryptOptions{})
	if err == nil || !strings.Contains(err.Error(), "link type 276 not supported") {
		t.Fatalf("Decrypt of SLL2: %v", err)
	}
	if _, err := Decrypt(strings.NewReader("not a capture file"), &bytes.Buffer{}, &DecryptOptions{}); err == nil {
		t.Fatal("Decrypt of garbage succeeded")
	}
	if _, err := Decrypt(strings.NewReader(""), &bytes.Buffer{}, &DecryptOptions{}); err == nil {
		t.Fatal("Decrypt of an empty file succeeded")
	}
}

// TestVLAN keeps 802.1Q tags and fixes the inner EtherType.
func TestVLAN(t *testing.T) {
	pkts := [][]byte{udp4(v4a, v4b, 1, 2, []byte("abc")), udp6(v6a, v6b, 1, 2, []byte("x"))}
	var recs []record
	for _, r := range records(LinkEthernet, pkts) {
		d := append(append(append([]byte(nil), r.data[:12]...), 0x81, 0x00, 0x00, 0x2a), r.data[12:]...)
		r.data, r.ci.CaptureLength, r.ci.Length = d, len(d), len(d)
		recs = append(recs, r)
	}
	in := writePcap(t, LinkEthernet, recs)
	sp := transform{enc: "chacha20poly1305"}.spec(0x777, "")
	enc, st, _ := encrypt(t, in, &EncryptOptions{SA: mustSpec(t, sp), Mode: esp.Tunnel, TunnelSrc: v6a, TunnelDst: v6b})
	if st.Encrypted != 2 {
		t.Fatal(st)
	}
	_, erecs := readPcap(t, enc)
	for _, r := range erecs {
		if !bytes.Equal(r.data[12:18], []byte{0x81, 0, 0, 0x2a, 0x86, 0xdd}) {
			t.Errorf("tags and EtherType % x", r.data[12:18])
		}
	}
	dec, _, _ := decrypt(t, enc, mustSpec(t, sp))
	_, drecs := readPcap(t, dec)
	sameRecords(t, drecs, recs)
}
