package esp

import (
	"errors"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the decapsulation path of every kind of
// SA: it must never panic, never accept a packet it did not seal, and never
// move the replay window on a rejected packet.
func FuzzOpen(f *testing.F) {
	kinds := []suite{{"aes128gcm16", ""}, {"chacha20poly1305", ""}, {"aes128gmac", ""}, {"aes128", "sha256"}, {"null", "sha256"}}
	type pair struct{ out, in *SA }
	var pairs []pair
	for _, s := range kinds {
		for _, esn := range []bool{false, true} {
			out, in := newPair(f, s, esn, 64)
			pairs = append(pairs, pair{out, in})
		}
	}
	// Seeds: a valid packet of each kind, and mangled versions of it.
	for i, p := range pairs {
		buf, off, end := bufWith([]byte("seed payload for the fuzzer"))
		start, pend, err := p.out.Seal(buf, off, end, 4)
		if err != nil {
			f.Fatal(err)
		}
		pkt := append([]byte(nil), buf[:cap(buf)][start:pend]...)
		f.Add(uint8(i), pkt)
		f.Add(uint8(i), pkt[:len(pkt)/2])
		bad := append([]byte(nil), pkt...)
		bad[len(bad)-3] ^= 0x40
		f.Add(uint8(i), bad)
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(0), []byte{0, 0, 0x12, 0x34, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		p := pairs[int(which)%len(pairs)]
		before := p.in.window.Highest()
		buf := make([]byte, 16+len(data)+ScratchLen)
		copy(buf[16:], data)
		ps, pe, _, _, err := p.in.Open(buf, 16, 16+len(data))
		switch {
		case err == nil:
			if ps < 16 || pe > 16+len(data) || ps > pe {
				t.Fatalf("payload bounds %d..%d outside the packet", ps, pe)
			}
		case errors.Is(err, ErrDummy), errors.Is(err, ErrBadPadding), errors.Is(err, ErrBadLength):
			// Reported after (or without) the ICV check; the fuzzer cannot
			// forge an ICV, so these come from seeds.
		default:
			if p.in.window.Highest() != before {
				t.Fatalf("rejected packet (%v) moved the window from %d to %d", err, before, p.in.window.Highest())
			}
		}
	})
}
