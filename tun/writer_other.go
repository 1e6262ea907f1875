//go:build !linux

package tun

// Writer is Linux only: NewWriter returns nil elsewhere, and callers use
// Device.Write.
type Writer struct{}

// NewWriter returns nil: this system has no Writer.
func NewWriter(dev Device) *Writer { return nil }

// Write is never called on a nil Writer; it reports ErrNotSupported.
func (w *Writer) Write(bufs [][]byte, offset int) (int, error) {
	return 0, ErrNotSupported
}

// SetAuthenticated does nothing: there is no Writer here.
func (w *Writer) SetAuthenticated(on bool) {}
