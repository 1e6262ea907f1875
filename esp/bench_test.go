package esp

import (
	"crypto/cipher"
	"fmt"
	"testing"

	"github.com/goipsec/goipsec/internal/xform"
)

var benchSizes = []int{64, 512, 1400, 8192}

var benchSuites = []suite{
	{"aes128gcm16", ""}, {"aes256gcm16", ""}, {"chacha20poly1305", ""},
	{"aes128gmac", ""}, {"aes128", "sha256"}, {"null", "sha256"},
}

// BenchmarkSeal measures Seal per transform and size; compare with
// BenchmarkBareAEAD (the AEAD's own Seal on the same sizes) for the ratio.
func BenchmarkSeal(b *testing.B) {
	for _, s := range benchSuites {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) {
				out, _ := newPair(b, s, false, 0)
				buf := make([]byte, 64+n+out.Tailroom())
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := out.Seal(buf, 64, 64+n, 4); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpen measures Open of valid packets per transform and size. The
// replay window is disabled so that one sealed packet can be opened again
// and again; the cost of a window check is in BenchmarkOpenWindow.
func BenchmarkOpen(b *testing.B) {
	for _, s := range benchSuites {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) {
				benchOpen(b, s, n, -1)
			})
		}
	}
}

// BenchmarkOpenWindow opens a stream of fresh packets through a 1024-packet
// replay window.
func BenchmarkOpenWindow(b *testing.B) {
	s := suite{"aes128gcm16", ""}
	out, in := newPair(b, s, true, 1024)
	const n = 1400
	buf := make([]byte, 64+n+out.Tailroom())
	pkt := make([]byte, 64+n+out.Tailroom())
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		start, end, err := out.Seal(buf, 64, 64+n, 4)
		if err != nil {
			b.Fatal(err)
		}
		copy(pkt[start:end], buf[start:end])
		if _, _, _, _, err := in.Open(pkt, start, end); err != nil {
			b.Fatal(err)
		}
	}
}

func benchOpen(b *testing.B, s suite, n, window int) {
	out, in := newPair(b, s, false, window)
	buf := make([]byte, 64+n+out.Tailroom())
	start, end, err := out.Seal(buf, 64, 64+n, 4)
	if err != nil {
		b.Fatal(err)
	}
	sealed := append([]byte(nil), buf[start:end]...)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		copy(buf[start:], sealed) // Open decrypts in place
		b.StartTimer()
		if _, _, _, _, err := in.Open(buf, start, end); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareAEAD is the ceiling: the AEAD's Seal and Open alone on the
// same payload sizes, in place, with an 8-byte AAD.
func BenchmarkBareAEAD(b *testing.B) {
	for _, name := range []string{"aes128gcm16", "aes256gcm16", "chacha20poly1305"} {
		enc, _ := xform.LookupEnc(name)
		a, _, err := xform.NewAEAD(enc, make([]byte, enc.KeyLen()))
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range benchSizes {
			buf := make([]byte, n+16)
			nonce, aad := make([]byte, 12), make([]byte, 8)
			b.Run(fmt.Sprintf("seal/%s/%d", name, n), func(b *testing.B) {
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					a.Seal(buf[:0], nonce, buf[:n], aad)
				}
			})
			b.Run(fmt.Sprintf("open/%s/%d", name, n), func(b *testing.B) {
				sealed := a.Seal(nil, nonce, make([]byte, n), aad)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					copy(buf, sealed)
					b.StartTimer()
					if _, err := a.Open(buf[:0], nonce, buf[:n+16], aad); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	_ = cipher.AEAD(nil)
}

// BenchmarkEncapTunnelTo measures sealing into another buffer (the
// dataplane's way for a GSO batch) per combined-mode transform and size;
// compare with BenchmarkSeal and BenchmarkBareAEAD.
func BenchmarkEncapTunnelTo(b *testing.B) {
	for _, s := range benchSuites[:3] {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) {
				out, _ := newPair(b, s, false, 0)
				src := make([]byte, n, n+out.TrailerLen()+ScratchLen)
				src[0] = 0x45
				dst := make([]byte, n+out.Overhead(n))
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := out.EncapTunnelTo(dst, src, 0, n); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
