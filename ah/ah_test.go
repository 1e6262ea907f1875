package ah

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/xform"
)

// sealPkt protects p in mode (tunnel: behind outer) and returns a copy of
// the AH packet.
func sealPkt(t testing.TB, sa *SA, mode Mode, p, outer []byte) []byte {
	t.Helper()
	buf, off, end := bufWith(p)
	var start, pend int
	var err error
	if mode == Tunnel {
		start, pend, err = sa.EncapTunnel(buf, off, end, outer)
	} else {
		start, pend, err = sa.EncapTransport(buf, off, end)
	}
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return append([]byte(nil), buf[start:pend]...)
}

// openPkt decapsulates the AH packet p in mode and returns a copy of the
// result.
func openPkt(sa *SA, mode Mode, p []byte) ([]byte, error) {
	buf, off, end := bufWith(p)
	var start, pend int
	var err error
	if mode == Tunnel {
		start, pend, err = sa.DecapTunnel(buf, off, end)
	} else {
		start, pend, err = sa.DecapTransport(buf, off, end)
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), buf[start:pend]...), nil
}

func TestHeaderLen(t *testing.T) {
	for _, tc := range []struct {
		alg         string
		icv, v4, v6 int
	}{
		{"md5", 12, 24, 24},
		{"sha1", 12, 24, 24},
		{"sha256", 16, 28, 32},
		{"sha384", 24, 36, 40},
		{"sha512", 32, 44, 48},
		{"aes128gmac", 24, 36, 40}, // 8-byte IV and 16-byte tag; IPv6 pads 4 (RFC 4543 erratum 3643)
		{"aes256gmac", 24, 36, 40},
	} {
		sa, _ := newPair(t, tc.alg, false, 0)
		if sa.ICVLen() != tc.icv || sa.HeaderLen(4) != tc.v4 || sa.HeaderLen(6) != tc.v6 {
			t.Errorf("%s: ICV %d, header %d/%d; want %d, %d/%d", tc.alg,
				sa.ICVLen(), sa.HeaderLen(4), sa.HeaderLen(6), tc.icv, tc.v4, tc.v6)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, alg := range algs {
		for _, v := range variants {
			for _, mode := range []Mode{Transport, Tunnel} {
				for _, esn := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/%s/%v/esn=%v", alg, v.name, mode, esn), func(t *testing.T) {
						out, in := newPair(t, alg, esn, 0)
						for _, n := range []int{64, 200, 1400} {
							if v.name == "v6ext" && n < 120 {
								n = 120
							}
							p := v.inner(n)
							sealed := sealPkt(t, out, mode, p, v.outer)
							checkAH(t, out, sealed, mode, p, v.outer)
							got, err := openPkt(in, mode, traverse(sealed))
							if err != nil {
								t.Fatalf("n=%d: open: %v", n, err)
							}
							want := p
							if mode == Transport {
								want = traverse(p)
							}
							if !bytes.Equal(got, want) {
								t.Fatalf("n=%d: got\n%x\nwant\n%x", n, got, want)
							}
						}
					})
				}
			}
		}
	}
}

