package ah

import (
	"bytes"
	"errors"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
)

// fuzzPairs are the SAs the fuzz targets use: one per kind of transform,
// with and without ESN.
func fuzzPairs(f *testing.F) [][2]*SA {
	var pairs [][2]*SA
	for _, alg := range []string{"sha256", "sha1", "aes128gmac"} {
		for _, esn := range []bool{false, true} {
			out, in := newPair(f, alg, esn, 64)
			pairs = append(pairs, [2]*SA{out, in})
		}
	}
	return pairs
}

// FuzzOpen feeds arbitrary bytes to the verify path (Open, then the
// tunnel or transport decapsulation) of every kind of SA: it must never
// panic, never accept a packet it did not seal, and never change the packet
// or the replay window when it rejects one.
func FuzzOpen(f *testing.F) {
	pairs := fuzzPairs(f)
	for i, p := range pairs {
		for _, v := range variants {
			for _, mode := range []Mode{Transport, Tunnel} {
				sealed := traverse(sealPkt(f, p[0], mode, v.inner(120), v.outer))
				f.Add(uint8(i), uint8(mode), sealed)
				f.Add(uint8(i), uint8(mode), sealed[:len(sealed)/2])
				bad := append([]byte(nil), sealed...)
				bad[len(bad)-3] ^= 0x40
				f.Add(uint8(i), uint8(mode), bad)
			}
		}
	}
	f.Add(uint8(0), uint8(0), []byte{})
	f.Add(uint8(0), uint8(1), []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 51, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, which, mode uint8, data []byte) {
		in := pairs[int(which)%len(pairs)][1]
		Locate(data)
		before := in.Window().Highest()
		buf := make([]byte, 16+len(data)+ScratchLen)
		copy(buf[16:], data)
		off, end := 16, 16+len(data)
		var start, pend int
		var err error
		switch Mode(mode%2 + 1) {
		case Tunnel:
			start, pend, err = in.DecapTunnel(buf, off, end)
		case Transport:
			start, pend, err = in.DecapTransport(buf, off, end)
		}
		if err == nil {
			if start < 0 || pend > end || start > pend {
				t.Fatalf("bounds %d..%d outside the packet %d..%d", start, pend, off, end)
			}
			return
		}
		if h := in.Window().Highest(); h != before {
			if errors.Is(err, ErrBadInner) || errors.Is(err, ErrNextHeader) {
				return // a verified packet with a bad inner packet: only from seeds
			}
			t.Fatalf("rejected packet (%v) moved the window from %d to %d", err, before, h)
		}
		if !bytes.Equal(buf[off:end], data) {
			t.Fatalf("rejected packet (%v) was changed", err)
		}
	})
}

// FuzzEncapTransport seals arbitrary packets in transport mode: it must
// never panic, and what it seals must open to the packet it was given
// (unless the packet carries a route the receiver sees differently).
func FuzzEncapTransport(f *testing.F) {
	pairs := fuzzPairs(f)
	for _, v := range variants {
		f.Add(uint8(0), v.inner(100))
		f.Add(uint8(4), v.inner(100))
	}
	f.Add(uint8(1), ipv4(src4, dst4, concat([]byte{0x83, 7, 4}, dst4), packet.ProtoTCP, udp(20)))
	f.Add(uint8(2), ipv6(src6, dst6, []ext{{packet.ProtoFragment, make([]byte, 7)}}, packet.ProtoUDP, udp(20)))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		p := pairs[int(which)%len(pairs)]
		out, in := p[0], p[1]
		buf, off, end := bufWith(data)
		start, pend, err := out.EncapTransport(buf, off, end)
		if err != nil {
			return
		}
		sealed := append([]byte(nil), buf[start:pend]...)
		want := traverse(data[:pend-start-out.HeaderLen(int(data[0]>>4))])
		if want[0]>>4 == 4 {
			packet.IPv4(want).ComputeChecksum() // recomputed on the way
		}
		got, err := openPkt(in, Transport, traverse(sealed))
		if err != nil {
			if errors.Is(err, ErrAuth) && routed(data) {
				return
			}
			t.Fatalf("sealed packet does not open: %v\nin  %x\nout %x", err, data, sealed)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round trip changed the packet\nin  %x\nout %x", want, got)
		}
	})
}

// routed reports whether the packet has an IPv4 source route or an IPv6
// routing header, whose arrival traverse may not simulate.
func routed(p []byte) bool {
	if p[0]>>4 == 4 {
		hl := int(p[0]&0xf) * 4
		for o := 20; o < hl && o < len(p); {
			switch p[o] {
			case 0:
				return false
			case 1:
				o++
				continue
			case optLSRR, optSSRR:
				return true
			}
			if o+1 >= len(p) || p[o+1] < 2 {
				return false
			}
			o += int(p[o+1])
		}
		return false
	}
	return hasRouting(p)
}

func hasRouting(p []byte) bool {
	nh, off := p[6], 40
	for i := 0; i < 20 && off+2 <= len(p); i++ {
		switch nh {
		case packet.ProtoRouting:
			return true
		case packet.ProtoHopByHop, packet.ProtoDestOpts:
			nh, off = p[off], off+(int(p[off+1])+1)*8
		case packet.ProtoFragment:
			nh, off = p[off], off+8
		default:
			return false
		}
	}
	return false
}
