//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/goipsec/goipsec/internal/packet"
)

// superPacket builds a TCP (with 12 bytes of options) or UDP super-packet
// of n payload bytes as the kernel hands it over with TSO/USO: one IP
// header, one transport header, the checksum field holding the
// pseudo-header sum (CHECKSUM_PARTIAL), and its virtio-net header.
func superPacket(v6, tcp bool, n, seg int, fin bool) (vnetHdr, []byte, []byte) {
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*7 + i/251)
	}
	ipLen, thLen := 20, 8
	if v6 {
		ipLen = 40
	}
	proto := uint8(unix.IPPROTO_UDP)
	if tcp {
		thLen, proto = 32, unix.IPPROTO_TCP
	}
	p := make([]byte, ipLen+thLen+n)
	if v6 {
		p[0], p[6], p[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
		copy(p[8:], netip.MustParseAddr("fd00::1").AsSlice())
		copy(p[24:], netip.MustParseAddr("fd00::2").AsSlice())
	} else {
		p[0], p[8], p[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		binary.BigEndian.PutUint16(p[4:], 0xfff0) // the ID wraps
		copy(p[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	}
	th := p[ipLen:]
	binary.BigEndian.PutUint16(th[0:], 1234)
	binary.BigEndian.PutUint16(th[2:], 80)
	h := vnetHdr{flags: vnetFNeedsCsum, gsoSize: uint16(seg), csumStart: uint16(ipLen)}
	if tcp {
		binary.BigEndian.PutUint32(th[4:], 0xfffff000) // the sequence number wraps
		th[12] = byte(thLen/4) << 4
		th[13] = 0x10 | tcpFlagPSH // ACK, PSH
		if fin {
			th[13] |= tcpFlagFIN
		}
		copy(th[20:32], []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}) // NOP NOP timestamps
		h.csumOffset = 16
		h.gsoType = vnetGSOTCPv4
		if v6 {
			h.gsoType = vnetGSOTCPv6
		}
	} else {
		binary.BigEndian.PutUint16(th[4:], uint16(len(th)))
		h.csumOffset = 6
		h.gsoType = vnetGSOUDPL4
	}
	copy(p[ipLen+thLen:], payload)
	binary.BigEndian.PutUint16(th[h.csumOffset:], 0x1234) // a partial sum, to be replaced
	h.hdrLen = uint16(ipLen + thLen)
	return h, p, payload
}

// checkSegments verifies packets cut from a super-packet: lengths,
// checksums, IDs, sequence numbers, flags, and the payload they carry.
func checkSegments(t *testing.T, v6, tcp bool, pkts [][]byte, seg int, fin bool, payload []byte) {
	t.Helper()
	ipLen, thLen := 20, 8
	if v6 {
		ipLen = 40
	}
	if tcp {
		thLen = 32
	}
	var got []byte
	for i, p := range pkts {
		last := i == len(pkts)-1
		d := p[ipLen+thLen:]
		if !last && len(d) != seg || len(d) > seg {
			t.Fatalf("segment %d carries %d bytes, segment size %d", i, len(d), seg)
		}
		got = append(got, d...)
		var src, dst []byte
		if v6 {
			if int(binary.BigEndian.Uint16(p[4:])) != len(p)-40 {
				t.Fatalf("segment %d: IPv6 payload length %d for %d bytes", i, binary.BigEndian.Uint16(p[4:]), len(p))
			}
			src, dst = p[8:24], p[24:40]
		} else {
			if int(binary.BigEndian.Uint16(p[2:])) != len(p) {
				t.Fatalf("segment %d: IPv4 length %d for %d bytes", i, binary.BigEndian.Uint16(p[2:]), len(p))
			}
			if id := binary.BigEndian.Uint16(p[4:]); id != binary.BigEndian.Uint16(pkts[0][4:])+uint16(i) {
				t.Fatalf("segment %d: IPv4 ID %#x", i, id)
			}
			if packet.Checksum(p[:20], 0) != 0xffff {
				t.Fatalf("segment %d: bad IPv4 header checksum", i)
			}
			src, dst = p[12:16], p[16:20]
		}
		th := p[ipLen:]
		proto := uint32(unix.IPPROTO_UDP)
		if tcp {
			proto = unix.IPPROTO_TCP
			if s := binary.BigEndian.Uint32(th[4:]); s != 0xfffff000+uint32(i*seg) {
				t.Fatalf("segment %d: sequence number %#x", i, s)
			}
			wantFlags := byte(0x10)
			if last {
				wantFlags |= tcpFlagPSH
				if fin {
					wantFlags |= tcpFlagFIN
				}
			}
			if th[13] != wantFlags {
				t.Fatalf("segment %d: flags %#x, want %#x", i, th[13], wantFlags)
			}
		} else if int(binary.BigEndian.Uint16(th[4:])) != len(th) {
			t.Fatalf("segment %d: UDP length %d for %d bytes", i, binary.BigEndian.Uint16(th[4:]), len(th))
		}
		sum := packet.Checksum(src, proto+uint32(len(th)))
		sum = packet.Checksum(dst, uint32(sum))
		if packet.Checksum(th, uint32(sum)) != 0xffff {
			t.Fatalf("segment %d: bad transport checksum", i)
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the segments do not carry the payload")
	}
}

func TestSplitSuper(t *testing.T) {
	for _, tc := range []struct {
		name       string
		v6, tcp    bool
		n, seg     int
		fin        bool
		wantErr    bool
		bufs, size int
	}{
		{name: "tcp4", tcp: true, n: 10000, seg: 1348, bufs: 64, size: 1500},
		{name: "tcp4 fin exact", tcp: true, n: 4 * 1000, seg: 1000, fin: true, bufs: 64, size: 1500},
		{name: "tcp6", v6: true, tcp: true, n: 65000, seg: 1328, bufs: 64, size: 1500},
		{name: "udp4", n: 7000, seg: 1200, bufs: 64, size: 1500},
		{name: "udp6 small segments", v6: true, n: 64 * 50, seg: 50, bufs: 64, size: 1500},
		{name: "more segments than buffers", tcp: true, n: 10000, seg: 100, bufs: 7, size: 1500},
		{name: "buffers too small", tcp: true, n: 10000, seg: 1348, bufs: 64, size: 1000, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p, payload := superPacket(tc.v6, tc.tcp, tc.n, tc.seg, tc.fin)
			const off = 16
			bufs := make([][]byte, tc.bufs)
			for i := range bufs {
				bufs[i] = make([]byte, off+tc.size)
			}
			sizes := make([]int, len(bufs))
			var pkts [][]byte
			for next := 0; ; {
				n, nx, err := splitSuper(p, &h, bufs, sizes, off, next)
				if tc.wantErr {
					if err == nil {
						t.Fatalf("split into %d packets, want an error", n)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					pkts = append(pkts, bytes.Clone(bufs[i][off:off+sizes[i]]))
				}
				if next = nx; next == 0 {
					break
				}
			}
			checkSegments(t, tc.v6, tc.tcp, pkts, tc.seg, tc.fin, payload)
		})
	}
}

// Malformed headers and packets are refused, never a panic.
func FuzzSplitSuper(f *testing.F) {
	for _, tcp := range []bool{false, true} {
		h, p, _ := superPacket(false, tcp, 3000, 1000, false)
		var hb [vnetHdrLen]byte
		hb[0], hb[1] = h.flags, h.gsoType
		binary.NativeEndian.PutUint16(hb[2:], h.hdrLen)
		binary.NativeEndian.PutUint16(hb[4:], h.gsoSize)
		binary.NativeEndian.PutUint16(hb[6:], h.csumStart)
		binary.NativeEndian.PutUint16(hb[8:], h.csumOffset)
		f.Add(append(hb[:], p...))
	}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 16+1500)
	}
	sizes := make([]int, len(bufs))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < vnetHdrLen {
			return
		}
		var h vnetHdr
		h.decode(b)
		n, _, err := splitSuper(b[vnetHdrLen:], &h, bufs, sizes, 16, 0)
		if err == nil {
			for i := range n {
				if sizes[i] > 1500 {
					t.Fatalf("segment %d of %d bytes", i, sizes[i])
				}
			}
		}
		// ParseSuper takes the same input: its segments are those cut.
		var sp Super
		perr := ParseSuper(b, &sp)
		if perr != nil && err == nil {
			t.Fatalf("ParseSuper: %v, but splitSuper cut it", perr)
		}
		if err == nil {
			seg := make([]byte, 1500)
			for i := range min(n, sp.Segments()) {
				if l := sp.SegmentLen(i); l != sizes[i] || sp.WriteSegment(i, seg) != l || !bytes.Equal(seg[:l], bufs[i][16:16+l]) {
					t.Fatalf("segment %d: written differs from cut", i)
				}
			}
		}
		_ = finishChecksum(b[vnetHdrLen:], int(h.csumStart), int(h.csumOffset))
	})
}

