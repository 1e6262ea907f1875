package replay

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

const (
	two32 = uint64(1) << 32
	two31 = uint64(1) << 31
)

func newWindow(t testing.TB, size int) *Window {
	t.Helper()
	w := new(Window)
	if err := w.Init(size); err != nil {
		t.Fatalf("Init(%d): %v", size, err)
	}
	return w
}

// errName gives a short stable name for test messages.
func errName(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrReplay):
		return "ErrReplay"
	case errors.Is(err, ErrTooOld):
		return "ErrTooOld"
	case errors.Is(err, ErrZero):
		return "ErrZero"
	case errors.Is(err, ErrUninitialized):
		return "ErrUninitialized"
	}
	return err.Error()
}

func TestInit(t *testing.T) {
	for _, tc := range []struct {
		in, want int
	}{
		{0, 0},
		{1, 64},
		{63, 64},
		{64, 64},
		{65, 128},
		{100, 128},
		{1000, 1024},
		{DefaultSize, 1024},
		{4096, 4096},
		{65535, 65536},
		{MaxSize, MaxSize},
	} {
		w := newWindow(t, tc.in)
		if got := w.Size(); got != tc.want {
			t.Errorf("Init(%d): Size() = %d, want %d", tc.in, got, tc.want)
		}
		if tc.want != 0 {
			// The ring must hold at least one block more than the window.
			if n := len(w.ring); n<<blockShift < tc.want+1<<blockShift || n&(n-1) != 0 {
				t.Errorf("Init(%d): ring of %d words", tc.in, n)
			}
		}
	}
	for _, bad := range []int{-1, -64, MaxSize + 1, 1 << 20} {
		var w Window
		if err := w.Init(bad); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("Init(%d) = %v, want ErrInvalidSize", bad, err)
		}
	}
}

func TestUninitialized(t *testing.T) {
	var w Window
	if _, err := w.Check(1, false); !errors.Is(err, ErrUninitialized) {
		t.Errorf("Check on zero Window: %v", err)
	}
	if _, err := w.Check(1, true); !errors.Is(err, ErrUninitialized) {
		t.Errorf("Check(esn) on zero Window: %v", err)
	}
	if err := w.Accept(1); !errors.Is(err, ErrUninitialized) {
		t.Errorf("Accept on zero Window: %v", err)
	}
	if w.Size() != 0 || w.Highest() != 0 {
		t.Errorf("zero Window: Size %d Highest %d", w.Size(), w.Highest())
	}
}

func TestReinitResets(t *testing.T) {
	w := newWindow(t, 4096)
	for s := uint64(1); s <= 100; s++ {
		if err := w.Accept(s); err != nil {
			t.Fatal(err)
		}
	}
	ring := &w.ring[0]
	if err := w.Init(1024); err != nil {
		t.Fatal(err)
	}
	if &w.ring[0] != ring {
		t.Errorf("Init with a smaller size reallocated the ring")
	}
	if w.Highest() != 0 || w.Size() != 1024 {
		t.Fatalf("after re-Init: Highest %d Size %d", w.Highest(), w.Size())
	}
	for s := uint64(1); s <= 100; s++ {
		if _, err := w.Check(uint32(s), false); err != nil {
			t.Fatalf("after re-Init, Check(%d) = %v", s, err)
		}
	}
	if err := w.Init(0); err != nil || w.Size() != 0 {
		t.Fatalf("Init(0): %v, Size %d", err, w.Size())
	}
}

// step is one operation of an RFC 4303 section 3.4.3 scenario; seq is a
// function of the effective window size W.
type step struct {
	name   string
	accept bool // Accept instead of Check
	seq    func(W uint64) uint64
	want   error
}

func abs(n uint64) func(uint64) uint64 { return func(uint64) uint64 { return n } }

