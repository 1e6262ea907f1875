//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/packet"
)

// segmentsOf cuts a super-packet with splitSuper into packets with valid
// checksums, each at offset 16 of its own buffer.
func segmentsOf(t *testing.T, v6, tcp bool, n, seg int, fin bool) ([][]byte, []byte) {
	t.Helper()
	h, p, payload := superPacket(v6, tcp, n, seg, fin)
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 16+seg+100)
	}
	sizes := make([]int, len(bufs))
	k, _, err := splitSuper(p, &h, bufs, sizes, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, k)
	for i := range k {
		out[i] = bufs[i][:16+sizes[i]]
	}
	return out, payload
}

// joined is what the kernel makes of a super-packet written with header h:
// the head's headers and every packet's payload.
func joined(run [][]byte, h *vnetHdr) []byte {
	out := bytes.Clone(run[0][16:])
	for _, b := range run[1:] {
		out = append(out, b[16+int(h.hdrLen):]...)
	}
	return out
}

func TestCoalesce(t *testing.T) {
	w := &Writer{hdrLen: vnetHdrLen, uso: true}
	for _, tc := range []struct {
		name    string
		v6, tcp bool
		n, seg  int
	}{
		{"tcp4", false, true, 20 * 1300, 1300},
		{"tcp4 short last", false, true, 20*1300 + 77, 1300},
		{"tcp6", true, true, 10 * 1200, 1200},
		{"udp4", false, false, 30 * 64, 64},
		{"udp6 short last", true, false, 30*500 + 3, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run, payload := segmentsOf(t, tc.v6, tc.tcp, tc.n, tc.seg, false)
			var h vnetHdr
			k := w.coalesce(run, 16, &h)
			if k != len(run) {
				t.Fatalf("coalesced %d of %d", k, len(run))
			}
			wantType := uint8(vnetGSOUDPL4)
			ipLen, thLen, csumOff := 20, 8, 6
			if tc.v6 {
				ipLen = 40
			}
			if tc.tcp {
				wantType, thLen, csumOff = vnetGSOTCPv4, 32, 16
				if tc.v6 {
					wantType = vnetGSOTCPv6
				}
			}
			if h.gsoType != wantType || h.flags != vnetFNeedsCsum || int(h.gsoSize) != tc.seg ||
				int(h.csumStart) != ipLen || int(h.csumOffset) != csumOff || int(h.hdrLen) != ipLen+thLen {
				t.Fatalf("header %+v", h)
			}
			sp := joined(run, &h)
			if !bytes.Equal(sp[ipLen+thLen:], payload) {
				t.Fatal("the super-packet does not carry the payload")
			}
			if tc.v6 {
				if int(binary.BigEndian.Uint16(sp[4:])) != len(sp)-40 {
					t.Fatalf("IPv6 payload length %d for %d bytes", binary.BigEndian.Uint16(sp[4:]), len(sp))
				}
			} else if int(binary.BigEndian.Uint16(sp[2:])) != len(sp) || packet.Checksum(sp[:20], 0) != 0xffff {
				t.Fatal("IPv4 length or header checksum wrong")
			}
			// The kernel completes the checksum from the pseudo-header
			// sum: finishChecksum does the same, and the result must
			// verify.
			if err := finishChecksum(sp, ipLen, csumOff); err != nil {
				t.Fatal(err)
			}
			s := parseSegment(sp, true)
			proto := uint8(packet.ProtoUDP)
			if tc.tcp {
				proto = packet.ProtoTCP
			} else if int(binary.BigEndian.Uint16(sp[ipLen+4:])) != len(sp)-ipLen {
				t.Fatal("UDP length wrong")
			}
			if !checksumOK(sp, &s, proto) {
				t.Fatal("the completed checksum does not verify")
			}
		})
	}
}

