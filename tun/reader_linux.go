//go:build linux

package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/goipsec/goipsec/internal/packet"
)

// Reader reads packets from a Linux kernel TUN device (as CreateKernel
// makes it) like the device's own Read, with two differences that matter
// to a datapath in a hurry:
//
//   - it can try a read without waiting (wait false), so that a loop can
//     gather the packets already queued (small packets come one per read)
//     and send them in one go, without a poll(2) per read;
//   - its system calls are raw: the device is non-blocking (Go's netpoller
//     waits for it), so a read never blocks in the kernel, and a raw call
//     keeps the goroutine's P instead of inviting the scheduler to hand it
//     to another thread.
//
// Every read is a plain read(2) into one buffer big enough for a
// super-packet, whence a packet is copied to the first buffer: the copy
// of a small packet costs less than the iovec handling of a readv(2) into
// the caller's buffer (the kernel's side of a read is most of a small
// packet's cost). A TCP or UDP super-packet (the device's TSO/USO
// offloads) is cut straight from there into
// packets of its segment size, each with its IP header, its TCP sequence
// number or UDP length, and its checksums (which the kernel left to us:
// VIRTIO_NET_HDR_F_NEEDS_CSUM) fixed, as wireguard-go's Read does.
// ReadSuper hands such a super-packet over whole instead, for a caller
// that writes its segments straight where they go (Super).
//
// The device's own Read must not be used alongside a Reader.
type Reader struct {
	rc     syscall.RawConn
	hdrLen int    // virtio-net header length; 0 without IFF_VNET_HDR
	big    []byte // what a read returns: header and (super-)packet
	fn     func(fd uintptr) bool

	// A super-packet with more segments than the last call had buffers
	// for: big[hdrLen:pendEnd] with header pendHdr, segment pendNext on.
	pendHdr  vnetHdr
	pendEnd  int
	pendNext int
	// A super-packet that ReadSuper handed over whole and the caller did
	// not take (Super.Done): the next call cuts it from segment 0.
	pendWhole bool
	sup       Super

	// The current call.
	wait  bool
	n     int
	errno syscall.Errno
	empty bool
}

// virtio-net header (include/uapi/linux/virtio_net.h).
const (
	vnetHdrLen       = 10
	vnetFNeedsCsum   = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSONone      = 0
	vnetGSOTCPv4     = 1
	vnetGSOUDPL4     = 5
	vnetGSOTCPv6     = 4
	tcpFlagFIN       = 0x01
	tcpFlagPSH       = 0x08
	tcpFlagsOffset   = 13
	maxSuperPacket   = 0xffff
	ipv4HeaderMin    = 20
	ipv6HeaderLength = 40
)

type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

// decode reads the header, which the kernel writes in native byte order
// (the legacy virtio-net header the device uses unless told otherwise).
func (h *vnetHdr) decode(b []byte) {
	h.flags, h.gsoType = b[0], b[1]
	h.hdrLen = binary.NativeEndian.Uint16(b[2:])
	h.gsoSize = binary.NativeEndian.Uint16(b[4:])
	h.csumStart = binary.NativeEndian.Uint16(b[6:])
	h.csumOffset = binary.NativeEndian.Uint16(b[8:])
}

// errBadSuperPacket is a virtio-net header or super-packet that does not
// add up; the packet is dropped.
var errBadSuperPacket = errors.New("tun: malformed packet from the kernel")