func TestRFC4303Semantics(t *testing.T) {
	// T1 = W+10 after the first jump.
	t1 := func(W uint64) uint64 { return W + 10 }
	t2 := func(W uint64) uint64 { return t1(W) + 10*W + 3 }
	t3 := func(W uint64) uint64 { return t2(W) + W/2 }
	t4 := func(W uint64) uint64 { return t3(W) + W }
	steps := []step{
		{"zero check", false, abs(0), ErrZero},
		{"zero accept", true, abs(0), ErrZero},
		{"first", false, abs(1), nil},
		{"accept 1", true, abs(1), nil},
		{"accept 2", true, abs(2), nil},
		{"accept 3", true, abs(3), nil},
		{"accept 5", true, abs(5), nil},
		{"4 still missing", false, abs(4), nil},
		{"accept 4 late", true, abs(4), nil},
		{"dup 3 check", false, abs(3), ErrReplay},
		{"dup 3 accept", true, abs(3), ErrReplay},
		{"dup 5 (highest)", false, abs(5), ErrReplay},
		{"ahead by one", false, abs(6), nil},
		{"jump to W+10", true, t1, nil},
		{"left edge T-W+1 (distance W-1)", false, func(W uint64) uint64 { return t1(W) - W + 1 }, nil},
		{"accept left edge", true, func(W uint64) uint64 { return t1(W) - W + 1 }, nil},
		{"left edge again", false, func(W uint64) uint64 { return t1(W) - W + 1 }, ErrReplay},
		{"T-W (distance W) too old", false, func(W uint64) uint64 { return t1(W) - W }, ErrTooOld},
		{"T-W accept too old", true, func(W uint64) uint64 { return t1(W) - W }, ErrTooOld},
		{"5 too old", false, abs(5), ErrTooOld},
		{"1 too old", true, abs(1), ErrTooOld},
		{"reorder T-1", true, func(W uint64) uint64 { return t1(W) - 1 }, nil},
		{"reorder T-5", true, func(W uint64) uint64 { return t1(W) - 5 }, nil},
		{"reorder T-40", true, func(W uint64) uint64 { return t1(W) - 40 }, nil},
		{"dup T-5", false, func(W uint64) uint64 { return t1(W) - 5 }, ErrReplay},
		{"dup T-40", false, func(W uint64) uint64 { return t1(W) - 40 }, ErrReplay},
		{"T-4 fresh", false, func(W uint64) uint64 { return t1(W) - 4 }, nil},
		{"dup T", true, t1, ErrReplay},
		{"far jump", true, t2, nil},
		{"far jump dup", false, t2, ErrReplay},
		{"after far jump, T-1 fresh", false, func(W uint64) uint64 { return t2(W) - 1 }, nil},
		{"after far jump, T-W+1 fresh", false, func(W uint64) uint64 { return t2(W) - W + 1 }, nil},
		{"after far jump, T-W too old", false, func(W uint64) uint64 { return t2(W) - W }, ErrTooOld},
		{"old T1 too old", false, t1, ErrTooOld},
		{"half-window jump", true, t3, nil},
		{"T2 still replay", false, t2, ErrReplay},
		{"T2-1 fresh", true, func(W uint64) uint64 { return t2(W) - 1 }, nil},
		{"jump by exactly W", true, t4, nil},
		{"T3 now at distance W", false, t3, ErrTooOld},
		{"T4-W+1 fresh", false, func(W uint64) uint64 { return t4(W) - W + 1 }, nil},
		{"T4 replay", false, t4, ErrReplay},
	}
	for _, size := range []int{1, 64, 100, 1000, DefaultSize, 4096, 65535, MaxSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			w := newWindow(t, size)
			W := uint64(w.Size())
			for _, st := range steps {
				seq := st.seq(W)
				var err error
				if st.accept {
					err = w.Accept(seq)
				} else {
					var got uint64
					got, err = w.Check(uint32(seq), false)
					if got != seq {
						t.Fatalf("%s: Check(%d) returned seq %d", st.name, seq, got)
					}
				}
				if !errors.Is(err, st.want) || (st.want == nil && err != nil) {
					t.Fatalf("%s (seq %d, W %d, highest %d): got %s, want %s",
						st.name, seq, W, w.Highest(), errName(err), errName(st.want))
				}
			}
			if h := w.Highest(); h != t4(W) {
				t.Errorf("Highest() = %d, want %d", h, t4(W))
			}
		})
	}
}

