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

// TestConcurrentSliding has goroutines race on a small window that slides
// far: each receives every sequence number, shuffled in chunks larger than
// the window (so many fall out of it) and sometimes far ahead of the
// others. No number may be accepted twice, and every number accepted must
// have been inside the window of the highest one seen before.
func TestConcurrentSliding(t *testing.T) {
	const (
		workers = 4
		n       = 50000
	)
	for _, size := range []int{64, 1024} {
		for _, esn := range []bool{false, true} {
			w := newWindow(t, size)
			first := uint64(1)
			if esn {
				first = two32 - n/2
				if err := w.Accept(first - 1); err != nil {
					t.Fatal(err)
				}
			}
			accepted := make([]atomic.Int32, n)
			var wg sync.WaitGroup
			for g := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), uint64(size)))
					order := make([]uint64, n)
					for i := range order {
						order[i] = first + uint64(i)
					}
					chunk := 3 * size / 2
					for i := 0; i < n; i += chunk {
						c := order[i:min(i+chunk, n)]
						rng.Shuffle(len(c), func(a, b int) { c[a], c[b] = c[b], c[a] })
					}
					for _, s := range order {
						seq, err := w.Check(uint32(s), esn)
						if err != nil || seq != s {
							// Left of the window, ESN infers the next
							// 2^32 subspace: the ICV would fail.
							continue
						}
						if err := w.Accept(seq); err == nil {
							accepted[s-first].Add(1)
						}
					}
				})
			}
			wg.Wait()
			total := 0
			for i := range accepted {
				c := accepted[i].Load()
				if c > 1 {
					t.Fatalf("W %d esn %v: seq %#x accepted %d times", size, esn, first+uint64(i), c)
				}
				total += int(c)
			}
			if h := w.Highest(); h != first+n-1 {
				t.Errorf("W %d esn %v: Highest() = %#x, want %#x", size, esn, h, first+n-1)
			}
			if total < n/2 {
				t.Errorf("W %d esn %v: only %d of %d accepted", size, esn, total, n)
			}
			// Afterwards the window holds exactly what a sequential
			// replay of the accepted set implies: everything accepted in
			// the last W is a replay.
			for s := first + n - uint64(w.Size()); s < first+n; s++ {
				_, err := w.Check(uint32(s), esn)
				if accepted[s-first].Load() == 1 && err != ErrReplay || accepted[s-first].Load() == 0 && err != nil {
					t.Fatalf("W %d esn %v: seq %#x (accepted %d): Check = %v", size, esn, s, accepted[s-first].Load(), err)
				}
			}
		}
	}
}
