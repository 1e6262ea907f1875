//go:build linux

package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const markSupported = true

// sysConn is the Linux batch state: for each direction, mmsghdr, iovec and
// sockaddr arrays allocated once, and the function handed to the
// syscall.RawConn (a method value made once, so that calls allocate
// nothing).
type sysConn struct {
	rc     syscall.RawConn
	family int // AF_INET or AF_INET6
	rd, wr mmsgState
}

type mmsgState struct {
	mu    sync.Mutex
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for either family
	fn    func(fd uintptr) bool

	// The current call: messages in, result out.
	cnt   int
	n     int
	errno syscall.Errno

	// One-entry caches between IPv6 zone names and scope IDs.
	zoneID   uint32
	zoneName string
}

func (s *mmsgState) init(n int, op uintptr) {
	s.hdrs = make([]unix.Mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.names = make([]unix.RawSockaddrInet6, n)
	for i := range s.hdrs {
		h := &s.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	s.fn = func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(op, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.cnt), 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // park in the netpoller until ready
			}
			s.n, s.errno = int(r), e
			return true
		}
	}
}

func (c *Conn) init(o *Options) error {
	rc, err := c.pc.SyscallConn()
	if err != nil {
		return err
	}
	c.sys.rc = rc
	var serr error
	err = rc.Control(func(fd uintptr) {
		f := int(fd)
		c.sys.family, serr = unix.GetsockoptInt(f, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil {
			serr = fmt.Errorf("udp: SO_DOMAIN: %w", serr)
			return
		}
		if o.Mark != 0 {
			if serr = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark)); serr != nil {
				serr = fmt.Errorf("udp: SO_MARK %#x: %w", o.Mark, serr)
				return
			}
		}
		// Best effort: the forced variants need CAP_NET_ADMIN, the plain
		// ones are capped by net.core.[rw]mem_max.
		if o.RecvBuffer > 0 {
			if unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.RecvBuffer) != nil {
				_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_RCVBUF, o.RecvBuffer)
			}
		}
		if o.SendBuffer > 0 {
			if unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, o.SendBuffer) != nil {
				_ = unix.SetsockoptInt(f, unix.SOL_SOCKET, unix.SO_SNDBUF, o.SendBuffer)
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	c.sys.rd.init(c.batch, unix.SYS_RECVMMSG)
	c.sys.wr.init(c.batch, unix.SYS_SENDMMSG)
	return nil
}

// BufferSizes returns the socket's receive and send buffer sizes as the
// kernel reports them (Linux doubles what was asked for), 0 if unknown.
func (c *Conn) BufferSizes() (recv, send int) {
	_ = c.sys.rc.Control(func(fd uintptr) {
		recv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		send, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	return recv, send
}

// ReadBatch receives up to min(len(msgs), BatchSize()) datagrams, blocking
// until at least one arrives. Datagram i is written to msgs[i].Buf[Off:]
// (truncated if longer), msgs[i].End and msgs[i].Addr are set; it returns
// how many messages were filled.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	s := &c.sys.rd
	s.mu.Lock()
	defer s.mu.Unlock()
	k := min(len(msgs), len(s.hdrs))
	if k == 0 {
		return 0, nil
	}
	for i := range k {
		m := &msgs[i]
		if m.Off < 0 || m.Off > len(m.Buf) {
			return 0, errBadMessage
		}
		setIov(&s.iovs[i], m.Buf[m.Off:])
		s.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		s.hdrs[i].Hdr.Flags = 0
		s.hdrs[i].Len = 0
	}
	s.cnt = k
	if err := c.sys.rc.Read(s.fn); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", s.errno)
	}
	n := s.n
	for i := range n {
		m := &msgs[i]
		m.End = m.Off + min(int(s.hdrs[i].Len), len(m.Buf)-m.Off)
		m.Addr = s.addrAt(i)
	}
	return n, nil
}