// A Reader on a real TUN: nothing queued is reported at once, a packet
// lands in the first buffer at the offset, and a UDP super-packet (a
// UDP_SEGMENT send, if the device has USO) comes cut into datagrams with
// their checksums filled in.
func TestReaderKernel(t *testing.T) {
	ns := inNetns(t)
	const name = "gitunr0"
	dev, err := CreateKernel(name, 1400)
	if err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	cfg := Config{
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")},
		Routes:    []netip.Prefix{netip.MustParsePrefix("10.78.0.0/16")},
	}
	if _, err := Configure(name, cfg); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	_ = ns
	r := NewReader(dev)
	if r == nil {
		t.Fatal("NewReader: nil for a kernel TUN")
	}
	const off = 32
	bufs, sizes := makeBufs(dev.BatchSize(), off+1400+64)
	for i := range bufs {
		bufs[i] = bufs[i][:off+1400]
	}
	// Drain what the kernel sent by itself; then the queue is empty.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := r.Read(bufs, sizes, off, false)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queue never ran empty")
		}
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.77.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	remote := netip.MustParseAddrPort("10.78.1.1:9999")
	// One datagram: read in place.
	if _, err := sock.WriteToUDPAddrPort([]byte("hello, reader"), remote); err != nil {
		t.Fatal(err)
	}
	got := collect(t, r, bufs, sizes, off, remote, 1)
	if len(got) != 1 || string(got[0][28:]) != "hello, reader" {
		t.Fatalf("read %q", got)
	}
	// A segmented send of 10 datagrams of 1000 bytes and one of 300.
	payload := make([]byte, 10*1000+300)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	oob := make([]byte, unix.CmsgSpace(2))
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	cm.Level, cm.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	cm.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], 1000)
	_, _, err = sock.WriteMsgUDPAddrPort(payload, oob, remote)
	if errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) {
		t.Skipf("no UDP GSO here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	got = collect(t, r, bufs, sizes, off, remote, 11)
	checkSegments(t, false, false, got, 1000, false, payload)
	// Again, read with room for 4 packets a call: the super-packet comes
	// over three calls.
	if _, _, err = sock.WriteMsgUDPAddrPort(payload, oob, remote); err != nil {
		t.Fatal(err)
	}
	got = collect(t, r, bufs[:4], sizes[:4], off, remote, 11)
	checkSegments(t, false, false, got, 1000, false, payload)

	// ReadSuper hands the super-packet over whole. Not taken, the next
	// Read cuts it; taken (Done), the next read reads anew.
	if _, _, err = sock.WriteMsgUDPAddrPort(payload, oob, remote); err != nil {
		t.Fatal(err)
	}
	sp := readSuper(t, r, bufs, sizes, off, remote)
	if sp.Segments() != 11 {
		t.Fatalf("super-packet of %d segments, want 11", sp.Segments())
	}
	got = collect(t, r, bufs, sizes, off, remote, 11)
	checkSegments(t, false, false, got, 1000, false, payload)
	if _, _, err = sock.WriteMsgUDPAddrPort(payload, oob, remote); err != nil {
		t.Fatal(err)
	}
	sp = readSuper(t, r, bufs, sizes, off, remote)
	if !sp.InPlace() {
		t.Error("a Reader's super-packet cannot be cut in place")
	}
	got = got[:0]
	for i := range sp.Segments() {
		p := make([]byte, sp.SegmentLen(i)+3)
		got = append(got, p[:sp.WriteSegment(i, p)])
	}
	sp.Done()
	checkSegments(t, false, false, got, 1000, false, payload)
	if _, err := sock.WriteToUDPAddrPort([]byte("after the super-packet"), remote); err != nil {
		t.Fatal(err)
	}
	got = collect(t, r, bufs, sizes, off, remote, 1)
	if string(got[0][28:]) != "after the super-packet" {
		t.Fatalf("read %q after the super-packet was taken", got[0])
	}
}

// readSuper reads with ReadSuper until a super-packet to dst comes (other
// packets are skipped) and returns it.
func readSuper(t *testing.T, r *Reader, bufs [][]byte, sizes []int, off int, dst netip.AddrPort) *Super {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, sp, err := r.ReadSuper(bufs, sizes, off, true)
		if err != nil {
			t.Fatal(err)
		}
		if sp != nil {
			if n != 0 {
				t.Fatalf("ReadSuper: a super-packet and %d packets", n)
			}
			if d, _, ok := parseUDP(sp.Packet()); ok && d == dst {
				return sp
			}
			sp.Done()
		}
	}
	t.Fatal("no super-packet read")
	return nil
}