// NewReader returns a Reader for dev, or nil if dev is not a Linux kernel
// TUN without packet information (IFF_NO_PI), with or without virtio-net
// headers.
func NewReader(dev Device) *Reader {
	f := dev.File()
	if f == nil {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var flags uint16
	hdr := -1
	cerr := rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq("")
		if err != nil || unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) != nil {
			return
		}
		flags = ifr.Uint16()
		hdr = 0
		if flags&unix.IFF_VNET_HDR != 0 {
			hdr, err = unix.IoctlGetInt(int(fd), unix.TUNGETVNETHDRSZ)
			if err != nil {
				hdr = -1
			}
		}
	})
	if cerr != nil || flags&unix.IFF_TUN == 0 || flags&unix.IFF_NO_PI == 0 || (hdr != 0 && hdr != vnetHdrLen) {
		return nil
	}
	r := &Reader{rc: rc, hdrLen: hdr, big: make([]byte, vnetHdrLen+maxSuperPacket, vnetHdrLen+maxSuperPacket+SuperTail)}
	r.fn = r.readRaw
	return r
}

// readRaw is the raw call, handed to the RawConn once made (no allocation per
// call): read into the big buffer.
func (r *Reader) readRaw(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.big[0])), uintptr(len(r.big)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if r.wait {
				return false // park in the netpoller until readable
			}
			r.empty = true
			return true
		}
		r.n, r.errno = int(n), e
		return true
	}
}

// Read reads one packet (or super-packet) like Device.Read: bufs[i][offset:]
// receive the packets, sizes[i] their lengths, and it returns how many. With
// wait false it returns 0, nil at once if no packet is queued. A super-packet
// with more segments than bufs is handed over over several calls (the next
// calls return its remaining packets before reading again); one that cannot
// be parsed is dropped with an error, and Read can be called again. offset
// must be at least the virtio-net header length (10).
func (r *Reader) Read(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	n, _, err := r.read(bufs, sizes, offset, wait, false)
	return n, err
}

// ReadSuper is Read, except that a TCP or UDP super-packet it reads is not
// cut but returned whole (with 0 packets), valid until the next call. If
// the caller takes its segments (Super.WriteSegment), it calls Super.Done;
// otherwise the next Read or ReadSuper returns its packets, cut as Read
// cuts them.
func (r *Reader) ReadSuper(bufs [][]byte, sizes []int, offset int, wait bool) (int, *Super, error) {
	return r.read(bufs, sizes, offset, wait, true)
}

func (r *Reader) read(bufs [][]byte, sizes []int, offset int, wait, whole bool) (int, *Super, error) {
	if len(bufs) == 0 || len(sizes) == 0 {
		return 0, nil, nil
	}
	if offset < r.hdrLen || offset > len(bufs[0]) {
		return 0, nil, io.ErrShortBuffer
	}
	if r.pendWhole || r.pendNext > 0 {
		from := r.pendNext
		r.pendWhole = false
		n, err := r.split(&r.pendHdr, r.pendEnd, bufs, sizes, offset, from)
		return n, nil, err
	}
	r.wait, r.empty, r.n, r.errno = wait, false, 0, 0
	if err := r.rc.Read(r.fn); err != nil {
		// The only error without deadlines: the file is closing.
		return 0, nil, fmt.Errorf("tun: %w: %v", os.ErrClosed, err)
	}
	switch {
	case r.empty:
		return 0, nil, nil
	case r.errno == unix.EBADFD:
		return 0, nil, os.ErrClosed
	case r.errno != 0:
		return 0, nil, os.NewSyscallError("read", r.errno)
	case r.n < r.hdrLen:
		return 0, nil, errBadSuperPacket
	}
	room := bufs[0][offset:]
	b := r.big[:r.n]
	var h vnetHdr
	if r.hdrLen > 0 {
		h.decode(b)
	}
	if h.gsoType != vnetGSONone {
		if whole {
			if err := r.sup.s.parse(r.big[r.hdrLen:r.n], &h); err != nil {
				return 0, nil, err
			}
			r.sup.r = r
			r.pendHdr, r.pendEnd, r.pendNext, r.pendWhole = h, r.n, 0, true
			return 0, &r.sup, nil
		}
		n, err := r.split(&h, r.n, bufs, sizes, offset, 0)
		return n, nil, err
	}
	pkt := b[r.hdrLen:]
	if len(pkt) > len(room) {
		return 0, nil, fmt.Errorf("tun: %d-byte packet does not fit a %d-byte buffer: %w", len(pkt), len(room), io.ErrShortBuffer)
	}
	if h.flags&vnetFNeedsCsum != 0 {
		if err := finishChecksum(pkt, int(h.csumStart), int(h.csumOffset)); err != nil {
			return 0, nil, err
		}
	}
	sizes[0] = copy(room, pkt)
	return 1, nil, nil
}

