//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/goipsec/goipsec/internal/packet"
)

// Writer writes packets to a Linux kernel TUN device (as CreateKernel makes
// it) like the device's own Write, coalescing as it goes: a run of
// consecutive TCP segments of one flow, in sequence, or of UDP datagrams
// of one flow and size, goes to the kernel as one super-packet (GRO done
// here, as wireguard-go's Write does), which the stack takes in one piece.
// Unlike wireguard-go's Write it needs no spare capacity in the buffers:
// one writev(2) per super-packet gathers the first packet and the payloads
// of the others from their own buffers (a super-packet of small segments,
// gatherMax bytes or less, is copied into one buffer first: the kernel
// spends more per iovec than the copy costs); and its system calls are raw
// (see Reader).
//
// Only runs of adjacent packets are coalesced (what a batch of datagrams
// opened in order holds); a packet whose checksum is wrong is never
// coalesced, so that the kernel still checks and drops it, unless the
// writer was told its packets are authenticated (SetAuthenticated).
type Writer struct {
	rc     syscall.RawConn
	authed bool // checksums taken as verified (SetAuthenticated)
	hdrLen int  // virtio-net header length; 0 without IFF_VNET_HDR
	uso    bool // the device takes UDP super-packets (Linux 6.2)
	hdr    [vnetHdrLen]byte
	iovs   []unix.Iovec
	gather []byte // a super-packet of small segments, copied together
	fn     func(fd uintptr) bool

	// The current call.
	niov  int
	n     int
	errno syscall.Errno
}

// maxCoalesce is the most packets one super-packet takes.
const maxCoalesce = 64

// gatherMax is the largest segment payload for which a super-packet is
// copied into one buffer rather than handed to writev(2) as one iovec per
// segment: the kernel's cost per iovec outweighs copying a small payload.
const gatherMax = 256

// NewWriter returns a Writer for dev, or nil if dev is not a Linux kernel
// TUN without packet information.
func NewWriter(dev Device) *Writer {
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
	uso := false
	cerr := rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq("")
		if err != nil || unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) != nil {
			return
		}
		flags = ifr.Uint16()
		hdr = 0
		if flags&unix.IFF_VNET_HDR != 0 {
			if hdr, err = unix.IoctlGetInt(int(fd), unix.TUNGETVNETHDRSZ); err != nil {
				hdr = -1
				return
			}
			// The TCP offloads are what the device was opened with
			// (CreateKernel); asking for them again with UDP's tells
			// whether the kernel has USO.
			const tcp = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
			if unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, tcp|unix.TUN_F_USO4|unix.TUN_F_USO6) == nil {
				uso = true
			} else if unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, tcp) != nil {
				hdr = -1 // no TSO: write packets as they are
			}
		}
	})
	if cerr != nil || flags&unix.IFF_TUN == 0 || flags&unix.IFF_NO_PI == 0 || (hdr != 0 && hdr != vnetHdrLen) {
		return nil
	}
	w := &Writer{rc: rc, hdrLen: hdr, uso: uso, iovs: make([]unix.Iovec, 1+maxCoalesce), gather: make([]byte, 0, ipv6HeaderLength+maxSuperPacket)}
	w.fn = w.write
	return w
}

// SetAuthenticated tells the writer whether the packets it writes were
// authenticated on their way (opened from ESP or AH, whose ICV covers
// every byte the peer sent): then the TCP and UDP checksums of the
// segments of a super-packet are not verified again before coalescing.
//
// A super-packet goes to the kernel as CHECKSUM_PARTIAL, which the
// receiving stack does not verify, so without authentication a corrupted
// segment would be accepted; with it, corruption on the wire is already
// ruled out by the ICV, and summing every byte again is pure cost (~9% of
// the receiving daemon). Linux's WireGuard makes the same call: decrypted
// packets are CHECKSUM_UNNECESSARY at every level. What is given up is
// the check of a checksum the peer's side got wrong before sealing (a
// packet it forwards that was corrupted on its own network).
func (w *Writer) SetAuthenticated(on bool) { w.authed = on }

// write is the raw call, handed to the RawConn once made.
func (w *Writer) write(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iovs[0])), uintptr(w.niov))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		w.n, w.errno = int(n), e
		return true
	}
}

// Write writes the packets bufs[i][offset:], coalescing runs of them, and
// returns how many packets it wrote and the first error. A packet the
// kernel refuses is dropped; the others still go. The headers of the
// first packet of each run are rewritten for the super-packet, so the
// packets are not to be written again.
func (w *Writer) Write(bufs [][]byte, offset int) (int, error) {
	written := 0
	var first error
	for i := 0; i < len(bufs); {
		if offset > len(bufs[i]) {
			i++
			continue
		}
		k := 1
		var h vnetHdr
		if w.hdrLen > 0 {
			k = w.coalesce(bufs[i:], offset, &h)
		}
		err := w.writeRun(bufs[i:i+k], offset, &h)
		if err != nil {
			if first == nil {
				first = err
			}
			if err == os.ErrClosed {
				return written, first
			}
		} else {
			written += k
		}
		i += k
	}
	return written, first
}

