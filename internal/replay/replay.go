// Package replay implements the receiver anti-replay window of ESP and AH
// (RFC 4303 section 3.4.3 and Appendix A, RFC 4302 section 3.4.3), with 32-bit
// and Extended (64-bit) Sequence Numbers.
//
// A receiver calls Check with the sequence number field of a packet before
// verifying its ICV; Check infers the full 64-bit sequence number (needed for
// the ICV when ESN is on) and rejects replays and packets left of the window
// without changing any state. Only after the ICV has verified does the
// receiver call Accept, which records the packet and slides the window.
//
// The bitmap follows RFC 6479: a ring of 64-bit words, never shifted. Each
// word covers 8 sequence numbers (a block): its low byte is the bitmap and
// the rest the block's tag, the block number without the bits that the
// word's place in the ring already gives (so tags are exact for all 2^64
// sequence numbers). A word whose tag is not that of the block asked about
// holds an older block, stale and free to take over: so the window slides
// without clearing anything. Window sizes are rounded up to a multiple of 64
// packets; the ring holds at least one block more than the window (and at
// least 32 words), so every packet inside the window always has a live
// word: 2 KiB for the default window, 128 KiB for MaxSize.
//
// Check and Accept take no lock: Check is two atomic loads, Accept one
// compare-and-swap on the packet's word, and one more on the highest
// sequence number when the packet moves it forward. Accept raises the
// highest sequence number before it takes over a word, and every check
// reads the word before the highest number, so a word can only be taken
// over by a block whose packets are inside the window, from a block whose
// packets are out of it: a replay never passes, however the goroutines
// interleave.
//
// Size 0 disables anti-replay: every nonzero sequence number passes, but the
// highest accepted one is still tracked so ESN high-order bits can be
// inferred, using a 2^31-packet window in place of W. A Window serves one SA
// and must be used with a fixed choice of 32-bit or ESN sequence numbers.
//
// Check, Accept, Highest and Size are safe for concurrent use and do not
// allocate; Init must not run concurrently with them.
package replay

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

const (
	// DefaultSize is the window size, in packets, used when none is configured.
	DefaultSize = 1024
	// MaxSize is the largest window size, in packets, that Init accepts.
	MaxSize = 65536
)

// disabledInferWindow is the window width used for ESN high-bit inference
// (RFC 4303 Appendix A2.2) when anti-replay is disabled: the received low 32
// bits are taken to be at most 2^31-1 behind or 2^31 ahead of the highest
// authenticated sequence number.
const disabledInferWindow = 1 << 31

// Errors returned by Check and Accept; test for them with errors.Is.
var (
	// ErrReplay reports a sequence number inside the window that was already accepted.
	ErrReplay = errors.New("replay: duplicate sequence number")
	// ErrTooOld reports a sequence number left of (older than) the window, or
	// one whose ESN high-order bits cannot be represented.
	ErrTooOld = errors.New("replay: sequence number too old")
	// ErrZero reports the sequence number 0, which is never sent.
	ErrZero = errors.New("replay: zero sequence number")
	// ErrUninitialized reports use of a Window on which Init has not been called.
	ErrUninitialized = errors.New("replay: window not initialized")
	// ErrInvalidSize reports a window size outside 0..MaxSize given to Init.
	ErrInvalidSize = errors.New("replay: invalid window size")
)

// Window is the anti-replay state of one inbound SA. The zero value is
// unusable (Check and Accept return ErrUninitialized) until Init is called.
// A Window must not be copied after first use.
type Window struct {
	size   uint64          // window width in packets (multiple of 64); 0 = disabled
	mask   uint64          // len(ring)-1; len(ring) is a power of two
	shift  uint            // log2(len(ring))
	ring   []atomic.Uint64 // block b in ring[b&mask]: b>>shift<<8 | bitmap
	inited bool
	// highest is written by the packets that move the window on: on a
	// cache line of its own, apart from the read-only fields above.
	_       [64]byte
	highest atomic.Uint64 // highest accepted sequence number; 0 before the first
	_       [56]byte
}

const (
	// blockShift is log2 of the sequence numbers per ring word.
	blockShift = 3
	// minWords keeps tags exact: 64-blockShift-log2(minWords) bits fit
	// above the bitmap byte.
	minWords = 32
	bitsMask = 1<<(1<<blockShift) - 1
)

// Init resets w to an empty window of the given size in packets: 0 disables
// anti-replay, 1..MaxSize is rounded up to a multiple of 64. Init allocates
// the bitmap (reusing a previous one if large enough) and returns an error
// wrapping ErrInvalidSize if size is negative or above MaxSize. It must not
// run concurrently with the other methods.
func (w *Window) Init(size int) error {
	if size < 0 || size > MaxSize {
		return fmt.Errorf("%w: %d (want 0..%d)", ErrInvalidSize, size, MaxSize)
	}
	w.highest.Store(0)
	w.inited = true
	if size == 0 {
		w.size, w.mask, w.ring = 0, 0, nil
		return nil
	}
	width := (uint64(size) + 63) &^ 63
	// One block more than the window needs, rounded to a power of two so
	// the ring index is a mask. An all-zero word is an empty block.
	words, shift := uint64(minWords), uint(5)
	for words < width>>blockShift+1 {
		words <<= 1
		shift++
	}
	if uint64(cap(w.ring)) >= words {
		w.ring = w.ring[:words]
		for i := range w.ring {
			w.ring[i].Store(0)
		}
	} else {
		w.ring = make([]atomic.Uint64, words)
	}
	w.size, w.mask, w.shift = width, words-1, shift
	return nil
}