// split cuts the super-packet in big[hdrLen:end] from segment from on, and
// keeps what does not fit bufs for the next call.
func (r *Reader) split(h *vnetHdr, end int, bufs [][]byte, sizes []int, offset, from int) (int, error) {
	n, next, err := splitSuper(r.big[r.hdrLen:end], h, bufs, sizes, offset, from)
	r.pendNext = next
	if next > 0 {
		r.pendHdr, r.pendEnd = *h, end
	}
	return n, err
}

func setIov(iov *unix.Iovec, b []byte) {
	if len(b) == 0 {
		iov.Base = nil
		iov.SetLen(0)
		return
	}
	iov.Base = &b[0]
	iov.SetLen(len(b))
}

// finishChecksum completes a checksum the kernel left partial: the field
// at start+off holds the pseudo-header sum, to which the sum of
// pkt[start:] is added.
func finishChecksum(pkt []byte, start, off int) error {
	at := start + off
	if start > len(pkt) || at+2 > len(pkt) {
		return errBadSuperPacket
	}
	initial := binary.BigEndian.Uint16(pkt[at:])
	pkt[at], pkt[at+1] = 0, 0
	binary.BigEndian.PutUint16(pkt[at:], ^packet.Checksum(pkt[start:], uint32(initial)))
	return nil
}

// superPkt is a TCP or UDP super-packet whose headers were checked, with
// what its segments share, computed once.
type superPkt struct {
	pkt     []byte // headers and payload, as read
	data    []byte // the payload
	v6, tcp bool
	ipLen   int    // IP header, with IPv6 extension headers
	hdrLen  int    // IP and transport headers
	csumOff int    // of the transport checksum, in the transport header
	seg     int    // payload bytes per segment
	n       int    // segments
	seq     uint32 // TCP: the first segment's sequence number
	pseudo  uint32 // pseudo-header sum without the length
	// The headers as read, kept apart when they fit (hdrLen <=
	// len(tmpl)): Super.SegmentInPlace writes over the packet's own.
	tmpl [maxTemplate]byte
}

// maxTemplate is the longest IP and transport header chain a Super can
// make segments of in place.
const maxTemplate = 192

// SuperTail is the room a Super's buffer needs after the super-packet for
// SegmentInPlace: what a caller may write after a segment's packet (and
// put back), such as an ESP trailer.
const SuperTail = 32