// writeRun writes one packet, or a run that coalesce made into a
// super-packet with header h: the first packet whole, the payloads of the
// others after it.
func (w *Writer) writeRun(run [][]byte, offset int, h *vnetHdr) error {
	w.niov = 0
	if w.hdrLen > 0 {
		w.hdr[0], w.hdr[1] = h.flags, h.gsoType
		binary.NativeEndian.PutUint16(w.hdr[2:], h.hdrLen)
		binary.NativeEndian.PutUint16(w.hdr[4:], h.gsoSize)
		binary.NativeEndian.PutUint16(w.hdr[6:], h.csumStart)
		binary.NativeEndian.PutUint16(w.hdr[8:], h.csumOffset)
		setIov(&w.iovs[0], w.hdr[:])
		w.niov = 1
	}
	if len(run) > 2 && int(h.gsoSize) <= gatherMax {
		g := append(w.gather[:0], run[0][offset:]...)
		for _, b := range run[1:] {
			g = append(g, b[offset+int(h.hdrLen):]...)
		}
		setIov(&w.iovs[w.niov], g)
		w.niov++
	} else {
		setIov(&w.iovs[w.niov], run[0][offset:])
		w.niov++
		for _, b := range run[1:] {
			setIov(&w.iovs[w.niov], b[offset+int(h.hdrLen):])
			w.niov++
		}
	}
	w.n, w.errno = 0, 0
	if err := w.rc.Write(w.fn); err != nil {
		return fmt.Errorf("tun: %w: %v", os.ErrClosed, err)
	}
	switch w.errno {
	case 0:
		return nil
	case unix.EBADFD:
		return os.ErrClosed
	}
	return os.NewSyscallError("writev", w.errno)
}

// Kinds of packets coalesce takes.
const (
	kindNone = iota
	kindTCP4
	kindTCP6
	kindUDP4
	kindUDP6
)

// segment is what coalesce needs of a packet.
type segment struct {
	kind    int
	ipLen   int // IP header (no IPv4 options, no IPv6 extension headers)
	thLen   int // transport header
	payload int
}

// parseSegment tells whether pkt can take part in a super-packet and how
// it is laid out.
func parseSegment(pkt []byte, uso bool) segment {
	var s segment
	if len(pkt) < 28 {
		return s
	}
	var proto uint8
	switch pkt[0] >> 4 {
	case 4:
		// No options, not a fragment, lengths as the buffer says.
		if pkt[0] != 0x45 || pkt[6]&0x3f != 0 || pkt[7] != 0 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
			return s
		}
		s.ipLen, proto = ipv4HeaderMin, pkt[9]
	case 6:
		if len(pkt) < ipv6HeaderLength+8 || int(binary.BigEndian.Uint16(pkt[4:])) != len(pkt)-ipv6HeaderLength {
			return s
		}
		s.ipLen, proto = ipv6HeaderLength, pkt[6]
	default:
		return s
	}
	v6 := s.ipLen == ipv6HeaderLength
	switch {
	case proto == packet.ProtoTCP:
		if len(pkt) < s.ipLen+20 {
			return s
		}
		s.thLen = int(pkt[s.ipLen+12]>>4) * 4
		if s.thLen < 20 || s.ipLen+s.thLen > len(pkt) {
			return s
		}
		s.kind = kindTCP4
		if v6 {
			s.kind = kindTCP6
		}
	case proto == packet.ProtoUDP && uso:
		s.thLen = 8
		if int(binary.BigEndian.Uint16(pkt[s.ipLen+4:])) != len(pkt)-s.ipLen {
			return s
		}
		s.kind = kindUDP4
		if v6 {
			s.kind = kindUDP6
		}
	default:
		return s
	}
	s.payload = len(pkt) - s.ipLen - s.thLen
	return s
}

// sameIP reports whether two packets' IP headers allow them in one
// super-packet: same addresses, and the fields the kernel's GRO compares.
func sameIP(a, b []byte, v6 bool) bool {
	if v6 {
		// Version and traffic class, hop limit, addresses.
		return a[0] == b[0] && a[1]>>4 == b[1]>>4 && a[7] == b[7] && bytes.Equal(a[8:40], b[8:40])
	}
	// ToS, DF and reserved flags, TTL, addresses.
	return a[1] == b[1] && a[6]>>5 == b[6]>>5 && a[8] == b[8] && bytes.Equal(a[12:20], b[12:20])
}

