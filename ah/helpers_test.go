package ah

import (
	"crypto/rand"
	"encoding/binary"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/xform"
)

// The algorithms under test, by strongSwan keyword.
var algs = []string{"sha256", "sha384", "sha512", "sha1", "md5", "aes128gmac", "aes192gmac", "aes256gmac"}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newPair returns an outbound and an inbound SA sharing a random key.
func newPair(t testing.TB, alg string, esn bool, window int) (out, in *SA) {
	t.Helper()
	ig, err := xform.LookupInteg(alg)
	if err != nil {
		t.Fatal(err)
	}
	return newPairKey(t, ig, randBytes(t, ig.KeyLen), esn, window)
}

func newPairKey(t testing.TB, ig *xform.Integ, key []byte, esn bool, window int) (out, in *SA) {
	t.Helper()
	cfg := Config{SPI: 0x1234, Integ: ig, IntegKey: key, ESN: esn, ReplayWindow: window}
	var err error
	if out, err = NewSA(&cfg); err != nil {
		t.Fatal(err)
	}
	if in, err = NewSA(&cfg); err != nil {
		t.Fatal(err)
	}
	return out, in
}

const (
	headroom = 256
	tailroom = 256
)

// bufWith returns a buffer holding p at offset headroom, with tailroom.
func bufWith(p []byte) ([]byte, int, int) {
	buf := make([]byte, headroom+len(p), headroom+len(p)+tailroom)
	copy(buf[headroom:], p)
	return buf, headroom, headroom + len(p)
}

var (
	src4 = []byte{192, 0, 2, 1}
	dst4 = []byte{198, 51, 100, 2}
	tsrc = []byte{203, 0, 113, 1}
	tdst = []byte{203, 0, 113, 2}

	src6  = addr6(0x11)
	dst6  = addr6(0x22)
	hop6a = addr6(0xa1)
	hop6b = addr6(0xa2)
	tsrc6 = addr6(0x31)
	tdst6 = addr6(0x32)
)

func addr6(last byte) []byte {
	a := []byte{0x20, 0x01, 0x0d, 0xb8, 15: 0}
	a[15] = last
	return a
}

// udp returns a UDP datagram of n bytes (header included), checksum 0.
func udp(n int) []byte {
	if n < 8 {
		n = 8
	}
	u := make([]byte, n)
	binary.BigEndian.PutUint16(u[0:2], 4000)
	binary.BigEndian.PutUint16(u[2:4], 5000)
	binary.BigEndian.PutUint16(u[4:6], uint16(n))
	for i := 8; i < n; i++ {
		u[i] = byte(i * 7)
	}
	return u
}

// ipv4 builds an IPv4 packet (TOS 0x10, TTL 64, DF) with options opts
// (padded to 32 bits with End of Options) around payload.
func ipv4(src, dst, opts []byte, proto uint8, payload []byte) []byte {
	opts = append([]byte(nil), opts...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := 20 + len(opts)
	p := make([]byte, hl+len(payload))
	p[0] = 0x40 | byte(hl/4)
	p[1] = 0x10
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:6], 0x4242)
	p[6] = 0x40 // DF
	p[8] = 64
	p[9] = proto
	copy(p[12:16], src)
	copy(p[16:20], dst)
	copy(p[20:], opts)
	copy(p[hl:], payload)
	packet.IPv4(p).ComputeChecksum()
	return p
}

// ext is an IPv6 extension header: its type and its bytes after the next
// header field.
type ext struct {
	typ  uint8
	body []byte
}

// optsHeader builds a Hop-by-Hop or Destination Options header with the
// given TLV options, padded to 8 bytes with PadN.
func optsHeader(typ uint8, opts ...[]byte) ext {
	var b []byte
	b = append(b, 0) // Hdr Ext Len, set by ipv6
	for _, o := range opts {
		b = append(b, o...)
	}
	if pad := (8 - (len(b)+1)%8) % 8; pad == 1 {
		b = append(b, 0) // Pad1
	} else if pad > 1 {
		b = append(b, 1, byte(pad-2))
		b = append(b, make([]byte, pad-2)...)
	}
	return ext{typ, b}
}

// opt is an IPv6 option TLV.
func opt(typ byte, data ...byte) []byte { return append([]byte{typ, byte(len(data))}, data...) }

