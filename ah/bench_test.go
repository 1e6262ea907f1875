package ah

import (
	"fmt"
	"testing"
)

var (
	benchSizes = []int{64, 512, 1400}
	benchAlgs  = []string{"sha256", "sha512", "sha1", "aes128gmac"}
)

// benchVariants are the IPv4 and IPv6 packets of the benchmarks, without
// options or extension headers.
var benchVariants = []variant{variants[0], variants[2]}

// BenchmarkSeal measures sealing an IP packet of each size (the cleartext
// packet's length): tunnel mode (EncapTunnel, outer header of the same
// version) and transport mode (EncapTransport).
func BenchmarkSeal(b *testing.B) {
	for _, alg := range benchAlgs {
		for _, v := range benchVariants {
			for _, mode := range []Mode{Tunnel, Transport} {
				for _, n := range benchSizes {
					b.Run(fmt.Sprintf("%s/%s/%v/%d", alg, v.name, mode, n), func(b *testing.B) {
						out, _ := newPair(b, alg, false, 0)
						p := v.inner(n)
						buf := make([]byte, 128+n+ScratchLen)
						copy(buf[128:], p)
						hl := 20
						if p[0]>>4 == 6 {
							hl = 40
						}
						b.SetBytes(int64(n))
						b.ReportAllocs()
						for b.Loop() {
							var err error
							if mode == Tunnel {
								_, _, err = out.EncapTunnel(buf, 128, 128+n, v.outer)
							} else {
								copy(buf[128:128+hl], p) // AH took the header's place
								_, _, err = out.EncapTransport(buf, 128, 128+n)
							}
							if err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		}
	}
}

// BenchmarkOpen measures verifying sealed packets of each size (the
// cleartext packet's length): DecapTunnel for tunnel mode, Open (the
// verification without moving the header) for transport mode. The replay
// window is disabled so that one packet can be opened again and again.
func BenchmarkOpen(b *testing.B) {
	for _, alg := range benchAlgs {
		for _, v := range benchVariants {
			for _, mode := range []Mode{Tunnel, Transport} {
				for _, n := range benchSizes {
					b.Run(fmt.Sprintf("%s/%s/%v/%d", alg, v.name, mode, n), func(b *testing.B) {
						out, in := newPair(b, alg, false, -1)
						sealed := sealPkt(b, out, mode, v.inner(n), v.outer)
						buf := make([]byte, len(sealed)+ScratchLen)
						copy(buf, sealed)
						b.SetBytes(int64(n))
						b.ReportAllocs()
						for b.Loop() {
							var err error
							if mode == Tunnel {
								_, _, err = in.DecapTunnel(buf, 0, len(sealed))
							} else {
								_, err = in.Open(buf, 0, len(sealed))
							}
							if err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		}
	}
}

// BenchmarkOpenWindow seals and opens a stream of fresh packets through a
// 1024-packet replay window with ESN, in transport mode both ways.
func BenchmarkOpenWindow(b *testing.B) {
	out, in := newPair(b, "sha256", true, 1024)
	const n = 1400
	p := variants[0].inner(n)
	buf := make([]byte, 128+n+ScratchLen)
	copy(buf[128:], p)
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		start, end, err := out.EncapTransport(buf, 128, 128+n)
		if err != nil {
			b.Fatal(err)
		}
		if start, end, err = in.DecapTransport(buf, start, end); err != nil || start != 128 || end != 128+n {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtHeaders measures sealing and opening IPv4 packets with
// options and IPv6 packets with extension headers (mutable options, a
// routing header to predict).
func BenchmarkExtHeaders(b *testing.B) {
	for _, v := range []variant{variants[1], variants[3]} {
		out, in := newPair(b, "sha256", false, -1)
		p := v.inner(512)
		b.Run("seal/"+v.name, func(b *testing.B) {
			buf := make([]byte, 256+len(p)+ScratchLen)
			copy(buf[256:], p)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := out.EncapTunnel(buf, 256, 256+len(p), v.outer); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("open/"+v.name, func(b *testing.B) {
			sealed := traverse(sealPkt(b, out, Transport, p, nil))
			buf := make([]byte, len(sealed)+ScratchLen)
			copy(buf, sealed)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := in.Open(buf, 0, len(sealed)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
