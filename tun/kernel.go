//go:build linux || darwin || windows || freebsd || openbsd

package tun

import wgtun "golang.zx2c4.com/wireguard/tun"

// CreateKernel creates (or, on Linux, attaches to) the kernel TUN device
// name with the given MTU, with wireguard-go's offloads where the system
// has them (Linux: TSO/USO, so a Read may return up to IdealBatchSize
// packets and Write needs MinWriteOffset; its Write returns a byte count,
// not a packet count, so look only at the error). The link is not brought
// up: see Configure.
func CreateKernel(name string, mtu int) (Device, error) {
	return wgtun.CreateTUN(name, mtu)
}