// Runs stop where a packet may not join them.
func TestCoalesceStops(t *testing.T) {
	w := &Writer{hdrLen: vnetHdrLen, uso: true}
	fresh := func() [][]byte {
		run, _ := segmentsOf(t, false, true, 8*1000, 1000, false)
		return run
	}
	fix := func(p []byte) { // recompute the TCP checksum after an edit
		th := p[16+20:]
		th[16], th[17] = 0, 0
		l := uint32(len(th))
		sum := packet.Checksum(p[16+12:16+16], uint32(packet.ProtoTCP)+l)
		sum = packet.Checksum(p[16+16:16+20], uint32(sum))
		binary.BigEndian.PutUint16(th[16:], ^packet.Checksum(th, uint32(sum)))
	}
	for _, tc := range []struct {
		name   string
		edit   func(run [][]byte)
		want   int
		authed int // what an authenticated writer coalesces; 0: want
	}{
		{"all", func([][]byte) {}, 8, 0},
		{"gap in sequence", func(r [][]byte) {
			binary.BigEndian.PutUint32(r[3][16+24:], binary.BigEndian.Uint32(r[3][16+24:])+1)
			fix(r[3])
		}, 3, 0},
		{"other ACK", func(r [][]byte) { r[2][16+28]++; fix(r[2]) }, 2, 0},
		{"PSH ends the run", func(r [][]byte) { r[4][16+20+13] |= tcpFlagPSH; fix(r[4]) }, 5, 0},
		{"FIN", func(r [][]byte) { r[4][16+20+13] |= tcpFlagFIN; fix(r[4]) }, 4, 0},
		// Checksums are verified unless the packets were authenticated
		// (SetAuthenticated): then they are taken as they are.
		{"bad checksum", func(r [][]byte) { r[5][len(r[5])-1] ^= 1 }, 5, 8},
		{"bad head checksum", func(r [][]byte) { r[0][len(r[0])-1] ^= 1 }, 1, 8},
		{"other port", func(r [][]byte) { r[6][16+21]++; fix(r[6]) }, 6, 0},
		{"other TTL", func(r [][]byte) {
			r[1][16+8]--
			r[1][16+10], r[1][16+11] = 0, 0
			binary.BigEndian.PutUint16(r[1][16+10:], ^packet.Checksum(r[1][16:16+20], 0))
		}, 1, 0},
		{"other options", func(r [][]byte) { r[7][16+20+31]++; fix(r[7]) }, 7, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := fresh()
			tc.edit(run)
			var h vnetHdr
			if k := w.coalesce(run, 16, &h); k != tc.want {
				t.Fatalf("coalesced %d, want %d", k, tc.want)
			}
			want := tc.want
			if tc.authed != 0 {
				want = tc.authed
			}
			run = fresh()
			tc.edit(run)
			aw := &Writer{hdrLen: vnetHdrLen, uso: true}
			aw.SetAuthenticated(true)
			if k := aw.coalesce(run, 16, &h); k != want {
				t.Fatalf("authenticated: coalesced %d, want %d", k, want)
			}
		})
	}
	// Without USO, UDP is written packet by packet.
	run, _ := segmentsOf(t, false, false, 8*100, 100, false)
	var h vnetHdr
	if k := (&Writer{hdrLen: vnetHdrLen}).coalesce(run, 16, &h); k != 1 {
		t.Fatalf("UDP coalesced %d without USO", k)
	}
}

// A Writer on a real TUN: UDP datagrams written as one super-packet reach
// a local socket one by one, intact; a packet with a bad checksum is not
// coalesced with the others and the kernel drops it alone.
func TestWriterKernel(t *testing.T) {
	inNetns(t)
	const name = "gitunw0"
	dev, err := CreateKernel(name, 1400)
	if err != nil {
		t.Fatalf("CreateKernel: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	if _, err := Configure(name, Config{Addresses: []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24")}}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	w := NewWriter(dev)
	if w == nil {
		t.Fatal("NewWriter: nil for a kernel TUN")
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.77.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	local := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	remote := netip.MustParseAddrPort("10.77.0.2:5555")
	// Small payloads go to the kernel copied together (gatherMax), larger
	// ones as one iovec each.
	for _, size := range []int{200, gatherMax + 300} {
		writeAndCheck(t, w, sock, remote, local, size)
	}
	if !w.uso {
		t.Log("no USO on this kernel: the datagrams went one by one")
	}
}