// parse checks the super-packet pkt with virtio-net header h and fills s.
func (s *superPkt) parse(pkt []byte, h *vnetHdr) error {
	if len(pkt) < ipv4HeaderMin || h.gsoSize == 0 {
		return errBadSuperPacket
	}
	v6 := pkt[0]>>4 == 6
	var tcp bool
	switch h.gsoType {
	case vnetGSOTCPv4:
		tcp = true
		if v6 {
			return errBadSuperPacket
		}
	case vnetGSOTCPv6:
		tcp = true
		if !v6 {
			return errBadSuperPacket
		}
	case vnetGSOUDPL4:
	default:
		return fmt.Errorf("tun: virtio-net GSO type %#x: %w", h.gsoType, errBadSuperPacket)
	}
	if !v6 && pkt[0]>>4 != 4 {
		return errBadSuperPacket
	}
	// The IP header (with IPv6 extension headers) ends where the
	// checksum starts; the transport header's length is read from the
	// packet, not taken from the kernel's hdrLen.
	ipLen := int(h.csumStart)
	minIP := ipv4HeaderMin
	if v6 {
		minIP = ipv6HeaderLength
	}
	if ipLen < minIP || (!v6 && ipLen != int(pkt[0]&0xf)*4) {
		return errBadSuperPacket
	}
	thLen := 8
	csumOff := 6
	proto := uint32(packet.ProtoUDP)
	if tcp {
		if ipLen+20 > len(pkt) {
			return errBadSuperPacket
		}
		thLen = int(pkt[ipLen+12]>>4) * 4
		csumOff = 16
		proto = packet.ProtoTCP
		if thLen < 20 {
			return errBadSuperPacket
		}
	}
	hdrLen := ipLen + thLen
	if hdrLen > len(pkt) || int(h.csumOffset) != csumOff {
		return errBadSuperPacket
	}
	var src, dst []byte
	if v6 {
		src, dst = pkt[8:24], pkt[24:40]
	} else {
		src, dst = pkt[12:16], pkt[16:20]
	}
	*s = superPkt{pkt: pkt, data: pkt[hdrLen:], v6: v6, tcp: tcp, ipLen: ipLen, hdrLen: hdrLen, csumOff: csumOff, seg: int(h.gsoSize)}
	copy(s.tmpl[:], pkt[:hdrLen])
	s.n = max((len(s.data)+s.seg-1)/s.seg, 1) // 1: headers only
	if tcp {
		s.seq = binary.BigEndian.Uint32(pkt[ipLen+4:])
	}
	s.pseudo = uint32(packet.Checksum(dst, uint32(packet.Checksum(src, proto))))
	return nil
}

// payload returns segment i's payload.
func (s *superPkt) payload(i int) []byte {
	return s.data[min(i*s.seg, len(s.data)):min((i+1)*s.seg, len(s.data))]
}

// size returns the length of segment i's packet.
func (s *superPkt) size(i int) int { return s.hdrLen + len(s.payload(i)) }

// write writes segment i's packet at the start of out, which must hold
// size(i) bytes: the headers with the IP length and ID, the TCP sequence
// number (and FIN and PSH only on the last segment) or the UDP length,
// and the checksums fixed; then its payload. It returns the packet's
// length.
func (s *superPkt) write(i int, out []byte) int {
	d := s.payload(i)
	total := s.hdrLen + len(d)
	out = out[:total]
	copy(out, s.headers())
	copy(out[s.hdrLen:], d)
	s.fix(i, out)
	return total
}

// headers returns the headers as read.
func (s *superPkt) headers() []byte {
	if s.hdrLen <= len(s.tmpl) {
		return s.tmpl[:s.hdrLen]
	}
	return s.pkt[:s.hdrLen]
}

// fix makes out, segment i's packet with the headers as read, right:
// lengths, IPv4 ID, TCP sequence number and flags, checksums.
func (s *superPkt) fix(i int, out []byte) {
	total := len(out)
	if s.v6 {
		binary.BigEndian.PutUint16(out[4:], uint16(total-ipv6HeaderLength))
	} else {
		id := binary.BigEndian.Uint16(out[4:])
		binary.BigEndian.PutUint16(out[4:], id+uint16(i))
		binary.BigEndian.PutUint16(out[2:], uint16(total))
		out[10], out[11] = 0, 0
		binary.BigEndian.PutUint16(out[10:], ^packet.Checksum(out[:s.ipLen], 0))
	}
	th := out[s.ipLen:]
	if s.tcp {
		binary.BigEndian.PutUint32(th[4:], s.seq+uint32(i*s.seg))
		if i < s.n-1 {
			th[tcpFlagsOffset] &^= tcpFlagFIN | tcpFlagPSH
		}
	} else {
		binary.BigEndian.PutUint16(th[4:], uint16(len(th)))
	}
	th[s.csumOff], th[s.csumOff+1] = 0, 0
	c := ^packet.Checksum(th, s.pseudo+uint32(len(th)))
	if !s.tcp && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(th[s.csumOff:], c)
}

