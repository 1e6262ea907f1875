//go:build !(linux || darwin || windows || freebsd || openbsd)

package tun

// CreateKernel reports ErrNotSupported: this system has no TUN driver that
// wireguard-go supports.
func CreateKernel(name string, mtu int) (Device, error) {
	return nil, ErrNotSupported
}
