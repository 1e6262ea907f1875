package replay

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkInOrder measures Check+Accept for consecutive sequence numbers.
func BenchmarkInOrder(b *testing.B) {
	for _, esn := range []bool{false, true} {
		name := "32bit"
		if esn {
			name = "ESN"
		}
		b.Run(name, func(b *testing.B) {
			w := newWindow(b, DefaultSize)
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				s, err := w.Check(uint32(seq), esn)
				if err != nil {
					b.Fatal(err)
				}
				if err := w.Accept(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReordered measures Check+Accept with packets shuffled inside
// blocks of half the window, plus one duplicate per 16 packets.
func BenchmarkReordered(b *testing.B) {
	for _, size := range []int{DefaultSize, MaxSize} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			const n = 1 << 16
			rng := rand.New(rand.NewPCG(7, 7))
			perm := make([]uint64, n)
			for i := range perm {
				perm[i] = uint64(i) + 1
			}
			blk := size / 2
			for i := 0; i < n; i += blk {
				c := perm[i:min(i+blk, n)]
				rng.Shuffle(len(c), func(x, y int) { c[x], c[y] = c[y], c[x] })
			}
			for i := 15; i < n; i += 16 {
				perm[i] = perm[i-1] // duplicate
			}
			w := newWindow(b, size)
			b.ReportAllocs()
			var base uint64
			i := 0
			for b.Loop() {
				s, err := w.Check(uint32(base+perm[i]), true)
				if err == nil {
					_ = w.Accept(s)
				}
				if i++; i == n {
					i, base = 0, base+n
				}
			}
		})
	}
}

// BenchmarkFarJump measures the worst case: every packet jumps past the
// whole ring and clears it.
func BenchmarkFarJump(b *testing.B) {
	for _, size := range []int{DefaultSize, MaxSize} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			w := newWindow(b, size)
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq += 2 * MaxSize
				if err := w.Accept(seq); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParallel measures Check+Accept on one window from GOMAXPROCS goroutines.
func BenchmarkParallel(b *testing.B) {
	w := newWindow(b, DefaultSize)
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := w.Check(uint32(next.Add(1)), true)
			if err == nil {
				_ = w.Accept(s)
			}
		}
	})
}
