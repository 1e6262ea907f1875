//go:build !linux

package tun

// Reader is Linux only: NewReader returns nil elsewhere, and callers use
// Device.Read.
type Reader struct{}

// NewReader returns nil: this system has no Reader.
func NewReader(dev Device) *Reader { return nil }

// Read is never called on a nil Reader; it reports ErrNotSupported.
func (r *Reader) Read(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	return 0, ErrNotSupported
}

// ReadSuper is never called on a nil Reader; it reports ErrNotSupported.
func (r *Reader) ReadSuper(bufs [][]byte, sizes []int, offset int, wait bool) (int, *Super, error) {
	return 0, nil, ErrNotSupported
}

// Super is Linux only (a super-packet from a Reader); there is none here.
type Super struct{}

// Packet returns nil.
func (s *Super) Packet() []byte { return nil }

// Segments returns 0.
func (s *Super) Segments() int { return 0 }

// SegmentLen returns 0.
func (s *Super) SegmentLen(i int) int { return 0 }

// WriteSegment writes nothing.
func (s *Super) WriteSegment(i int, dst []byte) int { return 0 }

// Done does nothing.
func (s *Super) Done() {}

// SuperTail is the room SegmentInPlace needs after a super-packet.
const SuperTail = 32

// InPlace reports false.
func (s *Super) InPlace() bool { return false }

// SegmentInPlace returns nil.
func (s *Super) SegmentInPlace(i int) []byte { return nil }