// Check returns the full sequence number of a received packet whose sequence
// number field is seqLow (the low 32 bits when esn is true, inferred as in
// RFC 4303 Appendix A2.2) and whether it passes the anti-replay check,
// without changing w. Call it before verifying the ICV.
//
// On error, seq is the inferred sequence number, or 0 if none can be
// inferred (ErrTooOld). With anti-replay disabled, only ErrZero and the
// uninferable ESN case are reported.
func (w *Window) Check(seqLow uint32, esn bool) (seq uint64, err error) {
	if !w.inited {
		return 0, ErrUninitialized
	}
	seq = uint64(seqLow)
	if esn {
		if seq, err = w.infer(seqLow, w.highest.Load()); err != nil {
			return seq, err
		}
	}
	return seq, w.verdict(seq)
}

// Accept records seq as received; call it only after the packet's ICV has
// verified. It re-runs the anti-replay check (another goroutine may have
// accepted seq since Check) and returns ErrReplay, ErrTooOld or ErrZero
// without recording anything if seq fails it. A seq above Highest slides the
// window forward.
func (w *Window) Accept(seq uint64) error {
	if !w.inited {
		return ErrUninitialized
	}
	if seq == 0 {
		return ErrZero
	}
	if w.size == 0 {
		w.raise(seq)
		return nil
	}
	h := w.highest.Load()
	if seq <= h {
		if h-seq >= w.size {
			return ErrTooOld
		}
	} else {
		// Raise first: whoever reads the word after this takeover reads
		// the new highest too (see the package comment).
		if !w.highest.CompareAndSwap(h, seq) {
			w.raise(seq)
		}
	}
	blk := seq >> blockShift
	tag := blk >> w.shift << 8
	bit := uint64(1) << (seq & (1<<blockShift - 1))
	word := &w.ring[blk&w.mask]
	for {
		old := word.Load()
		if h := w.highest.Load(); seq <= h && h-seq >= w.size {
			return ErrTooOld
		}
		nw := tag | bit // an older block's word: take it over
		if old&^bitsMask == tag {
			if old&bit != 0 {
				return ErrReplay
			}
			nw = old | bit
		}
		if word.CompareAndSwap(old, nw) {
			return nil
		}
	}
}

// raise makes seq the highest sequence number if it is higher.
func (w *Window) raise(seq uint64) {
	for {
		h := w.highest.Load()
		if seq <= h || w.highest.CompareAndSwap(h, seq) {
			return
		}
	}
}

// Highest returns the highest sequence number accepted so far, 0 if none.
func (w *Window) Highest() uint64 { return w.highest.Load() }

// Size returns the effective window size in packets (a multiple of 64), or 0
// if anti-replay is disabled or w is not initialized.
func (w *Window) Size() int { return int(w.size) }

// infer applies RFC 4303 Appendix A2.2 with W = the window size (or
// disabledInferWindow) and T = highest. A result below 0 (Th-1 with Th = 0)
// or above 2^64-1 (Th+1 with Th = 2^32-1) cannot exist and is reported as
// ErrTooOld.
func (w *Window) infer(seql uint32, highest uint64) (uint64, error) {
	width := w.size
	if width == 0 {
		width = disabledInferWindow
	}
	th := highest >> 32
	tl := uint32(highest)
	bl := tl - uint32(width-1) // Bl = Tl - W + 1 (mod 2^32)
	var sh uint64
	if uint64(tl) >= width-1 {
		// Case A: the window lies within one 2^32 subspace.
		if seql >= bl {
			sh = th
		} else {
			if th == math.MaxUint32 {
				return 0, ErrTooOld
			}
			sh = th + 1
		}
	} else {
		// Case B: the window spans subspaces Th-1 and Th.
		if seql >= bl {
			if th == 0 {
				return 0, ErrTooOld
			}
			sh = th - 1
		} else {
			sh = th
		}
	}
	return sh<<32 | uint64(seql), nil
}

// verdict is the anti-replay test of RFC 4303 section 3.4.3 for a full
// sequence number. It reads the word before the highest number (see the
// package comment): a word of another block is then an older one.
func (w *Window) verdict(seq uint64) error {
	if seq == 0 {
		return ErrZero
	}
	if w.size == 0 {
		return nil
	}
	blk := seq >> blockShift
	word := w.ring[blk&w.mask].Load()
	if h := w.highest.Load(); seq <= h && h-seq >= w.size {
		return ErrTooOld
	}
	if word>>8 == blk>>w.shift && word&(1<<(seq&(1<<blockShift-1))) != 0 {
		return ErrReplay
	}
	return nil
}
