package esp

import (
	"encoding/binary"
	"errors"
	"testing"
)

// TestReserveSeq checks that ReserveSeq hands out consecutive numbers that
// the *At functions seal with (the receiver opens them), that it stops at
// the end of the sequence space with what is left, and that the plain
// functions go on after a reservation.
func TestReserveSeq(t *testing.T) {
	for _, tc := range []struct {
		name       string
		esn        bool
		last       uint64 // the counter before the reservation
		n, wantGot int
	}{
		{"fresh", false, 0, 8, 8},
		{"partial at 2^32", false, 1<<32 - 4, 8, 3},
		{"exhausted", false, 1<<32 - 1, 8, 0},
		{"ESN past 2^32", true, 1<<32 - 2, 8, 8},
		{"ESN partial at 2^64", true, ^uint64(0) - 2, 5, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, in := newPair(t, suite{"aes128gcm16", ""}, tc.esn, 0)
			out.seq.Store(tc.last)
			first, got, err := out.ReserveSeq(tc.n)
			if got != tc.wantGot || (got < tc.n) != errors.Is(err, ErrSeqOverflow) {
				t.Fatalf("got %d numbers, err %v; want %d", got, err, tc.wantGot)
			}
			if got > 0 && first != tc.last+1 {
				t.Fatalf("first %d, want %d", first, tc.last+1)
			}
			if got < tc.n {
				// Nothing left: the plain Seal fails too.
				buf, off, end := bufWith([]byte("x"))
				if _, _, err := out.Seal(buf, off, end, 4); !errors.Is(err, ErrSeqOverflow) {
					t.Fatalf("Seal after the space ran out: %v", err)
				}
			}
			for i := range got {
				seq := first + uint64(i)
				buf, off, end := bufWith([]byte("payload"))
				s, e, err := out.SealAt(buf, off, end, 4, seq)
				if err != nil {
					t.Fatal(err)
				}
				if w := binary.BigEndian.Uint32(buf[s+4:]); w != uint32(seq) {
					t.Fatalf("packet %d: sequence field %d, want %d", i, w, uint32(seq))
				}
				if !tc.esn {
					if _, _, _, gotSeq, err := in.Open(buf, s, e); err != nil || gotSeq != seq {
						t.Fatalf("packet %d: open seq %d, %v", i, gotSeq, err)
					}
				}
			}
			if tc.wantGot == tc.n {
				buf, off, end := bufWith([]byte("next"))
				s, _, err := out.Seal(buf, off, end, 4)
				if err != nil {
					t.Fatal(err)
				}
				if w := binary.BigEndian.Uint32(buf[s+4:]); w != uint32(first+uint64(got)) {
					t.Fatalf("Seal after the reservation used %d, want %d", w, uint32(first+uint64(got)))
				}
			}
		})
	}
}
