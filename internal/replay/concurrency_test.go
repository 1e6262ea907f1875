package replay

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrent has several goroutines each receive every sequence number
// (in its own, locally shuffled order) and Check and Accept in parallel,
// across the 2^32 boundary with ESN; each number must be accepted exactly
// once, and duplicates that pass Check must be stopped by Accept.
func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		n       = 20000 // < MaxSize, so nothing falls out of the window
	)
	for _, tc := range []struct {
		name  string
		esn   bool
		first uint64
	}{
		{"32-bit", false, 1},
		{"ESN across 2^32", true, two32 - n/2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(t, MaxSize)
			if tc.first > 1 {
				if err := w.Accept(tc.first - 1); err != nil {
					t.Fatal(err)
				}
			}
			accepted := make([]atomic.Int32, n)
			var checkReplays, acceptReplays atomic.Int64
			var wg sync.WaitGroup
			for g := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					order := make([]uint64, n)
					for i := range order {
						order[i] = tc.first + uint64(i)
					}
					for i := 0; i < n; i += 32 {
						c := order[i:min(i+32, n)]
						rng.Shuffle(len(c), func(a, b int) { c[a], c[b] = c[b], c[a] })
					}
					for _, s := range order {
						seq, err := w.Check(uint32(s), tc.esn)
						if seq != s {
							t.Errorf("Check(%#x) inferred %#x", uint32(s), seq)
							return
						}
						switch err {
						case nil:
						case ErrReplay:
							checkReplays.Add(1)
							continue
						default:
							t.Errorf("Check(%#x): %v", s, err)
							return
						}
						_ = w.Highest()
						_ = w.Size()
						switch err := w.Accept(seq); err {
						case nil:
							accepted[s-tc.first].Add(1)
						case ErrReplay:
							acceptReplays.Add(1)
						default:
							t.Errorf("Accept(%#x): %v", seq, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			for i := range accepted {
				if c := accepted[i].Load(); c != 1 {
					t.Fatalf("seq %#x accepted %d times", tc.first+uint64(i), c)
				}
			}
			if got := checkReplays.Load() + acceptReplays.Load(); got != (workers-1)*n {
				t.Errorf("%d duplicates rejected, want %d", got, (workers-1)*n)
			}
			if h := w.Highest(); h != tc.first+n-1 {
				t.Errorf("Highest() = %#x, want %#x", h, tc.first+n-1)
			}
			t.Logf("duplicates stopped by Check %d, by Accept %d", checkReplays.Load(), acceptReplays.Load())
		})
	}
}

// TestConcurrentDisabled checks that a disabled window tracks the highest
// sequence number under concurrent Accepts.
func TestConcurrentDisabled(t *testing.T) {
	w := newWindow(t, 0)
	var wg sync.WaitGroup
	for g := range uint64(8) {
		wg.Go(func() {
			for i := uint64(1); i <= 5000; i++ {
				if err := w.Accept(i*8 + g); err != nil {
					t.Errorf("Accept: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if h := w.Highest(); h != 5000*8+7 {
		t.Errorf("Highest() = %d", h)
	}
}
