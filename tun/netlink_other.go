//go:build !linux

package tun

import "net/netip"

// Link configures one network interface: Linux only; elsewhere every
// method reports ErrNotSupported.
type Link struct{}

// OpenLink reports ErrNotSupported on this system.
func OpenLink(name string) (*Link, error) { return nil, ErrNotSupported }

// Close does nothing on this system.
func (l *Link) Close() error { return nil }

// Index returns 0 on this system.
func (l *Link) Index() int { return 0 }

// Name returns "" on this system.
func (l *Link) Name() string { return "" }

// Up reports ErrNotSupported on this system.
func (l *Link) Up() (Undo, error) { return nil, ErrNotSupported }

// SetMTU reports ErrNotSupported on this system.
func (l *Link) SetMTU(mtu int) (Undo, error) { return nil, ErrNotSupported }

// SetTxQueueLen reports ErrNotSupported on this system.
func (l *Link) SetTxQueueLen(n int) (Undo, error) { return nil, ErrNotSupported }

// AddAddress reports ErrNotSupported on this system.
func (l *Link) AddAddress(p netip.Prefix) (Undo, error) { return nil, ErrNotSupported }

// AddRoute reports ErrNotSupported on this system.
func (l *Link) AddRoute(dst netip.Prefix, table uint32) (Undo, error) {
	return nil, ErrNotSupported
}

// AddPolicyRouting reports ErrNotSupported on this system.
func (l *Link) AddPolicyRouting(pr PolicyRouting) (Undo, error) { return nil, ErrNotSupported }

// AddFailClosed is not supported on this system.
func (l *Link) AddFailClosed(dst netip.Prefix, table uint32) (Undo, error) {
	return nil, ErrNotSupported
}

// Configure reports ErrNotSupported on this system.
func Configure(name string, cfg Config) (Undo, error) { return nil, ErrNotSupported }
