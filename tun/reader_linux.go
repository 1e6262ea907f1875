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
	r := &Reader{rc: rc, hdrLen: hdr, big: make([]byte, vnetHdrLen+maxSuperPacket)}
	r.fn = r.read
	return r
}

// read is the raw call, handed to the RawConn once made (no allocation per
// call): read into the big buffer.
func (r *Reader) read(fd uintptr) bool {
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
	if len(bufs) == 0 || len(sizes) == 0 {
		return 0, nil
	}
	if offset < r.hdrLen || offset > len(bufs[0]) {
		return 0, io.ErrShortBuffer
	}
	if r.pendNext > 0 {
		return r.split(&r.pendHdr, r.pendEnd, bufs, sizes, offset, r.pendNext)
	}
	r.wait, r.empty, r.n, r.errno = wait, false, 0, 0
	if err := r.rc.Read(r.fn); err != nil {
		// The only error without deadlines: the file is closing.
		return 0, fmt.Errorf("tun: %w: %v", os.ErrClosed, err)
	}
	switch {
	case r.empty:
		return 0, nil
	case r.errno == unix.EBADFD:
		return 0, os.ErrClosed
	case r.errno != 0:
		return 0, os.NewSyscallError("read", r.errno)
	case r.n < r.hdrLen:
		return 0, errBadSuperPacket
	}
	room := bufs[0][offset:]
	b := r.big[:r.n]
	var h vnetHdr
	if r.hdrLen > 0 {
		h.decode(b)
	}
	if h.gsoType != vnetGSONone {
		return r.split(&h, r.n, bufs, sizes, offset, 0)
	}
	pkt := b[r.hdrLen:]
	if len(pkt) > len(room) {
		return 0, fmt.Errorf("tun: %d-byte packet does not fit a %d-byte buffer: %w", len(pkt), len(room), io.ErrShortBuffer)
	}
	if h.flags&vnetFNeedsCsum != 0 {
		if err := finishChecksum(pkt, int(h.csumStart), int(h.csumOffset)); err != nil {
			return 0, err
		}
	}
	sizes[0] = copy(room, pkt)
	return 1, nil
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

// splitSuper cuts a TCP or UDP super-packet into packets of h.gsoSize
// payload bytes (the last may be shorter), each in bufs[i][offset:],
// starting with segment number from. It fills at most len(bufs) packets and
// returns how many, and the number of the next segment (0 when the
// super-packet is done).
func splitSuper(pkt []byte, h *vnetHdr, bufs [][]byte, sizes []int, offset, from int) (int, int, error) {
	if len(pkt) < ipv4HeaderMin || h.gsoSize == 0 {
		return 0, 0, errBadSuperPacket
	}
	v6 := pkt[0]>>4 == 6
	var tcp bool
	switch h.gsoType {
	case vnetGSOTCPv4:
		tcp = true
		if v6 {
			return 0, 0, errBadSuperPacket
		}
	case vnetGSOTCPv6:
		tcp = true
		if !v6 {
			return 0, 0, errBadSuperPacket
		}
	case vnetGSOUDPL4:
	default:
		return 0, 0, fmt.Errorf("tun: virtio-net GSO type %#x: %w", h.gsoType, errBadSuperPacket)
	}
	if !v6 && pkt[0]>>4 != 4 {
		return 0, 0, errBadSuperPacket
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
		return 0, 0, errBadSuperPacket
	}
	thLen := 8
	csumOff := 6
	proto := uint8(packet.ProtoUDP)
	if tcp {
		if ipLen+20 > len(pkt) {
			return 0, 0, errBadSuperPacket
		}
		thLen = int(pkt[ipLen+12]>>4) * 4
		csumOff = 16
		proto = packet.ProtoTCP
		if thLen < 20 {
			return 0, 0, errBadSuperPacket
		}
	}
	hdrLen := ipLen + thLen
	if hdrLen > len(pkt) || int(h.csumOffset) != csumOff {
		return 0, 0, errBadSuperPacket
	}
	var src, dst []byte
	if v6 {
		src, dst = pkt[8:24], pkt[24:40]
	} else {
		src, dst = pkt[12:16], pkt[16:20]
	}
	seg := int(h.gsoSize)
	data := pkt[hdrLen:]
	n := (len(data) + seg - 1) / seg
	if n == 0 {
		n = 1 // headers only
	}
	if from >= n {
		return 0, 0, errBadSuperPacket
	}
	var seq uint32
	if tcp {
		seq = binary.BigEndian.Uint32(pkt[ipLen+4:])
	}
	k := 0 // packets filled
	for i := from; i < n; i++ {
		if k == len(bufs) || k == len(sizes) {
			return k, i, nil // the rest at the next call
		}
		d := data[min(i*seg, len(data)):min((i+1)*seg, len(data))]
		total := hdrLen + len(d)
		if offset > len(bufs[k]) || total > len(bufs[k])-offset {
			return 0, 0, fmt.Errorf("tun: %d-byte segment does not fit a %d-byte buffer: %w", total, len(bufs[k])-offset, io.ErrShortBuffer)
		}
		out := bufs[k][offset : offset+total]
		copy(out, pkt[:hdrLen])
		copy(out[hdrLen:], d)
		if v6 {
			binary.BigEndian.PutUint16(out[4:], uint16(total-ipv6HeaderLength))
		} else {
			id := binary.BigEndian.Uint16(out[4:])
			binary.BigEndian.PutUint16(out[4:], id+uint16(i))
			binary.BigEndian.PutUint16(out[2:], uint16(total))
			out[10], out[11] = 0, 0
			binary.BigEndian.PutUint16(out[10:], ^packet.Checksum(out[:ipLen], 0))
		}
		th := out[ipLen:]
		if tcp {
			binary.BigEndian.PutUint32(th[4:], seq+uint32(i*seg))
			if i < n-1 {
				th[tcpFlagsOffset] &^= tcpFlagFIN | tcpFlagPSH
			}
		} else {
			binary.BigEndian.PutUint16(th[4:], uint16(len(th)))
		}
		th[csumOff], th[csumOff+1] = 0, 0
		l := uint32(len(th))
		sum := packet.Checksum(src, uint32(proto)+l>>16+l&0xffff)
		sum = packet.Checksum(dst, uint32(sum))
		c := ^packet.Checksum(th, uint32(sum))
		if !tcp && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(th[csumOff:], c)
		sizes[k] = total
		k++
	}
	return k, 0, nil
}
