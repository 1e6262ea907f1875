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
	"sync/atomic"
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

	// gso is whether WriteBatch coalesces datagrams with UDP_SEGMENT: set
	// when the kernel knows the option, cleared for good when a send says
	// the route cannot segment (EIO: no checksum offload). gsoMax is the
	// largest segment known to go out as one GSO send; a send refused as
	// too big for the path lowers it.
	gso    atomic.Bool
	gsoMax atomic.Int32
	// gro is whether UDP_GRO is on (EnableGRO).
	gro atomic.Bool
}

// UDP segmentation limits (Linux).
const (
	// gsoMaxSegments is the most datagrams one UDP_SEGMENT send carries
	// (the kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9).
	gsoMaxSegments = 64
	// gsoMaxPayload is the most payload one UDP_SEGMENT send carries: the
	// IPv4 total length less the IP and UDP headers.
	gsoMaxPayload = 0xffff - 20 - 8
	// cmsgSpace is the room for one UDP_SEGMENT (uint16) or UDP_GRO (int)
	// control message.
	cmsgSpace = 24
)

type mmsgState struct {
	mu    sync.Mutex
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for either family
	ctrl  []byte                  // cmsgSpace per header
	segs  []int                   // write: datagrams in each header
	fn    func(fd uintptr) bool

	// The current call: messages in, result out.
	cnt   int
	n     int
	errno syscall.Errno

	// One-entry caches between IPv6 zone names and scope IDs.
	zoneID   uint32
	zoneName string
}

// init sets up n headers with iovs iovecs between them.
func (s *mmsgState) init(n, iovs int, op uintptr) {
	s.hdrs = make([]unix.Mmsghdr, n)
	s.iovs = make([]unix.Iovec, max(n, iovs))
	s.names = make([]unix.RawSockaddrInet6, n)
	s.ctrl = make([]byte, n*cmsgSpace)
	s.segs = make([]int, n)
	for i := range s.hdrs {
		h := &s.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	// The socket is non-blocking (Go's netpoller waits for it), so the
	// calls return at once, with EAGAIN if there is nothing to do: they
	// are made as raw system calls, which keep the goroutine's P. A plain
	// Syscall lets the scheduler's monitor hand the P to another thread
	// whenever the kernel takes long (a GSO send carries 64 datagrams
	// through the whole stack), and the thread switches that follow cost
	// more than the call.
	s.fn = func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(op, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.cnt), 0, 0, 0)
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
	c.sys.rd.init(c.batch, c.batch, unix.SYS_RECVMMSG)
	iovs := c.batch
	if !o.DisableGSO && gsoSupported(rc) {
		c.sys.gso.Store(true)
		c.sys.gsoMax.Store(gsoMaxPayload)
		iovs = min(c.batch*gsoMaxSegments, maxWriteIovecs)
	}
	c.sys.wr.init(c.batch, iovs, unix.SYS_SENDMMSG)
	return nil
}

// maxWriteIovecs bounds the iovecs of one WriteBatch system call with GSO
// (the datagrams it moves).
const maxWriteIovecs = 4096

// gsoSupported reports whether the kernel knows UDP_SEGMENT (Linux 4.18).
// Whether the route's device can segment is only known at the first send.
func gsoSupported(rc syscall.RawConn) bool {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		_, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); cerr != nil {
		return false
	}
	return err == nil
}

// EnableGRO asks the kernel to coalesce received datagrams (UDP_GRO,
// Linux 5.0): a Message from ReadBatch may then hold several datagrams of
// one flow, of Segment bytes each (the last may be shorter), so receive
// buffers must hold 65535 bytes. It reports whether the kernel agreed; if
// not, ReadBatch goes on returning one datagram per Message.
func (c *Conn) EnableGRO() bool {
	var err error
	if cerr := c.sys.rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); cerr != nil || err != nil {
		return false
	}
	c.sys.gro.Store(true)
	return true
}

// Offloads reports whether sends are segmented by the kernel (UDP GSO) and
// receives coalesced (UDP GRO).
func (c *Conn) Offloads() (gso, gro bool) { return c.sys.gso.Load(), c.sys.gro.Load() }

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
// (truncated if longer), msgs[i].End, Segment and Addr are set; it returns
// how many messages were filled. Segment is 0 unless EnableGRO is on and the
// kernel coalesced several datagrams into the message.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	s := &c.sys.rd
	s.mu.Lock()
	defer s.mu.Unlock()
	k := min(len(msgs), len(s.hdrs))
	if k == 0 {
		return 0, nil
	}
	gro := c.sys.gro.Load()
	for i := range k {
		m := &msgs[i]
		if m.Off < 0 || m.Off > len(m.Buf) {
			return 0, errBadMessage
		}
		setIov(&s.iovs[i], m.Buf[m.Off:])
		h := &s.hdrs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
		if gro {
			h.Control = &s.ctrl[i*cmsgSpace]
			h.SetControllen(cmsgSpace)
		}
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
		m.Segment = 0
		if gro {
			m.Segment = s.groSize(i)
		}
	}
	return n, nil
}

// groSize returns the segment size of the i-th received message's UDP_GRO
// control message, 0 if it has none (a single datagram).
func (s *mmsgState) groSize(i int) int {
	h := &s.hdrs[i].Hdr
	n := int(h.Controllen)
	if n < unix.SizeofCmsghdr || n > cmsgSpace {
		return 0
	}
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&s.ctrl[i*cmsgSpace]))
	if cm.Level != unix.IPPROTO_UDP || cm.Type != unix.UDP_GRO || int(cm.Len) < unix.CmsgLen(4) {
		return 0
	}
	// The kernel writes the size as a native int.
	return int(*(*int32)(unsafe.Pointer(&s.ctrl[i*cmsgSpace+unix.CmsgLen(0)])))
}