// A super-packet parsed with ParseSuper gives, segment by segment, the
// packets splitSuper cuts.
func TestParseSuper(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, tcp := range []bool{false, true} {
			h, p, _ := superPacket(v6, tcp, 5000, 1300, tcp)
			raw := make([]byte, vnetHdrLen, vnetHdrLen+len(p))
			raw[0], raw[1] = h.flags, h.gsoType
			binary.NativeEndian.PutUint16(raw[2:], h.hdrLen)
			binary.NativeEndian.PutUint16(raw[4:], h.gsoSize)
			binary.NativeEndian.PutUint16(raw[6:], h.csumStart)
			binary.NativeEndian.PutUint16(raw[8:], h.csumOffset)
			raw = append(raw, p...)
			var sp Super
			if err := ParseSuper(raw, &sp); err != nil {
				t.Fatal(err)
			}
			bufs, sizes := makeBufs(8, 1500)
			n, _, err := splitSuper(p, &h, bufs, sizes, 0, 0)
			if err != nil || n != sp.Segments() || n != 4 {
				t.Fatalf("v6 %v tcp %v: %d segments cut, %d parsed, err %v", v6, tcp, n, sp.Segments(), err)
			}
			for i := range n {
				seg := make([]byte, sp.SegmentLen(i))
				if k := sp.WriteSegment(i, seg); k != len(seg) || !bytes.Equal(seg, bufs[i][:sizes[i]]) {
					t.Fatalf("v6 %v tcp %v: segment %d differs from the cut one", v6, tcp, i)
				}
			}
			if err := ParseSuper(raw[:vnetHdrLen+10], &sp); err == nil {
				t.Fatalf("v6 %v tcp %v: a truncated super-packet parsed", v6, tcp)
			}
		}
	}
}