// checksumOK verifies a packet's TCP or UDP checksum.
func checksumOK(pkt []byte, s *segment, proto uint8) bool {
	var src, dst []byte
	if s.ipLen == ipv6HeaderLength {
		src, dst = pkt[8:24], pkt[24:40]
	} else {
		src, dst = pkt[12:16], pkt[16:20]
	}
	th := pkt[s.ipLen:]
	if proto == packet.ProtoUDP && th[6]|th[7] == 0 {
		return false // no checksum (IPv4): nothing to vouch for
	}
	l := uint32(len(th))
	sum := packet.Checksum(src, uint32(proto)+l>>16+l&0xffff)
	sum = packet.Checksum(dst, uint32(sum))
	return packet.Checksum(th, uint32(sum)) == 0xffff
}

// TCP flags.
const (
	tcpFlagACK = 0x10
	tcpFlagURG = 0x20
)

// coalesce finds how many packets from run[0] on go in one super-packet
// (1: run[0] alone, h left zero) and, for more than one, rewrites run[0]'s
// headers for the whole and fills in h.
func (w *Writer) coalesce(run [][]byte, offset int, h *vnetHdr) int {
	head := run[0][offset:]
	s := parseSegment(head, w.uso)
	if s.kind == kindNone || s.payload == 0 || len(run) < 2 {
		return 1
	}
	tcp := s.kind == kindTCP4 || s.kind == kindTCP6
	v6 := s.kind == kindTCP6 || s.kind == kindUDP6
	proto := uint8(packet.ProtoUDP)
	if tcp {
		proto = packet.ProtoTCP
	}
	th := head[s.ipLen:]
	var seq uint32
	if tcp {
		// Only plain data segments: ACK, maybe PSH, nothing else. A
		// segment with PSH ends a run.
		if th[13]&^tcpFlagPSH != tcpFlagACK || th[13]&tcpFlagPSH != 0 {
			return 1
		}
		seq = binary.BigEndian.Uint32(th[4:]) + uint32(s.payload)
	}
	gso := s.payload
	total := len(head)
	limit := 0xffff // IPv4 total length
	if v6 {
		limit = 0xffff + ipv6HeaderLength // IPv6 payload length
	}
	k := 1
	checked := false
	psh := false
	for ; k < len(run) && k < maxCoalesce; k++ {
		if offset > len(run[k]) {
			break
		}
		p := run[k][offset:]
		ps := parseSegment(p, w.uso)
		if ps.kind != s.kind || ps.thLen != s.thLen || ps.payload == 0 || ps.payload > gso || total+ps.payload > limit {
			break
		}
		if !sameIP(head, p, v6) {
			break
		}
		pt := p[s.ipLen:]
		if !bytes.Equal(th[0:4], pt[0:4]) { // ports
			break
		}
		if tcp {
			if binary.BigEndian.Uint32(pt[4:]) != seq || // in sequence
				!bytes.Equal(th[8:12], pt[8:12]) || // same ACK
				pt[13]&^tcpFlagPSH != tcpFlagACK || // data, maybe PSH
				!bytes.Equal(th[20:s.thLen], pt[20:s.thLen]) { // same options
				break
			}
		}
		if !w.authed {
			if !checked {
				if !checksumOK(head, &s, proto) {
					return 1
				}
				checked = true
			}
			if !checksumOK(p, &ps, proto) {
				break
			}
		}
		total += ps.payload
		if tcp {
			seq += uint32(ps.payload)
			psh = pt[13]&tcpFlagPSH != 0
		}
		if ps.payload < gso || psh {
			k++ // a short segment or PSH ends the run
			break
		}
	}
	if k == 1 {
		return 1
	}
	// The head becomes the super-packet's header.
	if v6 {
		binary.BigEndian.PutUint16(head[4:], uint16(total-ipv6HeaderLength))
	} else {
		binary.BigEndian.PutUint16(head[2:], uint16(total))
		head[10], head[11] = 0, 0
		binary.BigEndian.PutUint16(head[10:], ^packet.Checksum(head[:ipv4HeaderMin], 0))
	}
	var src, dst []byte
	if v6 {
		src, dst = head[8:24], head[24:40]
	} else {
		src, dst = head[12:16], head[16:20]
	}
	l := uint32(total - s.ipLen)
	csumOff := 6
	*h = vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOUDPL4, hdrLen: uint16(s.ipLen + s.thLen), gsoSize: uint16(gso), csumStart: uint16(s.ipLen)}
	if tcp {
		csumOff = 16
		h.gsoType = vnetGSOTCPv4
		if v6 {
			h.gsoType = vnetGSOTCPv6
		}
		if psh {
			th[13] |= tcpFlagPSH
		}
	} else {
		binary.BigEndian.PutUint16(th[4:], uint16(l))
	}
	h.csumOffset = uint16(csumOff)
	// The checksum field holds the pseudo-header sum: the kernel adds the
	// rest (CHECKSUM_PARTIAL).
	sum := packet.Checksum(src, uint32(proto)+l>>16+l&0xffff)
	binary.BigEndian.PutUint16(th[csumOff:], packet.Checksum(dst, uint32(sum)))
	return k
}
