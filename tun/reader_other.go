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