// collect reads until want UDP packets to dst arrived (others are
// skipped) and returns copies.
func collect(t *testing.T, r *Reader, bufs [][]byte, sizes []int, off int, dst netip.AddrPort, want int) [][]byte {
	t.Helper()
	var out [][]byte
	done := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() { close(done) })
	defer timer.Stop()
	for len(out) < want {
		select {
		case <-done:
			t.Fatalf("%d of %d packets read", len(out), want)
		default:
		}
		n, err := r.Read(bufs, sizes, off, true)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p := bufs[i][off : off+sizes[i]]
			if d, _, ok := parseUDP(p); ok && d == dst {
				out = append(out, bytes.Clone(p))
			}
		}
	}
	return out
}

// SegmentInPlace, taken in order, makes in the super-packet's own buffer
// the packets splitSuper cuts, each with SuperTail bytes of room after it
// that the caller may use (and put back); without that room it declines.
func TestSegmentInPlace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v6, tcp bool
		n, seg  int
		fin     bool
	}{
		{"tcp4", false, true, 10000, 1348, true},
		{"tcp6 64k", true, true, 65000, 1328, false},
		{"udp4", false, false, 7000, 1200, false},
		{"udp6 small segments", true, false, 64 * 50, 50, false},
		{"tcp4 headers only", false, true, 0, 1348, true},
		{"tcp4 segments shorter than headers", false, true, 4000, 40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p, _ := superPacket(tc.v6, tc.tcp, tc.n, tc.seg, tc.fin)
			raw := make([]byte, vnetHdrLen, vnetHdrLen+len(p)+SuperTail)
			raw[0], raw[1] = h.flags, h.gsoType
			binary.NativeEndian.PutUint16(raw[2:], h.hdrLen)
			binary.NativeEndian.PutUint16(raw[4:], h.gsoSize)
			binary.NativeEndian.PutUint16(raw[6:], h.csumStart)
			binary.NativeEndian.PutUint16(raw[8:], h.csumOffset)
			raw = append(raw, p...)
			var tight Super
			if err := ParseSuper(slices.Clip(raw), &tight); err != nil || tight.InPlace() || tight.SegmentInPlace(0) != nil {
				t.Fatalf("without room after it: err %v, in place %v", err, tight.InPlace())
			}
			bufs, sizes := makeBufs(2000, 1500)
			n, _, err := splitSuper(bytes.Clone(p), &h, bufs, sizes, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var sp Super
			if err := ParseSuper(raw, &sp); err != nil || !sp.InPlace() || sp.Segments() != n {
				t.Fatalf("err %v, in place %v, %d segments, cut %d", err, sp.InPlace(), sp.Segments(), n)
			}
			for i := range n {
				seg := sp.SegmentInPlace(i)
				if !bytes.Equal(seg, bufs[i][:sizes[i]]) {
					t.Fatalf("segment %d differs from the cut one", i)
				}
				if cap(seg)-len(seg) < SuperTail {
					t.Fatalf("segment %d: %d bytes of room after it", i, cap(seg)-len(seg))
				}
				// Scribble after it and put it back, as a sealer does.
				after := seg[len(seg) : len(seg)+SuperTail]
				saved := bytes.Clone(after)
				for j := range after {
					after[j] = 0xee
				}
				copy(after, saved)
			}
		})
	}
}
