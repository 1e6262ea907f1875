package ah

import (
	"bytes"
	"sync"
	"testing"
)

// TestConcurrent seals and opens on many goroutines with the same SAs; run
// with -race. Every packet must open, and every sequence number be used
// once.
func TestConcurrent(t *testing.T) {
	for _, alg := range []string{"sha256", "aes128gmac"} {
		t.Run(alg, func(t *testing.T) {
			out, in := newPair(t, alg, true, 4096)
			const workers, each = 8, 200
			var wg sync.WaitGroup
			seqs := make([][]uint64, workers)
			errs := make(chan error, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					v := variants[w%len(variants)]
					for i := 0; i < each; i++ {
						p := v.inner(100 + i%50)
						mode := []Mode{Transport, Tunnel}[i%2]
						buf, off, end := bufWith(p)
						var start, pend int
						var err error
						if mode == Tunnel {
							start, pend, err = out.EncapTunnel(buf, off, end, v.outer)
						} else {
							start, pend, err = out.EncapTransport(buf, off, end)
						}
						if err != nil {
							errs <- err
							return
						}
						arrived := traverse(buf[start:pend])
						b2, o2, e2 := bufWith(arrived)
						o, err := in.Open(b2, o2, e2)
						if err != nil {
							errs <- err
							return
						}
						if !bytes.Equal(b2[o2:e2], arrived) {
							t.Error("Open changed the packet")
						}
						seqs[w] = append(seqs[w], o.Seq)
					}
				}(w)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			seen := map[uint64]bool{}
			for _, s := range seqs {
				for _, q := range s {
					if seen[q] {
						t.Fatalf("sequence number %d used twice", q)
					}
					seen[q] = true
				}
			}
			if len(seen) != workers*each {
				t.Fatalf("%d sequence numbers, want %d", len(seen), workers*each)
			}
		})
	}
}