// TestSlideClearsStaleBits fills the whole window, jumps ahead by every
// distance up to three windows and checks that exactly the old packets still
// inside the window are reported as replays.
func TestSlideClearsStaleBits(t *testing.T) {
	for _, size := range []int{64, 128, 1024} {
		W := uint64(size)
		base := 5*W + 17 // not word-aligned
		for j := uint64(1); j <= 3*W+130; j++ {
			w := newWindow(t, size)
			for s := base - W + 1; s <= base; s++ {
				if err := w.Accept(s); err != nil {
					t.Fatal(err)
				}
			}
			top := base + j
			if err := w.Accept(top); err != nil {
				t.Fatalf("W %d jump %d: %v", W, j, err)
			}
			for s := top - W + 1; s <= top; s++ {
				var want error
				if s <= base || s == top {
					want = ErrReplay
				}
				if _, err := w.Check(uint32(s), false); err != want {
					t.Fatalf("W %d jump %d seq %d: got %s want %s", W, j, s, errName(err), errName(want))
				}
			}
			if _, err := w.Check(uint32(top-W), false); err != ErrTooOld {
				t.Fatalf("W %d jump %d: T-W gave %s", W, j, errName(err))
			}
		}
	}
}

func TestDisabled(t *testing.T) {
	w := newWindow(t, 0)
	if w.Size() != 0 {
		t.Fatalf("Size() = %d", w.Size())
	}
	if _, err := w.Check(0, false); err != ErrZero {
		t.Errorf("Check(0) = %v", err)
	}
	if err := w.Accept(0); err != ErrZero {
		t.Errorf("Accept(0) = %v", err)
	}
	for _, s := range []uint64{5, 5, 1, 5, 100000, 3, 100000, 2} {
		if seq, err := w.Check(uint32(s), false); err != nil || seq != s {
			t.Errorf("Check(%d) = %d, %v", s, seq, err)
		}
		if err := w.Accept(s); err != nil {
			t.Errorf("Accept(%d) = %v", s, err)
		}
	}
	if w.Highest() != 100000 {
		t.Errorf("Highest() = %d, want 100000", w.Highest())
	}
}

// setHighest returns a window of the given size whose highest accepted
// sequence number is T.
func setHighest(t *testing.T, size int, T uint64) *Window {
	t.Helper()
	w := newWindow(t, size)
	if T != 0 {
		if err := w.Accept(T); err != nil {
			t.Fatalf("Accept(%#x): %v", T, err)
		}
	}
	return w
}

