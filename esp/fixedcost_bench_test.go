package esp

import (
	"encoding/binary"
	"testing"
)

// nopAEAD stands in for the cipher in the fixed-cost benchmarks: it
// encrypts and authenticates nothing and accepts everything.
type nopAEAD struct{}

func (nopAEAD) NonceSize() int { return 12 }
func (nopAEAD) Overhead() int  { return 16 }
func (nopAEAD) Seal(dst, nonce, p, aad []byte) []byte {
	return dst[:len(dst)+len(p)+16]
}
func (nopAEAD) Open(dst, nonce, c, aad []byte) ([]byte, error) { return dst[:len(c)-16], nil }
func (nopAEAD) SealIV(dst []byte, salt *[4]byte, iv *[8]byte, p, aad []byte) []byte {
	return dst[:len(dst)+len(p)+16]
}
func (nopAEAD) OpenIV(dst []byte, salt *[4]byte, iv *[8]byte, c, aad []byte) ([]byte, error) {
	return dst[:len(c)-16], nil
}

// BenchmarkFixedCostOpen is DecapTunnel of a 1400-byte packet with the
// cipher taken out (an AES-GCM SA whose AEAD does nothing): ESP's own work
// per packet, with and without the replay window.
func BenchmarkFixedCostOpen(b *testing.B) {
	for _, c := range []struct {
		name   string
		window int
	}{{"nowindow", 0}, {"window", 1024}} {
		b.Run(c.name, func(b *testing.B) {
			out, in := newPair(b, suite{"aes128gcm16", ""}, false, 0)
			n := 1400
			buf := make([]byte, 128+n+out.Tailroom())
			buf[128] = 0x45
			binary.BigEndian.PutUint16(buf[130:], uint16(n))
			s, e, err := out.EncapTunnel(buf, 128, 128+n)
			if err != nil {
				b.Fatal(err)
			}
			// Decrypt once for real: the packet then stays plaintext,
			// as the no-op AEAD leaves it, and opens again and again.
			if _, _, err := in.DecapTunnel(buf, s, e); err != nil {
				b.Fatal(err)
			}
			in.aead, in.ivAEAD = nopAEAD{}, nopAEAD{}
			if err := in.window.Init(c.window); err != nil {
				b.Fatal(err)
			}
			seq := uint32(1)
			b.ReportAllocs()
			for b.Loop() {
				seq++
				binary.BigEndian.PutUint32(buf[s+4:], seq)
				if _, _, err := in.DecapTunnel(buf, s, e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFixedCostSeal is EncapTunnel of a 1400-byte packet with the
// cipher taken out: ESP's own work per packet.
func BenchmarkFixedCostSeal(b *testing.B) {
	out, _ := newPair(b, suite{"aes128gcm16", ""}, false, 0)
	out.aead, out.ivAEAD = nopAEAD{}, nopAEAD{}
	n := 1400
	buf := make([]byte, 128+n+out.Tailroom())
	binary.BigEndian.PutUint16(buf[130:], uint16(n))
	b.ReportAllocs()
	for b.Loop() {
		buf[128] = 0x45
		if _, _, err := out.EncapTunnel(buf, 128, 128+n); err != nil {
			b.Fatal(err)
		}
	}
}
