package replay

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// ref is an obviously-correct anti-replay window: a set of every accepted
// sequence number and the highest one. Its ESN inference is written
// differently from RFC 4303 A2.2's two cases: the result is the unique
// number congruent to Seql (mod 2^32) in [T-W+1, T-W+1+2^32).
type ref struct {
	size    uint64 // rounded window size, 0 = disabled
	highest uint64
	seen    map[uint64]struct{}
}

func newRef(size int) *ref {
	return &ref{size: (uint64(size) + 63) &^ 63, seen: make(map[uint64]struct{})}
}

func (r *ref) infer(seql uint32) (uint64, error) {
	W := r.size
	if W == 0 {
		W = 1 << 31
	}
	T := r.highest
	left := uint32(T - (W - 1))        // low bits of T-W+1 (mod 2^64 is fine)
	d := int64(seql-left) - int64(W-1) // candidate - T, in [-(W-1), 2^32-W]
	if d < 0 && uint64(-d) > T || d > 0 && uint64(d) > math.MaxUint64-T {
		return 0, ErrTooOld // outside 0..2^64-1
	}
	return T + uint64(d), nil
}

func (r *ref) verdict(seq uint64) error {
	if seq == 0 {
		return ErrZero
	}
	if r.size == 0 {
		return nil
	}
	if seq <= r.highest && r.highest-seq >= r.size {
		return ErrTooOld
	}
	if _, ok := r.seen[seq]; ok {
		return ErrReplay
	}
	return nil
}

func (r *ref) check(seql uint32, esn bool) (uint64, error) {
	seq := uint64(seql)
	if esn {
		var err error
		if seq, err = r.infer(seql); err != nil {
			return seq, err
		}
	}
	return seq, r.verdict(seq)
}

func (r *ref) accept(seq uint64) error {
	if err := r.verdict(seq); err != nil {
		return err
	}
	if r.size != 0 {
		r.seen[seq] = struct{}{}
	}
	r.highest = max(r.highest, seq)
	return nil
}

// prune drops set entries that can no longer matter.
func (r *ref) prune() {
	for s := range r.seen {
		if r.highest-s >= r.size {
			delete(r.seen, s)
		}
	}
}

// pair drives a Window and a ref in lockstep and reports divergences.
type pair struct {
	t   testing.TB
	w   *Window
	r   *ref
	esn bool
	ops int
}

func newPair(t testing.TB, size int, esn bool) *pair {
	return &pair{t: t, w: newWindow(t, size), r: newRef(size), esn: esn}
}

func (p *pair) check(seql uint32) (uint64, error) {
	p.t.Helper()
	p.ops++
	seq, err := p.w.Check(seql, p.esn)
	rseq, rerr := p.r.check(seql, p.esn)
	if seq != rseq || err != rerr {
		p.t.Fatalf("op %d: W=%d highest=%#x esn=%v Check(%#x) = %#x, %s; reference %#x, %s",
			p.ops, p.r.size, p.r.highest, p.esn, seql, seq, errName(err), rseq, errName(rerr))
	}
	return seq, err
}

func (p *pair) accept(seq uint64) error {
	p.t.Helper()
	p.ops++
	before := p.r.highest
	err := p.w.Accept(seq)
	rerr := p.r.accept(seq)
	if err != rerr {
		p.t.Fatalf("op %d: W=%d highest=%#x Accept(%#x) = %s; reference %s",
			p.ops, p.r.size, before, seq, errName(err), errName(rerr))
	}
	if h := p.w.Highest(); h != p.r.highest {
		p.t.Fatalf("op %d: Highest() = %#x; reference %#x", p.ops, h, p.r.highest)
	}
	return err
}

// compareState checks the verdict on every sequence number from a little
// left of the window to a little right of it.
func (p *pair) compareState() {
	p.t.Helper()
	T := p.r.highest
	span := p.r.size + 130
	lo := uint64(1)
	if T > span {
		lo = T - span
	}
	hi := T + 3
	if hi < T {
		hi = math.MaxUint64
	}
	for s := lo; ; s++ {
		err := p.w.verdict(s)
		if rerr := p.r.verdict(s); err != rerr {
			p.t.Fatalf("state: W=%d highest=%#x seq %#x: %s; reference %s",
				p.r.size, T, s, errName(err), errName(rerr))
		}
		if s == hi {
			break
		}
	}
}

// nextDelta draws an offset from the current highest that exercises the
// window edges, reordering, duplicates and jumps.
func nextDelta(rng *rand.Rand, W uint64) int64 {
	w := int64(W)
	if w == 0 {
		w = 1024
	}
	switch k := rng.IntN(100); {
	case k < 35: // next in order, or a few ahead
		return 1 + rng.Int64N(4)
	case k < 70: // reordered or duplicate inside the window
		return -rng.Int64N(w)
	case k < 80: // around the left edge
		return -w + 3 - rng.Int64N(6)
	case k < 88: // jump ahead by up to two windows
		return rng.Int64N(2*w + 130)
	case k < 92: // far jump
		return rng.Int64N(1 << 34)
	case k < 96: // far behind
		return -rng.Int64N(1 << 34)
	default: // around Bl: the ESN subspace boundary
		return -w + 1 - rng.Int64N(3) + int64(rng.IntN(2))<<32
	}
}

