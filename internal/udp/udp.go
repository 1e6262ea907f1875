// Package udp is the ciphertext side's socket: ESP in UDP (RFC 3948) on the
// NAT-T port, shared with IKE through the non-ESP marker.
//
// A Conn is one UDP socket. Listening on a wildcard address with network
// "udp" gives one dual-stack (IPv6 with IPv4-mapped addresses) socket that
// serves IPv4 and IPv6 peers alike; "udp4" and "udp6", or a specific local
// address, give a single-family socket. Addresses reported by a Conn are
// always plain (IPv4 peers as 4-byte addresses, never ::ffff:a.b.c.d).
//
// On Linux, ReadBatch and WriteBatch move up to BatchSize datagrams per
// system call (recvmmsg/sendmmsg) through Go's netpoller and allocate
// nothing; elsewhere they move one datagram per system call, also without
// allocating. On Linux, WriteBatch also hands runs of equal-size datagrams
// to the same peer to the kernel as one segmented send (UDP GSO), and
// EnableGRO lets the kernel coalesce received datagrams (UDP GRO): one
// trip through the network stack for up to 64 datagrams each way.
package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// DefaultPort is the NAT-T port (RFC 3948), used when an address has none.
const DefaultPort = 4500

// DefaultBufferSize is the socket receive and send buffer size asked for
// when Options leave it zero.
const DefaultBufferSize = 7 << 20

// DefaultBatchSize is the number of datagrams one ReadBatch or WriteBatch
// system call moves at most when Options leave it zero.
const DefaultBatchSize = 128

// MaxBatchSize is the largest batch one system call takes (Linux
// UIO_MAXIOV).
const MaxBatchSize = 1024

// Options tune a Conn. The zero value is a good default.
type Options struct {
	// Mark is the firewall mark (Linux SO_MARK) set on every packet the
	// socket sends, so that policy routing can let them bypass the tunnel;
	// 0 sets none. Non-zero is an error on other systems.
	Mark uint32
	// RecvBuffer and SendBuffer are the socket buffer sizes asked for, in
	// bytes; 0 means DefaultBufferSize, negative leaves the system default.
	RecvBuffer, SendBuffer int
	// BatchSize is the most datagrams moved per system call; 0 means
	// DefaultBatchSize, and it is capped at MaxBatchSize.
	BatchSize int
	// DisableGSO keeps WriteBatch from handing runs of equal-size
	// datagrams to the kernel as one segmented send (Linux UDP GSO), which
	// it otherwise does where the kernel supports it.
	DisableGSO bool
}

// Message is one datagram in a batch. Its payload is Buf[Off:End], so a
// buffer can keep room before and after the payload for in-place work.
type Message struct {
	// Buf is the packet buffer.
	Buf []byte
	// Off is where the payload starts in Buf. ReadBatch receives into
	// Buf[Off:len(Buf)].
	Off int
	// End is where the payload ends in Buf: set by ReadBatch, read by
	// WriteBatch.
	End int
	// Addr is the remote endpoint: the source after ReadBatch, the
	// destination for WriteBatch.
	Addr netip.AddrPort
	// Segment is set by ReadBatch: 0 when the payload is one datagram;
	// with GRO on (Conn.EnableGRO), when the kernel coalesced several
	// datagrams of one flow, their size: the payload is then datagrams of
	// Segment bytes back to back, the last possibly shorter (see
	// Datagrams). WriteBatch ignores it.
	Segment int
}

// Datagrams returns how many datagrams the payload holds (see Segment).
func (m *Message) Datagrams() int {
	n := m.End - m.Off
	if m.Segment <= 0 || n <= m.Segment {
		return 1
	}
	return (n + m.Segment - 1) / m.Segment
}

// Datagram returns the bounds in Buf of the payload's i-th datagram.
func (m *Message) Datagram(i int) (off, end int) {
	if m.Segment <= 0 {
		return m.Off, m.End
	}
	off = m.Off + i*m.Segment
	return off, min(off+m.Segment, m.End)
}

// Payload returns the message's payload, Buf[Off:End].
func (m *Message) Payload() []byte { return m.Buf[m.Off:m.End] }

// Conn is a UDP socket with batched, allocation-free I/O. One goroutine
// may read while others write; concurrent ReadBatch (or WriteBatch) calls
// are serialised.
type Conn struct {
	pc    *net.UDPConn
	local netip.AddrPort
	batch int
	sys   sysConn
}

// Listen opens a socket on network ("udp", "udp4" or "udp6") and address
// (host:port as for net.ListenPacket; "" or a missing port means port
// DefaultPort on all addresses, port 0 picks a free port).
func Listen(network, address string, opts *Options) (*Conn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("udp: unknown network %q", network)
	}
	address = withDefaultPort(address)
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	o.BatchSize = min(o.BatchSize, MaxBatchSize)
	if o.RecvBuffer == 0 {
		o.RecvBuffer = DefaultBufferSize
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = DefaultBufferSize
	}
	if o.Mark != 0 && !markSupported {
		return nil, errMarkUnsupported
	}
	pc, err := net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	c := &Conn{pc: pc.(*net.UDPConn), batch: o.BatchSize}
	c.local = c.pc.LocalAddr().(*net.UDPAddr).AddrPort()
	c.local = netip.AddrPortFrom(c.local.Addr().Unmap(), c.local.Port())
	if err := c.init(&o); err != nil {
		c.pc.Close()
		return nil, err
	}
	return c, nil
}