// routing0 builds a type 0 routing header with the given addresses, all
// left to visit.
func routing0(addrs ...[]byte) ext {
	b := []byte{0, 0, byte(len(addrs)), 0, 0, 0, 0}
	for _, a := range addrs {
		b = append(b, a...)
	}
	return ext{packet.ProtoRouting, b}
}

// ipv6 builds an IPv6 packet (traffic class 0x28, flow label 0x12345, hop
// limit 64) with the extension headers exts around payload.
func ipv6(src, dst []byte, exts []ext, proto uint8, payload []byte) []byte {
	p := make([]byte, 40)
	binary.BigEndian.PutUint32(p[0:4], 6<<28|0x28<<20|0x12345)
	p[7] = 64
	copy(p[8:24], src)
	copy(p[24:40], dst)
	nhOff := 6
	for _, e := range exts {
		p[nhOff] = e.typ
		nhOff = len(p)
		h := append([]byte{0}, e.body...)
		h[1] = byte(len(h)/8 - 1)
		p = append(p, h...)
	}
	p[nhOff] = proto
	p = append(p, payload...)
	binary.BigEndian.PutUint16(p[4:6], uint16(len(p)-40))
	return p
}

// IPv4 options used by the tests.
var (
	optRouterAlert = []byte{0x94, 4, 0, 0}                                        // immutable
	optRecordRoute = []byte{0x07, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0}                  // mutable
	optTimestamp   = []byte{0x44, 12, 5, 0, 0, 0, 0, 1, 0, 0, 0, 2}               // mutable
	optSecurity    = []byte{0x82, 11, 0xf1, 0x35, 0, 0, 0, 0, 0, 0, 0}            // immutable
	v4opts         = concat(optRouterAlert, optRecordRoute, []byte{1}, []byte{0}) // + EOL padding
)

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// IPv6 extension headers used by the tests: a Hop-by-Hop header with an
// immutable Router Alert and a mutable (change-en-route) experimental
// option, a Destination Options header with an immutable option, and a
// type 0 routing header through two hops.
func v6exts(hops bool) []ext {
	e := []ext{
		optsHeader(packet.ProtoHopByHop, opt(0x05, 0, 0), opt(0x3e, 0xaa, 0xbb, 0xcc, 0xdd)),
		optsHeader(packet.ProtoDestOpts, opt(0x1e, 1, 2)),
	}
	if hops {
		e = append(e, routing0(hop6b, dst6))
	}
	return e
}

// variant is a cleartext packet shape of the cross-checks.
type variant struct {
	name  string
	inner func(n int) []byte // a packet of about n bytes
	outer []byte             // tunnel header template
}

var variants = []variant{
	{"v4", func(n int) []byte { return ipv4(src4, dst4, nil, packet.ProtoUDP, udp(n-20)) },
		ipv4(tsrc, tdst, nil, 0, nil)},
	{"v4opts", func(n int) []byte { return ipv4(src4, dst4, v4opts, packet.ProtoUDP, udp(n-40)) },
		ipv4(tsrc, tdst, v4opts, 0, nil)},
	{"v6", func(n int) []byte { return ipv6(src6, dst6, nil, packet.ProtoUDP, udp(n-40)) },
		ipv6(tsrc6, tdst6, nil, 0, nil)},
	{"v6ext", func(n int) []byte {
		return ipv6(src6, hop6a, v6exts(true), packet.ProtoUDP, udp(n-104))
	}, ipv6(tsrc6, hop6a, v6exts(true), 0, nil)},
}

// traverse delivers an IPv6 packet through its type 0 routing header (RFC
// 2460 section 4.4): each hop swaps the destination with the next address
// and decrements Segments Left and the hop limit. Other packets are
// returned as they are.
func traverse(p []byte) []byte {
	p = append([]byte(nil), p...)
	if p[0]>>4 != 6 {
		return p
	}
	nh, off := p[6], 40
	for off+8 <= len(p) {
		switch nh {
		case packet.ProtoHopByHop, packet.ProtoDestOpts:
		case packet.ProtoRouting:
			if p[off+2] != 0 {
				return p
			}
			n := int(p[off+1]) / 2
			for p[off+3] > 0 {
				i := n - int(p[off+3])
				a := p[off+8+16*i : off+8+16*(i+1)]
				var tmp [16]byte
				copy(tmp[:], a)
				copy(a, p[24:40])
				copy(p[24:40], tmp[:])
				p[off+3]--
				p[7]--
			}
			return p
		default:
			return p
		}
		nh = p[off]
		off += (int(p[off+1]) + 1) * 8
	}
	return p
}