// WriteBatch sends msgs[i].Buf[Off:End] to msgs[i].Addr, in order, up to
// BatchSize() system-call messages per system call. A datagram that cannot
// be sent (bad address, unreachable, too big) is dropped and the rest still
// go; it returns how many were sent and the first error.
//
// With UDP GSO (Offloads), consecutive datagrams to the same address and
// of the same length (the last of a run may be shorter) go out as one
// segmented send: one iovec per datagram, so nothing is copied, and the
// kernel cuts the run at the datagram boundaries. A run the kernel refuses
// is sent again datagram by datagram: EIO (the device cannot segment)
// turns GSO off for the socket, EMSGSIZE or EINVAL (a segment bigger than
// the path allows) keeps larger runs from being coalesced again.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	s := &c.sys.wr
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := 0
	var first error
	plain := 0 // msgs before this index are sent one per header (a GSO run failed)
	for i := 0; i < len(msgs); {
		h, v := 0, 0 // headers and iovecs filled
		var bad error
		gso := c.sys.gso.Load()
		gsoMax := int(c.sys.gsoMax.Load())
		for j := i; h < len(s.hdrs) && j < len(msgs) && v < len(s.iovs); {
			m := &msgs[j]
			if m.Off < 0 || m.End < m.Off || m.End > len(m.Buf) {
				bad = errBadMessage
				break
			}
			nl, err := c.sys.putName(s, h, m.Addr)
			if err != nil {
				bad = err
				break
			}
			k := 1
			if seg := m.End - m.Off; gso && j >= plain && seg > 0 && seg <= gsoMax {
				k = gsoRun(msgs[j:], seg, min(gsoMaxSegments, len(s.iovs)-v))
			}
			// One iovec per datagram, except that datagrams adjacent in
			// memory (sealed back to back) share one: the kernel's cost
			// of a send grows with its iovecs.
			nv := 0
			for x := range k {
				d := &msgs[j+x]
				if nv > 0 && extend(&s.iovs[v+nv-1], d.Buf[d.Off:d.End]) {
					continue
				}
				setIov(&s.iovs[v+nv], d.Buf[d.Off:d.End])
				nv++
			}
			hd := &s.hdrs[h]
			hd.Hdr.Namelen = nl
			hd.Hdr.Iov = &s.iovs[v]
			hd.Hdr.SetIovlen(nv)
			if k > 1 {
				putSegment(s.ctrl[h*cmsgSpace:(h+1)*cmsgSpace], m.End-m.Off)
				hd.Hdr.Control = &s.ctrl[h*cmsgSpace]
				hd.Hdr.SetControllen(unix.CmsgSpace(2))
			} else {
				hd.Hdr.Control = nil
				hd.Hdr.SetControllen(0)
			}
			hd.Len = 0
			s.segs[h] = k
			h++
			v += nv
			j += k
		}
		if h == 0 {
			if first == nil {
				first = bad
			}
			i++
			continue
		}
		s.cnt = h
		if err := c.sys.rc.Write(s.fn); err != nil {
			if first == nil {
				first = err
			}
			return sent, first
		}
		if s.errno != 0 || s.n <= 0 {
			// The header starting at msgs[i] failed.
			if k := s.segs[0]; k > 1 {
				// A GSO run: learn from the refusal and send its
				// datagrams one by one.
				switch s.errno {
				case unix.EIO:
					c.sys.gso.Store(false)
				case unix.EMSGSIZE, unix.EINVAL:
					lowerTo(&c.sys.gsoMax, int32(msgs[i].End-msgs[i].Off-1))
				}
				plain = i + k
				continue
			}
			if first == nil {
				first = os.NewSyscallError("sendmmsg", errnoOr(s.errno))
			}
			i++
			continue
		}
		for x := range s.n {
			sent += s.segs[x]
			i += s.segs[x]
		}
	}
	return sent, first
}

// gsoRun returns how many of msgs, starting with msgs[0] of seg bytes, go
// in one segmented send: up to limit datagrams to the same address, each
// of seg bytes but the last, which may be shorter, within gsoMaxPayload.
func gsoRun(msgs []Message, seg, limit int) int {
	a := msgs[0].Addr
	total := seg
	k := 1
	for k < len(msgs) && k < limit {
		m := &msgs[k]
		n := m.End - m.Off
		if m.Addr != a || n <= 0 || n > seg || m.Off < 0 || m.End > len(m.Buf) || total+n > gsoMaxPayload {
			break
		}
		total += n
		k++
		if n < seg {
			break
		}
	}
	return k
}

// putSegment writes a UDP_SEGMENT control message for segments of seg bytes.
func putSegment(b []byte, seg int) {
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	cm.Level = unix.IPPROTO_UDP
	cm.Type = unix.UDP_SEGMENT
	cm.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = uint16(seg)
}

// lowerTo lowers v to at most x.
func lowerTo(v *atomic.Int32, x int32) {
	for {
		old := v.Load()
		if old <= x || v.CompareAndSwap(old, x) {
			return
		}
	}
}

func errnoOr(e syscall.Errno) error {
	if e == 0 {
		return errors.New("no datagram sent")
	}
	return e
}

// extend grows iov by b if b starts where iov ends, and reports whether it
// did.
func extend(iov *unix.Iovec, b []byte) bool {
	if len(b) == 0 || iov.Base == nil || uintptr(unsafe.Pointer(iov.Base))+uintptr(iov.Len) != uintptr(unsafe.Pointer(&b[0])) {
		return false
	}
	iov.SetLen(int(iov.Len) + len(b))
	return true
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