func TestDifferential(t *testing.T) {
	starts := []uint64{0, 1, 1000, two32 - 5000, two32 - 70, two32, 5*two32 - 300, math.MaxUint64 - 1<<20}
	for _, size := range []int{0, 1, 64, 100, 1000, DefaultSize, 4096, MaxSize} {
		for _, esn := range []bool{false, true} {
			for si, start := range starts {
				if !esn && start >= two32 {
					continue
				}
				seed := uint64(si) << 1
				if esn {
					seed |= 1
				}
				rng := rand.New(rand.NewPCG(uint64(size), seed))
				p := newPair(t, size, esn)
				if start != 0 {
					p.accept(start)
				}
				ops := 20000
				if testing.Short() {
					ops = 2000
				}
				for i := 0; i < ops; i++ {
					d := nextDelta(rng, p.r.size)
					cand := p.r.highest + uint64(d)
					if !esn && (cand == 0 || cand >= two32 || d < 0 && uint64(-d) > p.r.highest) {
						cand = uint64(rng.Uint32())
					}
					seq, err := p.check(uint32(cand))
					switch {
					case err == nil && rng.IntN(10) < 8:
						// ICV verified: accept, sometimes twice as a
						// racing goroutine would.
						p.accept(seq)
						if rng.IntN(20) == 0 {
							p.accept(seq)
						}
					case rng.IntN(10) == 0:
						// Accept without Check exercises its re-check.
						p.accept(cand)
					}
					if i%2500 == 0 {
						p.compareState()
						p.r.prune()
					}
				}
				p.compareState()
			}
		}
	}
}

// FuzzWindow drives a Window and the reference model with a sequence of
// operations decoded from the fuzz input and compares every result.
//
// size picks one of a few interesting window sizes, or with its top bit set
// any size up to MaxSize; a nonzero start is accepted first.
// ops is read 3 bytes at a time: a flag byte and a little-endian int16
// offset from the current highest sequence number. Flags: bit 0 accept the
// checked number, bit 1 scale the offset by W/64, bit 2 shift it left 16,
// bit 3 call Accept directly on highest+offset, bit 4 add 2^32 to the offset.
func FuzzWindow(f *testing.F) {
	le := func(ops ...int) []byte {
		var b []byte
		for i := 0; i+1 < len(ops); i += 2 {
			b = append(b, byte(ops[i]))
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(ops[i+1])))
		}
		return b
	}
	f.Add(uint32(6), true, uint64(0), le(1, 1, 1, 1, 1, 1, 1, -1, 1, 2, 0, -2))
	f.Add(uint32(2), true, two32-10, le(1, 3, 1, 8, 1, 12, 1, -5, 1, -63, 1, -64, 0, -62))
	f.Add(uint32(2), false, uint64(100), le(1, -63, 1, -64, 3, -64, 3, -63, 1, 200, 1, 1))
	f.Add(uint32(5), true, two32+5, le(1, -6, 1, -1023, 1, -1024, 3, -20, 5, 1, 1, 1))
	f.Add(uint32(0), true, two32+10, le(1, -100, 1, 100, 0x11, -100, 5, 0x7fff, 1, -1))
	f.Add(uint32(7), true, 3*two32, le(5, 1, 1, -30000, 3, -32768, 0x10, 5, 8, 0))
	f.Add(uint32(3), true, uint64(math.MaxUint64-50), le(1, 10, 1, -5, 0x10, 1, 1, 40))
	f.Add(uint32(0x80000000|4096), false, uint64(1), le(5, 3, 1, -1, 3, -4096, 1, 5))

	f.Fuzz(func(t *testing.T, size uint32, esn bool, start uint64, ops []byte) {
		// Mostly the interesting sizes, sometimes any size.
		sizes := [...]int{0, 1, 64, 100, 128, 1000, DefaultSize, MaxSize}
		sz := sizes[size%uint32(len(sizes))]
		if size&0x80000000 != 0 {
			sz = int(size % (MaxSize + 1))
		}
		if len(ops) > 3*4096 {
			ops = ops[:3*4096]
		}
		p := newPair(t, sz, esn)
		if start != 0 {
			p.accept(start)
		}
		step := max(p.r.size/64, 1)
		for ; len(ops) >= 3; ops = ops[3:] {
			flags := ops[0]
			d := int64(int16(binary.LittleEndian.Uint16(ops[1:])))
			if flags&2 != 0 {
				d *= int64(step)
			}
			if flags&4 != 0 {
				d <<= 16
			}
			if flags&0x10 != 0 {
				d += 1 << 32
			}
			cand := p.r.highest + uint64(d)
			if flags&8 != 0 {
				p.accept(cand)
				continue
			}
			seq, err := p.check(uint32(cand))
			if err == nil && flags&1 != 0 {
				p.accept(seq)
			}
		}
		p.compareState()
	})
}