// TestESNInference covers both cases of RFC 4303 Appendix A2.2.
func TestESNInference(t *testing.T) {
	const W = 1024
	for _, tc := range []struct {
		name string
		size int
		T    uint64 // highest accepted
		seql uint32
		want uint64
		err  error
	}{
		// Fresh window (T = 0 is Case B with Th = 0).
		{"fresh, first packet", W, 0, 1, 1, nil},
		{"fresh, zero", W, 0, 0, 0, ErrZero},
		{"fresh, ahead", W, 0, 1 << 31, 1 << 31, nil},
		{"fresh, Bl-1 stays in subspace 0", W, 0, math.MaxUint32 - W + 1, two32 - W, nil},
		{"fresh, Bl would be Th-1 = -1", W, 0, math.MaxUint32 - W + 2, 0, ErrTooOld},
		{"fresh, 2^32-1 would be Th-1", W, 0, math.MaxUint32, 0, ErrTooOld},

		// Case A: Tl >= W-1, window inside subspace Th.
		{"A: in window", W, two32 + 5000, 4000, two32 + 4000, nil},
		{"A: Seql = Bl (distance W-1)", W, two32 + 5000, 5000 - W + 1, two32 + 5000 - W + 1, nil},
		{"A: Seql = Bl-1 -> Th+1", W, two32 + 5000, 5000 - W, 2*two32 + 5000 - W, nil},
		{"A: ahead in subspace", W, two32 + 5000, 6000, two32 + 6000, nil},
		{"A: duplicate highest", W, two32 + 5000, 5000, two32 + 5000, ErrReplay},
		{"A: Tl = W-1 exactly, Bl = 0", W, two32 + W - 1, 0, two32, nil},
		{"A: Tl = W-1, Seql max", W, two32 + W - 1, math.MaxUint32, 2*two32 - 1, nil},
		{"A: just before wrap, packet after wrap", W, two32 - 10, 5, two32 + 5, nil},
		{"A: just before wrap, zero after wrap is valid", W, two32 - 10, 0, two32, nil},
		{"A: just before wrap, packet before", W, two32 - 10, math.MaxUint32 - 20, two32 - 21, nil},
		{"A: just before wrap, Seql=2^32-1 ahead", W, two32 - 10, math.MaxUint32, two32 - 1, nil},
		{"A: Th+1 past 2^64", W, math.MaxUint64 - 10, 5, 0, ErrTooOld},
		{"A: top of 2^64, in window", W, math.MaxUint64 - 10, math.MaxUint32 - 20, math.MaxUint64 - 20, nil},

		// Case B: Tl < W-1, window spans subspaces Th-1 and Th.
		{"B: just after wrap, packet before wrap -> Th-1", W, two32 + 10, math.MaxUint32 - 4, two32 - 5, nil},
		{"B: Seql = Bl -> Th-1 at distance W-1", W, two32 + 10, uint32(two32 + 10 - W + 1), two32 + 10 - W + 1, nil},
		{"B: Seql = Bl-1 -> Th, far ahead", W, two32 + 10, uint32(two32 + 10 - W), 2*two32 + 10 - W, nil},
		{"B: packet after wrap", W, two32 + 10, 3, two32 + 3, nil},
		{"B: zero low bits after wrap", W, two32 + 10, 0, two32, nil},
		{"B: ahead", W, two32 + 10, 11, two32 + 11, nil},
		{"B: Tl = W-2", W, two32 + W - 2, math.MaxUint32, two32 - 1, nil},
		{"B: Tl = W-2, Seql = 2^32-2 -> Th", W, two32 + W - 2, math.MaxUint32 - 1, 2*two32 - 2, nil},
		{"B: Th = 0 -> Th-1 impossible", W, 10, math.MaxUint32 - 4, 0, ErrTooOld},
		{"B: second wrap", W, 7*two32 + 3, math.MaxUint32, 7*two32 - 1, nil},

		// Smallest and largest windows.
		{"64: A Bl-1 -> Th+1", 64, two32 + 100, 36, 2*two32 + 36, nil},
		{"64: A Bl", 64, two32 + 100, 37, two32 + 37, nil},
		{"64: B Th-1", 64, two32 + 62, math.MaxUint32, two32 - 1, nil},
		{"64: A Tl = 63", 64, two32 + 63, math.MaxUint32, 2*two32 - 1, nil},
		{"65536: B Th-1", MaxSize, two32 + 100, math.MaxUint32 - 60000, two32 - 60001, nil},
		{"65536: B Th", MaxSize, two32 + 100, math.MaxUint32 - 65436, 2*two32 - 65437, nil},

		// Disabled window: inference with a 2^31 window.
		{"off: Th-1 at distance 2^31-1", 0, two32 + 10, uint32(two31 + 11), two31 + 11, nil},
		{"off: Th at distance 2^31 ahead", 0, two32 + 10, uint32(two31 + 10), two32 + two31 + 10, nil},
		{"off: A Th", 0, two32 + two31 + 5, 7, two32 + 7, nil},
		{"off: A Th+1", 0, two32 + two31 + 5, 4, 2*two32 + 4, nil},
		{"off: zero", 0, 0, 0, 0, ErrZero},
		{"off: Th=0, Th-1 impossible", 0, 10, math.MaxUint32, 0, ErrTooOld},
		{"off: old duplicate accepted", 0, two32 + 5000, 4000, two32 + 4000, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := setHighest(t, tc.size, tc.T)
			seq, err := w.Check(tc.seql, true)
			if seq != tc.want || err != tc.err {
				t.Errorf("T=%#x Check(%#x, esn) = %#x, %s; want %#x, %s",
					tc.T, tc.seql, seq, errName(err), tc.want, errName(tc.err))
			}
			if w.Highest() != tc.T {
				t.Errorf("Check changed Highest to %#x", w.Highest())
			}
			// The reference formulation must agree.
			r := newRef(tc.size)
			r.highest = tc.T
			if tc.T != 0 {
				r.seen[tc.T] = struct{}{}
			}
			rseq, rerr := r.check(tc.seql, true)
			if rseq != tc.want || rerr != tc.err {
				t.Errorf("reference: %#x, %s", rseq, errName(rerr))
			}
		})
	}
}