// ListenAddrPort opens a socket on a local address and port (0 picks a free
// port): an invalid or IPv6 unspecified address gives a dual-stack socket on
// all addresses, 0.0.0.0 an IPv4-only one on all addresses.
func ListenAddrPort(ap netip.AddrPort, opts *Options) (*Conn, error) {
	port := strconv.Itoa(int(ap.Port()))
	a := ap.Addr()
	switch {
	case !a.IsValid() || a == netip.IPv6Unspecified():
		return Listen("udp", ":"+port, opts)
	case a.Is4() || a.Is4In6():
		return Listen("udp4", net.JoinHostPort(a.Unmap().String(), port), opts)
	default:
		return Listen("udp6", net.JoinHostPort(a.String(), port), opts)
	}
}

func withDefaultPort(address string) string {
	if address == "" {
		return ":" + strconv.Itoa(DefaultPort)
	}
	if _, _, err := net.SplitHostPort(address); err != nil {
		// A bare host (IPv6 possibly bracketed).
		h := address
		if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
			h = h[1 : len(h)-1]
		}
		return net.JoinHostPort(h, strconv.Itoa(DefaultPort))
	}
	return address
}

// LocalAddr returns the address and port the socket is bound to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// BatchSize returns the most datagrams one ReadBatch or WriteBatch system
// call moves (1 where there is no batch system call).
func (c *Conn) BatchSize() int { return c.batch }

// Close closes the socket; blocked reads and writes return an error
// matching net.ErrClosed.
func (c *Conn) Close() error { return c.pc.Close() }

// SetReadDeadline sets the deadline for ReadBatch (zero: none).
func (c *Conn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for WriteBatch and WriteTo (zero: none).
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }

// WriteTo sends one datagram (for IKE and keepalives: not batched).
func (c *Conn) WriteTo(b []byte, addr netip.AddrPort) (int, error) {
	return c.pc.WriteToUDPAddrPort(b, c.sendAddr(addr))
}

// sendAddr adapts a destination to the socket's family: IPv4-mapped for a
// dual-stack socket is done by the standard library; a single-family IPv4
// socket wants the plain form.
func (c *Conn) sendAddr(a netip.AddrPort) netip.AddrPort {
	if ip := a.Addr(); ip.Is4In6() {
		return netip.AddrPortFrom(ip.Unmap(), a.Port())
	}
	return a
}

var (
	errMarkUnsupported = errors.New("udp: firewall mark (SO_MARK) is only supported on Linux")
	errBadMessage      = errors.New("udp: message offsets out of range")
	errNoAddress       = errors.New("udp: message without a destination address")
)

// ErrAddressFamily reports a destination the socket's address family cannot
// reach (an IPv6 peer on an IPv4-only socket, or the reverse).
var ErrAddressFamily = errors.New("udp: destination address family not supported by the socket")

// Kind is what a UDP payload on the NAT-T port carries (RFC 3948).
type Kind uint8

// Kinds of NAT-T payload.
const (
	// KindInvalid is a payload that is neither ESP, IKE nor a keepalive.
	KindInvalid Kind = iota
	// KindESP is an ESP packet (non-zero SPI first).
	KindESP
	// KindIKE is an IKE message after the 4-byte non-ESP marker: the
	// message is payload[NonESPMarkerLen:].
	KindIKE
	// KindKeepalive is a NAT keepalive: the single byte 0xFF.
	KindKeepalive
)

// String names the kind: "esp", "ike", "keepalive" or "invalid".
func (k Kind) String() string {
	switch k {
	case KindESP:
		return "esp"
	case KindIKE:
		return "ike"
	case KindKeepalive:
		return "keepalive"
	}
	return "invalid"
}

// RFC 3948 sizes.
const (
	// NonESPMarkerLen is the length of the zero marker in front of IKE
	// messages on the NAT-T port.
	NonESPMarkerLen = 4
	// ESPMinLen is the shortest payload taken for ESP: SPI and sequence
	// number.
	ESPMinLen = 8
	// IKEHeaderLen is the fixed IKE header, the least that may follow the
	// non-ESP marker.
	IKEHeaderLen = 28
	// KeepaliveByte is the content of a one-byte NAT keepalive.
	KeepaliveByte = 0xFF
)

// Classify tells what a datagram received on the NAT-T port carries. It
// never panics and does not allocate.
func Classify(p []byte) Kind {
	switch {
	case len(p) == 1:
		if p[0] == KeepaliveByte {
			return KindKeepalive
		}
		return KindInvalid
	case len(p) < NonESPMarkerLen:
		return KindInvalid
	case p[0]|p[1]|p[2]|p[3] == 0:
		// A zero SPI is the non-ESP marker; it must carry an IKE header.
		if len(p) < NonESPMarkerLen+IKEHeaderLen {
			return KindInvalid
		}
		return KindIKE
	case len(p) < ESPMinLen:
		return KindInvalid
	}
	return KindESP
}

// KeepaliveBytes returns a NAT keepalive payload (RFC 3948 section 2.3).
func KeepaliveBytes() []byte { return []byte{KeepaliveByte} }
