package bench

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkKernel runs the workers of `goipsec bench datapath` rows and
// their ceilings under the testing package, for CPU profiles
// (-cpuprofile) and A/B comparisons of two trees (-count): one op is one
// packet. The ESP row's ns/op minus its ceiling's is the fixed per-packet
// cost of ESP around the cipher.
func BenchmarkKernel(b *testing.B) {
	for _, tr := range []string{"aes128gcm16", "aes128gmac"} {
		t, err := ParseTransform(tr)
		if err != nil {
			b.Fatal(err)
		}
		for _, sz := range []string{"64", "1400"} {
			sizes, err := ParseSizes(sz)
			if err != nil {
				b.Fatal(err)
			}
			s := sizes[0]
			for _, g := range []int{1, 2} {
				for _, op := range []Op{OpSeal, OpOpen, OpPipeline} {
					shares := []Sharing{Own}
					if g > 1 {
						shares = append(shares, Shared)
					}
					for _, sh := range shares {
						p := point{op: op, t: t, size: s, g: g, sa: sh, ceil: ceilingKind(t)}
						b.Run(fmt.Sprintf("%s/%s/%s/g%d/%s", op, tr, sz, g, sh), func(b *testing.B) { runPoint(b, p) })
					}
					if op != OpPipeline {
						p := point{op: op, t: t, size: s, g: g, ceil: ceilingKind(t), isCeil: true}
						b.Run(fmt.Sprintf("%s/%s/%s/g%d/ceiling", op, tr, sz, g), func(b *testing.B) { runPoint(b, p) })
					}
				}
			}
		}
	}
}

// runPoint processes b.N packets with the point's workers, split evenly
// across its goroutines, ring pass after ring pass; restores between
// passes are untimed. cpu-ns/op is the process's CPU time per packet
// (getrusage, all goroutines), steadier than ns/op on a shared machine.
func runPoint(b *testing.B, p point) {
	m, err := setup(p, &Config{RingBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	if m.cleanup != nil {
		defer m.cleanup()
	}
	b.SetBytes(int64(p.size.Mean()))
	b.ReportAllocs()
	per := b.N / len(m.workers)
	if per == 0 {
		per = 1
	}
	var clk cpuClock
	var cpu time.Duration
	b.ResetTimer()
	left := per
	for left > 0 {
		c0, _ := clk.now()
		// One pass over the rings (or what is left of b.N), all workers
		// in parallel.
		n := min(left, m.workers[0].n())
		var wg sync.WaitGroup
		fails := make([]int, len(m.workers))
		for wi, w := range m.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n; i += m.chunk {
					_, _, f := w.do(i, min(i+m.chunk, n))
					fails[wi] += f
				}
			}()
		}
		wg.Wait()
		c1, _ := clk.now()
		cpu += c1 - c0
		for _, f := range fails {
			if f != 0 {
				b.Fatalf("%s: %d packets failed", p, f)
			}
		}
		left -= n
		if m.phased && left > 0 {
			b.StopTimer()
			if m.hook != nil {
				m.hook()
			}
			for _, w := range m.workers {
				w.restore()
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(per*len(m.workers)), "cpu-ns/op")
}
