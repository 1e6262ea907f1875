//go:build !linux

package udp

import (
	"errors"
	"net"
	"net/netip"
)

const markSupported = false

// sysConn is empty where there is no batch system call.
type sysConn struct{}

func (c *Conn) init(o *Options) error {
	c.batch = 1
	if o.RecvBuffer > 0 {
		_ = c.pc.SetReadBuffer(o.RecvBuffer)
	}
	if o.SendBuffer > 0 {
		_ = c.pc.SetWriteBuffer(o.SendBuffer)
	}
	return nil
}

// EnableGRO reports false: this system has no UDP receive coalescing.
func (c *Conn) EnableGRO() bool { return false }

// Offloads reports that this system segments and coalesces nothing.
func (c *Conn) Offloads() (gso, gro bool) { return false, false }

// BufferSizes returns the socket's receive and send buffer sizes, 0 if
// unknown (always, on this system).
func (c *Conn) BufferSizes() (recv, send int) { return 0, 0 }

// ReadBatch receives one datagram (this system has no batch receive),
// blocking until it arrives: it is written to msgs[0].Buf[Off:] (truncated
// if longer), msgs[0].End and msgs[0].Addr are set.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	m := &msgs[0]
	if m.Off < 0 || m.Off > len(m.Buf) {
		return 0, errBadMessage
	}
	n, addr, err := c.pc.ReadFromUDPAddrPort(m.Buf[m.Off:])
	if err != nil {
		return 0, err
	}
	m.End = m.Off + n
	m.Segment = 0
	m.Addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return 1, nil
}

// WriteBatch sends msgs[i].Buf[Off:End] to msgs[i].Addr, in order, one
// datagram per system call. A datagram that cannot be sent is dropped and
// the rest still go; it returns how many were sent and the first error.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	sent := 0
	var first error
	for i := range msgs {
		m := &msgs[i]
		var err error
		switch {
		case m.Off < 0 || m.End < m.Off || m.End > len(m.Buf):
			err = errBadMessage
		case !m.Addr.Addr().IsValid():
			err = errNoAddress
		default:
			_, err = c.pc.WriteToUDPAddrPort(m.Buf[m.Off:m.End], c.sendAddr(m.Addr))
		}
		if err != nil {
			if first == nil {
				first = err
			}
			if errors.Is(err, net.ErrClosed) {
				return sent, first
			}
			continue
		}
		sent++
	}
	return sent, first
}
