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
// The bitmap follows RFC 6479: a ring of 64-bit words, slid forward by
// clearing whole words, never by shifting the map. Window sizes are rounded
// up to a multiple of 64 packets; the ring holds at least one word more than
// the window, so every packet inside the window always has a live bit.
//
// Size 0 disables anti-replay: every nonzero sequence number passes, but the
// highest accepted one is still tracked so ESN high-order bits can be
// inferred, using a 2^31-packet window in place of W. A Window serves one SA
// and must be used with a fixed choice of 32-bit or ESN sequence numbers.
//
// A Window is safe for concurrent use; each Window has its own mutex, and
// Check and Accept do not allocate.
package replay

import (
	"errors"
	"fmt"
	"math"
	"sync"
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
	mu      sync.Mutex
	highest uint64   // highest accepted sequence number; 0 before the first
	size    uint64   // window width in packets (multiple of 64); 0 = disabled
	mask    uint64   // len(ring)-1; len(ring) is a power of two
	ring    []uint64 // bit (s & 63) of ring[(s>>6)&mask] set = s accepted
	inited  bool
}

// Init resets w to an empty window of the given size in packets: 0 disables
// anti-replay, 1..MaxSize is rounded up to a multiple of 64. Init allocates
// the bitmap (reusing a previous one if large enough) and returns an error
// wrapping ErrInvalidSize if size is negative or above MaxSize.
func (w *Window) Init(size int) error {
	if size < 0 || size > MaxSize {
		return fmt.Errorf("%w: %d (want 0..%d)", ErrInvalidSize, size, MaxSize)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.highest = 0
	w.inited = true
	if size == 0 {
		w.size, w.mask, w.ring = 0, 0, nil
		return nil
	}
	width := (uint64(size) + 63) &^ 63
	// One word more than the window needs, rounded to a power of two so the
	// ring index is a mask.
	words := uint64(1)
	for words < width/64+1 {
		words <<= 1
	}
	if uint64(cap(w.ring)) >= words {
		w.ring = w.ring[:words]
		clear(w.ring)
	} else {
		w.ring = make([]uint64, words)
	}
	w.size, w.mask = width, words-1
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
	w.mu.Lock()
	if !w.inited {
		w.mu.Unlock()
		return 0, ErrUninitialized
	}
	seq = uint64(seqLow)
	if esn {
		seq, err = w.inferLocked(seqLow)
	}
	if err == nil {
		err = w.checkLocked(seq)
	}
	w.mu.Unlock()
	return seq, err
}

// Accept records seq as received; call it only after the packet's ICV has
// verified. It re-runs the anti-replay check (another goroutine may have
// accepted seq since Check) and returns ErrReplay, ErrTooOld or ErrZero
// without recording anything if seq fails it. A seq above Highest slides the
// window forward.
func (w *Window) Accept(seq uint64) error {
	w.mu.Lock()
	if !w.inited {
		w.mu.Unlock()
		return ErrUninitialized
	}
	if err := w.checkLocked(seq); err != nil {
		w.mu.Unlock()
		return err
	}
	if seq > w.highest {
		if w.size != 0 {
			w.slideLocked(seq)
		}
		w.highest = seq
	}
	if w.size != 0 {
		w.ring[(seq>>6)&w.mask] |= 1 << (seq & 63)
	}
	w.mu.Unlock()
	return nil
}

// Highest returns the highest sequence number accepted so far, 0 if none.
func (w *Window) Highest() uint64 {
	w.mu.Lock()
	h := w.highest
	w.mu.Unlock()
	return h
}

// Size returns the effective window size in packets (a multiple of 64), or 0
// if anti-replay is disabled or w is not initialized.
func (w *Window) Size() int {
	w.mu.Lock()
	s := w.size
	w.mu.Unlock()
	return int(s)
}

// inferLocked applies RFC 4303 Appendix A2.2 with W = the window size (or
// disabledInferWindow) and T = w.highest. A result below 0 (Th-1 with Th = 0)
// or above 2^64-1 (Th+1 with Th = 2^32-1) cannot exist and is reported as
// ErrTooOld.
func (w *Window) inferLocked(seql uint32) (uint64, error) {
	width := w.size
	if width == 0 {
		width = disabledInferWindow
	}
	th := w.highest >> 32
	tl := uint32(w.highest)
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

// checkLocked is the anti-replay test of RFC 4303 section 3.4.3 for a full
// sequence number.
func (w *Window) checkLocked(seq uint64) error {
	if seq == 0 {
		return ErrZero
	}
	if w.size == 0 || seq > w.highest {
		return nil
	}
	if w.highest-seq >= w.size {
		return ErrTooOld
	}
	if w.ring[(seq>>6)&w.mask]&(1<<(seq&63)) != 0 {
		return ErrReplay
	}
	return nil
}

// slideLocked advances the window so seq (> w.highest) becomes its right
// edge: every ring word between the old and the new right-edge word is
// cleared (all of them if the jump is at least the ring length).
func (w *Window) slideLocked(seq uint64) {
	oldWord := w.highest >> 6
	newWord := seq >> 6
	n := newWord - oldWord
	if n > w.mask {
		clear(w.ring)
		return
	}
	for i := oldWord + 1; i <= newWord; i++ {
		w.ring[i&w.mask] = 0
	}
}