// checkAH checks the layout of the AH packet sealed from p.
func checkAH(t *testing.T, sa *SA, sealed []byte, mode Mode, p, outer []byte) {
	t.Helper()
	ahOff, spi, err := Locate(sealed)
	if err != nil {
		t.Fatalf("locate: %v", err)
	}
	v := int(sealed[0] >> 4)
	ahLen := sa.HeaderLen(v)
	if spi != sa.SPI() || int(sealed[ahOff+1]) != ahLen/4-2 || sealed[ahOff+2] != 0 || sealed[ahOff+3] != 0 {
		t.Fatalf("AH header %x", sealed[ahOff:ahOff+12])
	}
	if got := binary.BigEndian.Uint32(sealed[ahOff+8:]); got != uint32(sa.LastSeq()) {
		t.Fatalf("sequence number %d, want %d", got, uint32(sa.LastSeq()))
	}
	if ahLen%(2*v-4) != 0 || !bytes.Equal(sealed[ahOff+HeaderLen+sa.ICVLen():ahOff+ahLen], make([]byte, ahLen-HeaderLen-sa.ICVLen())) {
		t.Fatalf("AH length %d or padding wrong", ahLen)
	}
	switch mode {
	case Tunnel:
		if len(sealed) != len(outer)+ahLen+len(p) || !bytes.Equal(sealed[len(outer)+ahLen:], p) {
			t.Fatal("tunnel: inner packet not intact after AH")
		}
		want := uint8(packet.ProtoIPv4)
		if p[0]>>4 == 6 {
			want = packet.ProtoIPv6
		}
		if sealed[ahOff] != want {
			t.Fatalf("tunnel: AH next header %d", sealed[ahOff])
		}
	case Transport:
		if len(sealed) != len(p)+ahLen || !bytes.Equal(sealed[ahOff+ahLen:], p[ahOff:]) {
			t.Fatal("transport: payload not intact after AH")
		}
	}
	if v == 4 {
		ip := packet.IPv4(sealed)
		if int(ip.TotalLength()) != len(sealed) || !ip.ChecksumValid() || ip.Protocol() != packet.ProtoAH {
			t.Fatalf("IPv4 header %x", sealed[:20])
		}
	} else if int(packet.IPv6(sealed).PayloadLength()) != len(sealed)-40 {
		t.Fatalf("IPv6 payload length %d for %d bytes", packet.IPv6(sealed).PayloadLength(), len(sealed))
	}
}

// TestIPv4Options checks the IPv4 option classes of RFC 4302 Appendix A:
// immutable options and unknown options in the ICV or zeroed.
func TestIPv4Options(t *testing.T) {
	out, in := newPair(t, "sha256", false, -1)
	for _, tc := range []struct {
		name    string
		opts    []byte
		offset  int  // byte of the options to change
		mutable bool // whether the change still verifies
	}{
		{"router alert data", optRouterAlert, 2, false},
		{"security data", optSecurity, 5, false},
		{"record route pointer", optRecordRoute, 2, true},
		{"record route address", optRecordRoute, 6, true},
		{"timestamp data", optTimestamp, 7, true},
		{"unknown option data", []byte{0x9e, 4, 1, 2}, 3, true},
		{"nop", concat([]byte{1}, optRouterAlert), 0, false},
		{"padding after end of options", []byte{0, 0, 0, 0}, 2, false},
	} {
		p := ipv4(src4, dst4, tc.opts, packet.ProtoUDP, udp(40))
		sealed := sealPkt(t, out, Transport, p, nil)
		sealed[20+tc.offset] ^= 0x01
		_, err := openPkt(in, Transport, sealed)
		if tc.mutable && err != nil {
			t.Errorf("%s: mutable change rejected: %v", tc.name, err)
		}
		if !tc.mutable && !errors.Is(err, ErrAuth) {
			t.Errorf("%s: immutable change: got %v, want ErrAuth", tc.name, err)
		}
	}
}

// TestIPv4SourceRoute checks that the sender computes the ICV with the
// destination the receiver will see at the end of a loose source route.
func TestIPv4SourceRoute(t *testing.T) {
	out, in := newPair(t, "sha256", false, 0)
	hop := []byte{10, 9, 9, 9}
	lsrr := concat([]byte{0x83, 11, 4}, hop, dst4, []byte{1}) // route: hop, then dst4
	p := ipv4(src4, []byte{10, 1, 1, 1}, lsrr, packet.ProtoUDP, udp(40))
	sealed := sealPkt(t, out, Transport, p, nil)
	// Deliver: each hop puts the next route address in the destination and
	// records its own address in its place.
	for ptr := 4; ptr < 11; ptr += 4 {
		o := 20
		next := append([]byte(nil), sealed[o+ptr-1:o+ptr+3]...)
		copy(sealed[o+ptr-1:], []byte{172, 16, 0, byte(ptr)}) // recorded address
		copy(sealed[16:20], next)
		sealed[o+2] = byte(ptr + 4)
		sealed[8]--
		packet.IPv4(sealed).ComputeChecksum()
	}
	if !bytes.Equal(sealed[16:20], dst4) {
		t.Fatalf("route simulation ended at %v", sealed[16:20])
	}
	if _, err := openPkt(in, Transport, sealed); err != nil {
		t.Fatalf("after the source route: %v", err)
	}
}