// splitSuper cuts a TCP or UDP super-packet into packets of h.gsoSize
// payload bytes (the last may be shorter), each in bufs[i][offset:],
// starting with segment number from. It fills at most len(bufs) packets and
// returns how many, and the number of the next segment (0 when the
// super-packet is done).
func splitSuper(pkt []byte, h *vnetHdr, bufs [][]byte, sizes []int, offset, from int) (int, int, error) {
	var s superPkt
	if err := s.parse(pkt, h); err != nil {
		return 0, 0, err
	}
	if from >= s.n {
		return 0, 0, errBadSuperPacket
	}
	k := 0 // packets filled
	for i := from; i < s.n; i++ {
		if k == len(bufs) || k == len(sizes) {
			return k, i, nil // the rest at the next call
		}
		total := s.size(i)
		if offset > len(bufs[k]) || total > len(bufs[k])-offset {
			return 0, 0, fmt.Errorf("tun: %d-byte segment does not fit a %d-byte buffer: %w", total, len(bufs[k])-offset, io.ErrShortBuffer)
		}
		sizes[k] = s.write(i, bufs[k][offset:])
		k++
	}
	return k, 0, nil
}

// Super is a TCP or UDP super-packet (the device's TSO/USO offloads) that
// ReadSuper left whole, so that the caller writes its segments where it
// wants them: each segment's packet is what Read would have cut.
type Super struct {
	s superPkt
	r *Reader
}

// ParseSuper checks b, a virtio-net header followed by a TCP or UDP
// super-packet as a TUN read returns it, and makes s describe it. s
// refers to b.
func ParseSuper(b []byte, s *Super) error {
	if len(b) < vnetHdrLen {
		return errBadSuperPacket
	}
	var h vnetHdr
	h.decode(b)
	s.r = nil
	return s.s.parse(b[vnetHdrLen:], &h)
}

// Packet returns the whole super-packet: one IP and transport header for
// all segments, then all their payload.
func (s *Super) Packet() []byte { return s.s.pkt }

// Segments returns the number of segments.
func (s *Super) Segments() int { return s.s.n }

// SegmentLen returns the length of segment i's packet; no segment is
// longer than segment 0.
func (s *Super) SegmentLen(i int) int { return s.s.size(i) }

// WriteSegment writes segment i's packet, headers and checksums complete,
// at the start of dst, which must hold SegmentLen(i) bytes, and returns
// its length.
func (s *Super) WriteSegment(i int, dst []byte) int { return s.s.write(i, dst) }

// InPlace reports whether SegmentInPlace can be used: the headers are
// short enough to be kept apart, and the buffer has SuperTail bytes of
// room after the super-packet.
func (s *Super) InPlace() bool {
	return s.s.hdrLen <= len(s.s.tmpl) && cap(s.s.pkt)-len(s.s.pkt) >= SuperTail
}

// SegmentInPlace is WriteSegment into the super-packet's own buffer,
// where segment i's payload already lies: its headers are written just
// before the payload, over the end of the segments before it, and the
// packet is returned, with at least SuperTail bytes of capacity after it
// that the caller may write if it puts them back (they are the next
// segment's payload). So segments must be taken in order, each used up
// before the next is made; and once one was, the super-packet cannot be
// cut any more: the caller must take it whole (Done). nil if not InPlace.
func (s *Super) SegmentInPlace(i int) []byte {
	if !s.InPlace() {
		return nil
	}
	p := &s.s
	start := min(i*p.seg, len(p.data))
	out := p.pkt[start : start+p.size(i) : cap(p.pkt)]
	copy(out, p.headers())
	p.fix(i, out)
	return out
}

// Done tells the Reader that the caller took every segment: its next call
// reads anew instead of cutting this super-packet.
func (s *Super) Done() {
	if s.r != nil {
		s.r.pendWhole = false
	}
}
