// Package tun is the cleartext side: a real TUN device, the userspace
// network stack, and an in-memory pair for tests.
//
// All three are a Device (golang.zx2c4.com/wireguard/tun's batch
// interface), which is what the dataplane reads clear packets from and
// writes them to:
//
//   - CreateKernel opens a kernel TUN device (Linux, macOS, Windows, FreeBSD,
//     OpenBSD); on Linux, Configure (or the Link methods) gives it its
//     addresses, MTU, routes and, for host-to-host links that protect the
//     peer's own address, a wg-quick style policy-routing setup, each step
//     with an exact undo.
//   - CreateNetstack makes a gVisor userspace stack (no privileges) with
//     helpers for the unprivileged mode: a SOCKS5 proxy, port forwards into
//     the tunnel, and local services exposed on the tunnel.
//   - NewPair makes two connected in-memory devices for tests.
//
// On Linux, a datapath in a hurry reads and writes a kernel TUN through a
// Reader and a Writer instead of the device's Read and Write: the Reader
// can try a read without waiting (to gather queued packets into one batch)
// and cuts TCP/UDP super-packets into packets as the device's Read does;
// the Writer coalesces runs of TCP segments and UDP datagrams into
// super-packets with writev, copying no payload. Both make raw system
// calls on the non-blocking device.
package tun