// TestRoutingHeader checks the IPv6 routing header: predicted by the
// sender for types 0 and 2 (also when part of the route is done), taken as
// it is by the receiver, refused for other types with segments left.
func TestRoutingHeader(t *testing.T) {
	out, in := newPair(t, "sha512", false, -1)
	t.Run("partly travelled", func(t *testing.T) {
		// Sent to X, then hop6a, hop6b, dst6; X has already swapped itself
		// into the first slot and hop6a into the destination.
		r := routing0(addr6(0x99), hop6b, dst6)
		r.body[2] = 2
		p := ipv6(src6, hop6a, []ext{r}, packet.ProtoUDP, udp(30))
		sealed := sealPkt(t, out, Transport, p, nil)
		if _, err := openPkt(in, Transport, sealed); !errors.Is(err, ErrAuth) {
			t.Fatalf("before delivery: got %v, want ErrAuth", err)
		}
		got, err := openPkt(in, Transport, traverse(sealed))
		if err != nil {
			t.Fatalf("after delivery: %v", err)
		}
		if !bytes.Equal(got, traverse(p)) {
			t.Fatal("decapsulated packet differs")
		}
	})
	t.Run("type 2", func(t *testing.T) {
		r := ext{packet.ProtoRouting, concat([]byte{0, 2, 1, 0, 0, 0, 0}, dst6)}
		p := ipv6(src6, hop6a, []ext{r}, packet.ProtoUDP, udp(30))
		sealed := sealPkt(t, out, Transport, p, nil)
		// Type 2 is delivered like type 0 with one address.
		sealed[40+2] = 0
		arrived := traverse(sealed)
		arrived[40+2] = 2
		if _, err := openPkt(in, Transport, arrived); err != nil {
			t.Fatalf("after delivery: %v", err)
		}
	})
	t.Run("segment routing", func(t *testing.T) {
		r := ext{packet.ProtoRouting, concat([]byte{0, 4, 1, 0, 0, 0, 0}, dst6)}
		p := ipv6(src6, hop6a, []ext{r}, packet.ProtoUDP, udp(30))
		buf, off, end := bufWith(p)
		if _, _, err := out.EncapTransport(buf, off, end); !errors.Is(err, ErrNotSupported) {
			t.Fatalf("segments left on type 4: got %v, want ErrNotSupported", err)
		}
		p[40+3] = 0 // no segments left: nothing to predict
		if _, err := openPkt(in, Transport, sealPkt(t, out, Transport, p, nil)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMutableFields flips, one at a time, every byte of sealed packets of
// every shape: a change to a mutable field must still verify, a change to
// anything else must fail and leave the packet and the window as they were.
func TestMutableFields(t *testing.T) {
	for _, alg := range []string{"sha256", "aes128gmac"} {
		for _, v := range variants {
			for _, mode := range []Mode{Transport, Tunnel} {
				t.Run(fmt.Sprintf("%s/%s/%v", alg, v.name, mode), func(t *testing.T) {
					out, in := newPair(t, alg, false, -1)
					sealed := traverse(sealPkt(t, out, mode, v.inner(150), v.outer))
					checkFlips(t, in, sealed)
				})
			}
		}
	}
}

// checkFlips applies every flip of flipPlan(p) to p and opens it with in,
// whose replay window must be disabled.
func checkFlips(t *testing.T, in *SA, p []byte) {
	t.Helper()
	if _, err := in.Open(bufWith(p)); err != nil {
		t.Fatalf("unchanged packet: %v", err)
	}
	for _, f := range flipPlan(p) {
		q := append([]byte(nil), p...)
		q[f.pos] ^= f.xor
		buf, off, end := bufWith(q)
		_, err := in.Open(buf, off, end)
		switch {
		case f.want == wantOK && err != nil:
			t.Errorf("byte %d ^ %#x (mutable): %v", f.pos, f.xor, err)
		case f.want == wantFail && err == nil:
			t.Errorf("byte %d ^ %#x (immutable): accepted", f.pos, f.xor)
		}
		if !bytes.Equal(buf[off:end], q) {
			t.Fatalf("byte %d ^ %#x: Open changed the packet", f.pos, f.xor)
		}
	}
}

type outcome int

const (
	wantFail outcome = iota
	wantOK
	wantAny
)

type flip struct {
	pos  int
	xor  byte
	want outcome
}

// flipPlan lists a flip of each byte of the AH packet p and its expected
// outcome, from RFC 4302 section 3.3.3.1 and Appendix A applied to the
// option and extension header types the tests use.
func flipPlan(p []byte) []flip {
	want := make([]outcome, len(p))
	xor := bytes.Repeat([]byte{0xff}, len(p))
	if p[0]>>4 == 4 {
		hl := int(p[0]&0xf) * 4
		want[1], want[8], want[10], want[11] = wantOK, wantOK, wantOK, wantOK // TOS, TTL, checksum
		want[6], xor[6] = wantOK, 0x40                                        // DF
		for o := 20; o < hl; {
			switch typ := p[o]; typ {
			case 0: // End of Options List: the rest is padding, included
				o = hl
			case 1:
				o++
			default:
				l := int(p[o+1])
				if typ == 0x07 || typ == 0x44 || typ == 0x83 {
					want[o], want[o+1] = wantAny, wantAny // the option as a whole is zeroed
					for i := o + 2; i < o+l; i++ {
						want[i] = wantOK
					}
				}
				o += l
			}
		}
		return plan(want, xor)
	}
	want[1], want[2], want[3], want[7] = wantOK, wantOK, wantOK, wantOK // traffic class, flow label, hop limit
	want[0], xor[0] = wantOK, 0x0f
	nh, off := p[6], 40
	for nh == packet.ProtoHopByHop || nh == packet.ProtoDestOpts || nh == packet.ProtoRouting {
		l := (int(p[off+1]) + 1) * 8
		if nh != packet.ProtoRouting {
			for o := off + 2; o < off+l; {
				if p[o] == 0 {
					o++
					continue
				}
				n := int(p[o+1])
				if p[o]&0x20 != 0 {
					for i := o + 2; i < o+2+n; i++ {
						want[i] = wantOK
					}
				}
				o += 2 + n
			}
		}
		nh, off = p[off], off+l
	}
	return plan(want, xor)
}

func plan(want []outcome, xor []byte) []flip {
	f := make([]flip, len(want))
	for i := range want {
		f[i] = flip{i, xor[i], want[i]}
	}
	return f
}

// TestRejections covers every rejection path of Open with its typed error,
// and checks that a rejected packet changes neither itself nor the window.
func TestRejections(t *testing.T) {
	for _, alg := range []string{"sha256", "aes128gmac"} {
		for _, v := range []variant{variants[0], variants[3]} {
			t.Run(alg+"/"+v.name, func(t *testing.T) {
				testRejections(t, alg, v)
			})
		}
	}
}

func testRejections(t *testing.T, alg string, v variant) {
	out, in := newPair(t, alg, false, 64)
	other, _ := newPair(t, alg, false, 64)
	seal := func() []byte { return traverse(sealPkt(t, out, Transport, v.inner(150), nil)) }
	open := func(p []byte) error {
		buf, off, end := bufWith(p)
		_, err := in.Open(buf, off, end)
		if err != nil && !bytes.Equal(buf[off:end], p) {
			t.Fatalf("rejected packet was changed")
		}
		return err
	}
	good := seal()
	ahOff, _, err := Locate(good)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(p []byte)) []byte {
		p := append([]byte(nil), good...)
		f(p)
		return p
	}
	setLen := func(p []byte, n int) []byte {
		p = append([]byte(nil), p[:n]...)
		if p[0]>>4 == 4 {
			binary.BigEndian.PutUint16(p[2:4], uint16(n))
			packet.IPv4(p).ComputeChecksum()
		} else {
			binary.BigEndian.PutUint16(p[4:6], uint16(n-40))
		}
		return p
	}
	wrongKey := traverse(sealPkt(t, other, Transport, v.inner(150), nil))
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"one byte", good[:1], ErrTruncated},
		{"IP header cut", good[:ahOff-1], ErrTruncated},
		{"length beyond the data", good[:len(good)-1], ErrTruncated},
		{"AH header cut", setLen(good, ahOff+8), ErrTruncated},
		{"ICV cut", setLen(good, ahOff+HeaderLen+4), ErrTruncated},
		{"bad version", mod(func(p []byte) { p[0] = 0x50 | p[0]&0xf }), ErrBadHeader},
		{"AH payload length +1", mod(func(p []byte) { p[ahOff+1]++ }), ErrBadLength},
		{"AH payload length -1", mod(func(p []byte) { p[ahOff+1]-- }), ErrBadLength},
		{"AH payload length 0", mod(func(p []byte) { p[ahOff+1] = 0 }), ErrBadLength},
		{"wrong SPI", mod(func(p []byte) { p[ahOff+7] ^= 1 }), ErrSPI},
		{"ICV", mod(func(p []byte) { p[ahOff+HeaderLen+in.ICVLen()-1] ^= 1 }), ErrAuth},
		{"sequence number", mod(func(p []byte) { p[ahOff+11] ^= 2 }), ErrAuth},
		{"next header", mod(func(p []byte) { p[ahOff] ^= 2 }), ErrAuth},
		{"payload", mod(func(p []byte) { p[len(p)-1] ^= 1 }), ErrAuth},
		{"source address", mod(func(p []byte) { p[12] ^= 1 }), ErrAuth},
		{"other key", wrongKey, ErrAuth},
		{"not AH", mod(func(p []byte) {
			if p[0]>>4 == 4 {
				p[9] = packet.ProtoESP
			} else {
				p[40+16+8] = packet.ProtoESP // the routing header's next header
			}
		}), ErrNextHeader},
	} {
		err := open(tc.pkt)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if v.name == "v4" {
		frag := mod(func(p []byte) { p[6] |= 0x20; packet.IPv4(p).ComputeChecksum() })
		if err := open(frag); !errors.Is(err, ErrFragment) {
			t.Errorf("fragment: got %v", err)
		}
		badOpt := ipv4(src4, dst4, []byte{0x94, 9, 0, 0}, packet.ProtoAH, make([]byte, 40))
		if err := open(badOpt); !errors.Is(err, ErrBadHeader) {
			t.Errorf("option overrunning the header: got %v", err)
		}
	} else {
		badOpt := mod(func(p []byte) { p[40+3] = 200 }) // first option's length overruns the header
		if err := open(badOpt); !errors.Is(err, ErrBadHeader) {
			t.Errorf("option overrunning its header: got %v", err)
		}
		frag := ipv6(src6, dst6, []ext{{packet.ProtoFragment, []byte{0, 0, 9, 0, 0, 0, 1}}}, packet.ProtoAH, make([]byte, 40))
		if err := open(frag); !errors.Is(err, ErrFragment) {
			t.Errorf("fragment: got %v", err)
		}
	}
	if h := in.Window().Highest(); h != 0 {
		t.Fatalf("rejected packets moved the window to %d", h)
	}
	if err := open(good); err != nil {
		t.Fatalf("good packet after the rejections: %v", err)
	}
	if err := open(good); !errors.Is(err, ErrReplay) {
		t.Errorf("replay: got %v", err)
	}
	var last []byte
	for i := 0; i < 70; i++ {
		last = seal()
	}
	if err := open(last); err != nil {
		t.Fatal(err)
	}
	if err := open(good); !errors.Is(err, ErrTooOld) {
		t.Errorf("too old: got %v", err)
	}
	zero := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(zero[ahOff+8:], 0)
	if err := open(zero); !errors.Is(err, ErrSeqZero) {
		t.Errorf("sequence number 0: got %v", err)
	}
}

func TestSeqOverflow(t *testing.T) {
	out, _ := newPair(t, "sha256", false, 0)
	out.seq.Store(1<<32 - 2)
	p := variants[0].inner(64)
	sealPkt(t, out, Transport, p, nil) // the last sequence number
	for i := 0; i < 3; i++ {
		buf, off, end := bufWith(p)
		if _, _, err := out.EncapTransport(buf, off, end); !errors.Is(err, ErrSeqOverflow) {
			t.Fatalf("after 2^32-1: got %v, want ErrSeqOverflow", err)
		}
		if !bytes.Equal(buf[off:end], p) {
			t.Fatal("refused packet was changed")
		}
	}
	pkts := []Packet{{}}
	pkts[0].Buf, pkts[0].Off, pkts[0].End = bufWith(p)
	out.SealBatch(pkts, Transport, nil)
	if !errors.Is(pkts[0].Err, ErrSeqOverflow) {
		t.Fatalf("batch after 2^32-1: %v", pkts[0].Err)
	}
	esnOut, _ := newPair(t, "sha256", true, 0)
	esnOut.seq.Store(1<<32 - 1)
	sealPkt(t, esnOut, Transport, p, nil) // ESN goes on past 2^32
}

// TestESNHighBits checks that the high 32 bits of an extended sequence
// number enter the ICV though they are not sent.
func TestESNHighBits(t *testing.T) {
	for _, alg := range []string{"sha256", "aes128gmac"} {
		t.Run(alg, func(t *testing.T) {
			out, in := newPair(t, alg, true, 0)
			out.seq.Store(1<<32 + 4)
			sealed := sealPkt(t, out, Tunnel, variants[2].inner(100), variants[2].outer)
			if _, err := openPkt(in, Tunnel, sealed); !errors.Is(err, ErrAuth) {
				t.Fatalf("fresh receiver (high bits 0): got %v, want ErrAuth", err)
			}
			if err := in.Window().Accept(1<<32 + 1); err != nil {
				t.Fatal(err)
			}
			buf, off, end := bufWith(sealed)
			o, err := in.Open(buf, off, end)
			if err != nil || o.Seq != 1<<32+5 {
				t.Fatalf("got seq %d err %v, want %d", o.Seq, err, uint64(1<<32+5))
			}
		})
	}
}

func TestSealPrimitive(t *testing.T) {
	out, in := newPair(t, "sha384", false, 0)
	// An IPv6 packet laid out by hand with room for AH after the header.
	ahLen := out.HeaderLen(6)
	p := ipv6(src6, dst6, nil, packet.ProtoAH, make([]byte, ahLen+30))
	copy(p[40+ahLen:], udp(30))
	buf, off, end := bufWith(p)
	seq, err := out.Seal(buf, off, off+40, end, packet.ProtoUDP)
	if err != nil || seq != 1 {
		t.Fatalf("seal: seq %d err %v", seq, err)
	}
	o, err := in.Open(buf, off, end)
	if err != nil {
		t.Fatal(err)
	}
	if o.AHOff != off+40 || o.NHOff != off+6 || o.PayloadOff != off+40+ahLen || o.End != end || o.NextHeader != packet.ProtoUDP || o.Seq != 1 {
		t.Fatalf("opened %+v", o)
	}
	for _, tc := range []struct {
		name       string
		ahOff, end int
		want       error
	}{
		{"AH not named", off + 40 + 8, end, ErrBadHeader},
		{"AH past the end", end - 8, end, ErrBadLength},
		{"length field beyond the end", off + 40, end - 1, ErrTruncated},
	} {
		b2, off2, _ := bufWith(p)
		if _, err := out.Seal(b2, off2, tc.ahOff-off+off2, tc.end-off+off2, packet.ProtoUDP); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestTunnelMixedFamilies(t *testing.T) {
	out, in := newPair(t, "aes256gmac", true, 0)
	for _, tc := range []struct{ inner, outer variant }{
		{variants[3], variants[0]}, // IPv6 with extension headers in IPv4
		{variants[1], variants[2]}, // IPv4 with options in IPv6
	} {
		p := tc.inner.inner(300)
		sealed := sealPkt(t, out, Tunnel, p, tc.outer.outer)
		got, err := openPkt(in, Tunnel, sealed)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%s in %s: err %v", tc.inner.name, tc.outer.name, err)
		}
	}
}

func TestTunnelIdentification(t *testing.T) {
	out, _ := newPair(t, "sha256", false, 0)
	outer := ipv4(tsrc, tdst, nil, 0, nil)
	binary.BigEndian.PutUint16(outer[4:6], 0)
	for i := 1; i <= 3; i++ {
		sealed := sealPkt(t, out, Tunnel, variants[0].inner(64), outer)
		if id := binary.BigEndian.Uint16(sealed[4:6]); id != uint16(i) {
			t.Fatalf("packet %d: identification %d", i, id)
		}
	}
}

func TestDecapErrors(t *testing.T) {
	out, in := newPair(t, "sha256", false, 0)
	// A transport-mode packet opened as tunnel: UDP is no inner packet.
	sealed := sealPkt(t, out, Transport, variants[0].inner(64), nil)
	if _, err := openPkt(in, Tunnel, sealed); !errors.Is(err, ErrNextHeader) {
		t.Errorf("transport packet as tunnel: got %v", err)
	}
	// An inner packet whose length field overruns what AH protected.
	inner := variants[0].inner(64)
	binary.BigEndian.PutUint16(inner[2:4], 200)
	sealed = sealPkt(t, out, Tunnel, inner, variants[0].outer)
	if _, err := openPkt(in, Tunnel, sealed); !errors.Is(err, ErrBadInner) {
		t.Errorf("inner length overrun: got %v", err)
	}
	buf, off, end := bufWith([]byte{0x70, 1, 2})
	if _, _, err := out.EncapTunnel(buf, off, end, variants[0].outer); !errors.Is(err, ErrBadInner) {
		t.Errorf("inner version 7: got %v", err)
	}
	for _, outer := range [][]byte{
		nil,
		variants[0].outer[:19],
		concat(variants[0].outer, []byte{0, 0, 0, 0}), // IHL says 20
		ipv6(tsrc6, tdst6, []ext{{packet.ProtoFragment, make([]byte, 7)}}, 0, nil),
	} {
		buf, off, end := bufWith(variants[0].inner(64))
		if _, _, err := out.EncapTunnel(buf, off, end, outer); err == nil {
			t.Errorf("outer template %x accepted", outer)
		}
	}
	// Transport mode refuses fragments and malformed packets.
	frag := variants[0].inner(64)
	frag[6] = 0x20 // MF
	for _, p := range [][]byte{frag, {0x45, 0}, ipv4(src4, dst4, []byte{0x94, 9}, packet.ProtoUDP, udp(20))} {
		buf, off, end := bufWith(p)
		if _, _, err := out.EncapTransport(buf, off, end); err == nil {
			t.Errorf("transport of %x accepted", p)
		}
	}
}

func TestNoRoom(t *testing.T) {
	out, in := newPair(t, "sha256", false, 0)
	p := variants[0].inner(64)
	buf := make([]byte, 300)
	copy(buf[10:], p)
	if _, _, err := out.EncapTransport(buf, 10, 74); !errors.Is(err, ErrNoRoom) {
		t.Errorf("no headroom: %v", err)
	}
	if _, _, err := out.EncapTunnel(buf, 10, 74, variants[0].outer); !errors.Is(err, ErrNoRoom) {
		t.Errorf("tunnel without headroom: %v", err)
	}
	big := make([]byte, 64+64)
	copy(big[64:], p)
	if _, _, err := out.EncapTransport(big, 64, 128); !errors.Is(err, ErrNoRoom) {
		t.Errorf("no tailroom: %v", err)
	}
	if _, err := in.Open(buf, 0, 300); !errors.Is(err, ErrNoRoom) {
		t.Errorf("open without scratch: %v", err)
	}
	if _, err := in.Open(buf, 50, 40); !errors.Is(err, ErrNoRoom) {
		t.Errorf("open with end before off: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	sha, _ := xform.LookupInteg("sha256")
	gmac, _ := xform.LookupInteg("aes128gmac")
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no integ", Config{SPI: 0x1000}},
		{"reserved spi", Config{SPI: 255, Integ: sha, IntegKey: make([]byte, 32)}},
		{"short key", Config{SPI: 0x1000, Integ: sha, IntegKey: make([]byte, 16)}},
		{"gmac without salt", Config{SPI: 0x1000, Integ: gmac, IntegKey: make([]byte, 16)}},
		{"window too big", Config{SPI: 0x1000, Integ: sha, IntegKey: make([]byte, 32), ReplayWindow: 1 << 30}},
	} {
		if _, err := NewSA(&tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	sa, err := NewSA(&Config{SPI: 0x1000, Integ: gmac, IntegKey: make([]byte, 20), ESN: true, NextSeq: 7})
	if err != nil || sa.SPI() != 0x1000 || !sa.ESN() || sa.Name() != "aes128gmac" || sa.LastSeq() != 6 || sa.Tailroom() != ScratchLen || sa.Headroom() != 40 {
		t.Fatalf("accessors: %v", err)
	}
	sa.Zero()
	if Tunnel.String() != "tunnel" || Transport.String() != "transport" || Mode(9).String() != "mode(9)" {
		t.Error("Mode.String")
	}
}

func TestLocate(t *testing.T) {
	out, _ := newPair(t, "sha256", false, 0)
	sealed := sealPkt(t, out, Transport, variants[3].inner(200), nil)
	off, spi, err := Locate(append(sealed, 0xee, 0xee)) // trailing bytes beyond the IP length
	if err != nil || off != 104 || spi != 0x1234 {
		t.Fatalf("locate: off %d spi %#x err %v", off, spi, err)
	}
	for _, p := range [][]byte{nil, sealed[:103], variants[0].inner(64), ipv6(src6, dst6, nil, packet.ProtoAH, []byte{1, 2})} {
		if _, _, err := Locate(p); err == nil {
			t.Errorf("Locate(%x) succeeded", p)
		}
	}
}

func TestBatch(t *testing.T) {
	for _, mode := range []Mode{Transport, Tunnel} {
		t.Run(mode.String(), func(t *testing.T) {
			out, in := newPair(t, "sha256", true, 0)
			pkts := make([]Packet, 8)
			want := make([][]byte, len(pkts))
			for i := range pkts {
				want[i] = variants[i%2*2].inner(100 + i)
				buf, off, end := bufWith(want[i])
				pkts[i] = Packet{Buf: buf, Off: off, End: end}
			}
			outer := variants[2].outer
			out.SealBatch(pkts, mode, outer)
			for i, p := range pkts {
				wantNH := uint8(packet.ProtoUDP)
				if mode == Tunnel {
					wantNH = []uint8{packet.ProtoIPv4, packet.ProtoIPv6}[i%2]
				}
				if p.Err != nil || p.Seq != uint64(i+1) || p.NextHeader != wantNH {
					t.Fatalf("packet %d: seq %d nh %d err %v", i, p.Seq, p.NextHeader, p.Err)
				}
			}
			// Deliver in reverse order, with a duplicate.
			rev := make([]Packet, 0, len(pkts)+1)
			for i := len(pkts) - 1; i >= 0; i-- {
				rev = append(rev, pkts[i])
			}
			dup := pkts[3]
			dup.Buf = append([]byte(nil), pkts[3].Buf[:cap(pkts[3].Buf)]...)[:len(pkts[3].Buf)]
			rev = append(rev, dup)
			in.OpenBatch(rev, mode)
			for i, p := range rev[:len(pkts)] {
				j := len(pkts) - 1 - i
				if p.Err != nil || p.Seq != uint64(j+1) || !bytes.Equal(p.Buf[p.Off:p.End], want[j]) {
					t.Fatalf("packet %d: err %v", j, p.Err)
				}
			}
			if !errors.Is(rev[len(pkts)].Err, ErrReplay) {
				t.Fatalf("duplicate: %v", rev[len(pkts)].Err)
			}
		})
	}
	out, _ := newPair(t, "sha256", false, 0)
	pkts := []Packet{{}}
	pkts[0].Buf, pkts[0].Off, pkts[0].End = bufWith(variants[0].inner(64))
	out.SealBatch(pkts, Mode(0), nil)
	if !errors.Is(pkts[0].Err, ErrNotSupported) {
		t.Fatalf("mode 0: %v", pkts[0].Err)
	}
	out.SealBatch(nil, Tunnel, nil)
	out.OpenBatch(pkts, Mode(0))
	if pkts[0].Err == nil {
		t.Fatal("open batch with mode 0 succeeded")
	}
}

// TestTooBig checks that a packet AH would push past the IP length limit
// is refused, in both modes.
func TestTooBig(t *testing.T) {
	out, _ := newPair(t, "sha256", false, 0)
	p := ipv4(src4, dst4, nil, packet.ProtoUDP, make([]byte, 0xffff-20-10))
	buf, off, end := bufWith(p)
	if _, _, err := out.EncapTransport(buf, off, end); !errors.Is(err, ErrBadLength) {
		t.Errorf("transport: got %v, want ErrBadLength", err)
	}
	p = ipv4(src4, dst4, nil, packet.ProtoUDP, make([]byte, 65500-20)) // 48 bytes more fit only under IPv6
	buf, off, end = bufWith(p)
	if _, _, err := out.EncapTunnel(buf, off, end, variants[0].outer); !errors.Is(err, ErrBadLength) {
		t.Errorf("tunnel: got %v, want ErrBadLength", err)
	}
	buf, off, end = bufWith(p)
	if _, _, err := out.EncapTunnel(buf, off, end, variants[2].outer); err != nil {
		t.Errorf("tunnel in IPv6 (the payload length excludes its header): %v", err)
	}
}