// WriteBatch sends msgs[i].Buf[Off:End] to msgs[i].Addr, in order, up to
// BatchSize() datagrams per system call. A datagram that cannot be sent (bad
// address, unreachable, too big) is dropped and the rest still go; it
// returns how many were sent and the first error.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	s := &c.sys.wr
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := 0
	var first error
	for i := 0; i < len(msgs); {
		k := 0
		var bad error
		for k < len(s.hdrs) && i+k < len(msgs) {
			m := &msgs[i+k]
			if m.Off < 0 || m.End < m.Off || m.End > len(m.Buf) {
				bad = errBadMessage
				break
			}
			nl, err := c.sys.putName(s, k, m.Addr)
			if err != nil {
				bad = err
				break
			}
			setIov(&s.iovs[k], m.Buf[m.Off:m.End])
			s.hdrs[k].Hdr.Namelen = nl
			s.hdrs[k].Len = 0
			k++
		}
		if k == 0 {
			if first == nil {
				first = bad
			}
			i++
			continue
		}
		s.cnt = k
		if err := c.sys.rc.Write(s.fn); err != nil {
			if first == nil {
				first = err
			}
			return sent, first
		}
		if s.errno != 0 || s.n <= 0 {
			// msgs[i] failed: drop it and go on with the rest.
			if first == nil {
				first = os.NewSyscallError("sendmmsg", errnoOr(s.errno))
			}
			i++
			continue
		}
		sent += s.n
		i += s.n
	}
	return sent, first
}

func errnoOr(e syscall.Errno) error {
	if e == 0 {
		return errors.New("no datagram sent")
	}
	return e
}

func setIov(iov *unix.Iovec, b []byte) {
	if len(b) == 0 {
		iov.Base = nil
	} else {
		iov.Base = &b[0]
	}
	iov.SetLen(len(b))
}

// addrAt decodes the i-th source address without allocating.
func (s *mmsgState) addrAt(i int) netip.AddrPort {
	sa := &s.names[i]
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), portOf(&sa4.Port))
	case unix.AF_INET6:
		ip := netip.AddrFrom16(sa.Addr)
		if ip.Is4In6() {
			ip = ip.Unmap()
		} else if sa.Scope_id != 0 {
			ip = ip.WithZone(s.zoneFor(sa.Scope_id))
		}
		return netip.AddrPortFrom(ip, portOf(&sa.Port))
	}
	return netip.AddrPort{}
}

func portOf(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// putName writes the k-th destination in the socket's family and returns
// its length.
func (sc *sysConn) putName(s *mmsgState, k int, ap netip.AddrPort) (uint32, error) {
	ip := ap.Addr()
	if !ip.IsValid() {
		return 0, errNoAddress
	}
	sa := &s.names[k]
	if sc.family == unix.AF_INET {
		ip = ip.Unmap()
		if !ip.Is4() {
			return 0, ErrAddressFamily
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		putPort(&sa4.Port, ap.Port())
		sa4.Addr = ip.As4()
		sa4.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4, nil
	}
	sa.Family = unix.AF_INET6
	putPort(&sa.Port, ap.Port())
	sa.Flowinfo = 0
	sa.Addr = ip.As16() // IPv4 becomes ::ffff:a.b.c.d
	sa.Scope_id = 0
	if z := ip.Zone(); z != "" {
		id, err := s.scopeFor(z)
		if err != nil {
			return 0, err
		}
		sa.Scope_id = id
	}
	return unix.SizeofSockaddrInet6, nil
}

// zoneFor names the interface of a scope ID, caching the last answer.
func (s *mmsgState) zoneFor(id uint32) string {
	if id == s.zoneID && s.zoneName != "" {
		return s.zoneName
	}
	name := strconv.FormatUint(uint64(id), 10)
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		name = ifi.Name
	}
	s.zoneID, s.zoneName = id, name
	return name
}

// scopeFor resolves an IPv6 zone (interface name or number), caching the
// last answer.
func (s *mmsgState) scopeFor(zone string) (uint32, error) {
	if zone == s.zoneName && s.zoneID != 0 {
		return s.zoneID, nil
	}
	var id uint32
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		id = uint32(n)
	} else {
		ifi, err := net.InterfaceByName(zone)
		if err != nil {
			return 0, fmt.Errorf("udp: zone %q: %w", zone, err)
		}
		id = uint32(ifi.Index)
	}
	s.zoneID, s.zoneName = id, zone
	return id, nil
}
