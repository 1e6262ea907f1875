package tun

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

// CreateNetstack makes a userspace network stack (gVisor) with the given
// local addresses and MTU: the Device carries its packets (one per Read),
// the Net dials and listens on it. It needs no privileges.
func CreateNetstack(addrs []netip.Addr, mtu int) (Device, *netstack.Net, error) {
	return netstack.CreateNetTUN(addrs, nil, mtu)
}