// TestESNAcrossWrap sends the packets around the 2^32 boundary with bounded
// reordering and checks every inferred number, then replays some of them.
func TestESNAcrossWrap(t *testing.T) {
	for _, size := range []int{64, 1024} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			W := uint64(size)
			rng := rand.New(rand.NewPCG(1, uint64(size)))
			first, last := two32-3*W, two32+3*W
			order := make([]uint64, 0, last-first+1)
			for s := first; s <= last; s++ {
				order = append(order, s)
			}
			// Bounded displacement: shuffle inside chunks of W/2.
			chunk := int(W / 2)
			for i := 0; i < len(order); i += chunk {
				c := order[i:min(i+chunk, len(order))]
				rng.Shuffle(len(c), func(a, b int) { c[a], c[b] = c[b], c[a] })
			}
			w := setHighest(t, size, first-1)
			for _, s := range order {
				seq, err := w.Check(uint32(s), true)
				if err != nil || seq != s {
					t.Fatalf("Check(%#x) = %#x, %v (highest %#x)", uint32(s), seq, err, w.Highest())
				}
				if err := w.Accept(seq); err != nil {
					t.Fatalf("Accept(%#x) = %v", seq, err)
				}
				// A replay of a packet just accepted is inferred to the
				// same number and rejected.
				if seq2, err := w.Check(uint32(s), true); seq2 != s || err != ErrReplay {
					t.Fatalf("replay of %#x: %#x, %v", s, seq2, err)
				}
			}
			if w.Highest() != last {
				t.Fatalf("Highest() = %#x, want %#x", w.Highest(), last)
			}
			// Everything inside the window is a replay.
			for s := last - W + 1; s <= last; s++ {
				if seq, err := w.Check(uint32(s), true); seq != s || err != ErrReplay {
					t.Fatalf("late replay of %#x: %#x, %v", s, seq, err)
				}
			}
			// A packet older than the window is inferred into the next
			// subspace (RFC 4303 A2.2 case A); its ICV would then fail.
			old := last - W
			if seq, err := w.Check(uint32(old), true); seq != old+two32 || err != nil {
				t.Fatalf("old packet %#x: %#x, %v", old, seq, err)
			}
		})
	}
}

// TestESNStraddlingWindow places T just after the wrap so the window holds
// packets from both subspaces, and replays each of them.
func TestESNStraddlingWindow(t *testing.T) {
	const W = 1024
	w := newWindow(t, W)
	for s := two32 - 600; s <= two32+400; s++ {
		if err := w.Accept(s); err != nil {
			t.Fatal(err)
		}
	}
	for s := two32 - 600; s <= two32+400; s++ {
		seq, err := w.Check(uint32(s), true)
		if seq != s || err != ErrReplay {
			t.Fatalf("seq %#x: %#x, %s", s, seq, errName(err))
		}
	}
	// Missing packets just inside the left edge, from subspace 0.
	for s := two32 + 400 - W + 1; s < two32-600; s++ {
		seq, err := w.Check(uint32(s), true)
		if seq != s || err != nil {
			t.Fatalf("seq %#x: %#x, %s", s, seq, errName(err))
		}
	}
}