// writeAndCheck writes 20 UDP datagrams of size bytes, the eighth with a
// bad checksum, from remote to local through w and checks that sock gets
// the 19 good ones intact and in order and not the bad one.
func writeAndCheck(t *testing.T, w *Writer, sock *net.UDPConn, remote, local netip.AddrPort, size int) {
	t.Helper()
	const count = 20
	bufs := make([][]byte, count)
	for i := range bufs {
		payload := bytes.Repeat([]byte{byte(i)}, size)
		bufs[i] = append(make([]byte, 16), udpPacket(remote, local, payload)...)
	}
	bufs[7][len(bufs[7])-1] ^= 0xff // a bad checksum
	n, err := w.Write(bufs, 16)
	if err != nil || n != count {
		t.Fatalf("%d bytes: Write = %d, %v", size, n, err)
	}
	got := make([]byte, 2000)
	for i := range count {
		if i == 7 {
			continue
		}
		sock.SetReadDeadline(time.Now().Add(3 * time.Second))
		k, from, err := sock.ReadFromUDPAddrPort(got)
		if err != nil {
			t.Fatalf("%d bytes: datagram %d: %v", size, i, err)
		}
		if from != remote || !bytes.Equal(got[:k], bytes.Repeat([]byte{byte(i)}, size)) {
			t.Fatalf("%d bytes: datagram %d: %d bytes from %v: % x...", size, i, k, from, got[:8])
		}
	}
	sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if k, _, err := sock.ReadFromUDPAddrPort(got); err == nil {
		t.Fatalf("%d bytes: the bad datagram arrived (%d bytes)", size, k)
	}
}

// BenchmarkSplitSuper cuts a 64 KB TCP super-packet into 1348-byte
// segments, as a TUN read does: no allocation.
func BenchmarkSplitSuper(b *testing.B) {
	h, p, _ := superPacket(false, true, 48*1348, 1348, false)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 128+1500)
	}
	sizes := make([]int, len(bufs))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := splitSuper(p, &h, bufs, sizes, 128, 0); err != nil || n != 48 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkCoalesce coalesces 48 TCP segments into one super-packet
// header, as a TUN write does (checksums verified): no allocation.
func BenchmarkCoalesce(b *testing.B) {
	h, p, _ := superPacket(false, true, 48*1348, 1348, false)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 16+1500)
	}
	sizes := make([]int, len(bufs))
	n, _, err := splitSuper(p, &h, bufs, sizes, 16, 0)
	if err != nil {
		b.Fatal(err)
	}
	run := make([][]byte, n)
	pristine := make([][]byte, n)
	for i := range n {
		run[i] = bufs[i][:16+sizes[i]]
		pristine[i] = bytes.Clone(run[i])
	}
	w := &Writer{hdrLen: vnetHdrLen, uso: true}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		copy(run[0], pristine[0]) // coalesce rewrites the head
		var vh vnetHdr
		if k := w.coalesce(run, 16, &vh); k != n {
			b.Fatal(k)
		}
	}
}

// Reading and writing a real TUN through a Reader and a Writer allocates
// nothing.
func TestReaderWriterZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	inNetns(t)
	const name = "gitunz0"
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
	r, w := NewReader(dev), NewWriter(dev)
	if r == nil || w == nil {
		t.Fatal("no Reader or Writer for a kernel TUN")
	}
	sock, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.77.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	local := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	remote := netip.MustParseAddrPort("10.78.1.1:9999")
	const off = 32
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, off+1400)
	}
	sizes := make([]int, len(bufs))
	payload := []byte("to the reader")
	read := func() {
		if _, err := sock.WriteToUDPAddrPort(payload, remote); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := r.Read(bufs, sizes, off, true)
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 && sizes[0] == 28+len(payload) {
				return
			}
		}
	}
	out := make([][]byte, 16)
	for i := range out {
		out[i] = append(make([]byte, 16), udpPacket(netip.MustParseAddrPort("10.78.1.1:5555"), local, bytes.Repeat([]byte{1}, 100))...)
	}
	pristine := make([][]byte, len(out))
	for i := range out {
		pristine[i] = bytes.Clone(out[i])
	}
	in := make([]byte, 2000)
	write := func() {
		for i := range out {
			copy(out[i], pristine[i]) // Write rewrote the first's headers
		}
		if _, err := w.Write(out, 16); err != nil {
			t.Fatal(err)
		}
		for range out {
			sock.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := sock.ReadFromUDPAddrPort(in); err != nil {
				t.Fatal(err)
			}
		}
	}
	read()
	write()
	if a := testing.AllocsPerRun(100, read); a != 0 {
		t.Errorf("Reader: %v allocations per read", a)
	}
	if a := testing.AllocsPerRun(100, write); a != 0 {
		t.Errorf("Writer: %v allocations per 16-packet write", a)
	}
}
