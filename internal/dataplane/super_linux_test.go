//go:build linux

package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/tun"
)

// superRead builds what a TUN read with offloads returns for a TCP (with
// options) or UDP super-packet of n payload bytes cut at seg bytes: the
// virtio-net header, one IP and transport header with the pseudo-header
// sum in the checksum field, then the payload. It returns it and the
// payload.
func superRead(t testing.TB, src, dst netip.Addr, tcp bool, n, seg int, fin bool) ([]byte, []byte) {
	t.Helper()
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*5 + i/253)
	}
	v6 := src.Is6()
	ipLen, thLen, proto := 20, 8, uint8(packet.ProtoUDP)
	if v6 {
		ipLen = 40
	}
	if tcp {
		thLen, proto = 32, packet.ProtoTCP
	}
	p := make([]byte, ipLen+thLen+n)
	if v6 {
		p[0], p[6], p[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
		copy(p[8:], src.AsSlice())
		copy(p[24:], dst.AsSlice())
	} else {
		p[0], p[8], p[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		binary.BigEndian.PutUint16(p[4:], 0x4321)
		copy(p[12:], src.AsSlice())
		copy(p[16:], dst.AsSlice())
	}
	th := p[ipLen:]
	binary.BigEndian.PutUint16(th[0:], 1111)
	binary.BigEndian.PutUint16(th[2:], 2222)
	var gso uint8 = 5 // VIRTIO_NET_HDR_GSO_UDP_L4
	csumOff := 6
	if tcp {
		binary.BigEndian.PutUint32(th[4:], 0xffffff00) // wraps
		th[12] = byte(thLen/4) << 4
		th[13] = 0x10 | 0x08 // ACK PSH
		if fin {
			th[13] |= 0x01
		}
		copy(th[20:32], []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8})
		csumOff, gso = 16, 1 // VIRTIO_NET_HDR_GSO_TCPV4
		if v6 {
			gso = 4
		}
	} else {
		binary.BigEndian.PutUint16(th[4:], uint16(len(th)))
	}
	copy(p[ipLen+thLen:], payload)
	binary.BigEndian.PutUint16(th[csumOff:], 0x5555) // partial: to be replaced
	h := make([]byte, 10)
	h[0], h[1] = 1, gso // NEEDS_CSUM
	binary.NativeEndian.PutUint16(h[2:], uint16(ipLen+thLen))
	binary.NativeEndian.PutUint16(h[4:], uint16(seg))
	binary.NativeEndian.PutUint16(h[6:], uint16(ipLen))
	binary.NativeEndian.PutUint16(h[8:], uint16(csumOff))
	// Room after it, as a Reader's buffer has (tun.Super.InPlace).
	return append(append(make([]byte, 0, len(h)+len(p)+tun.SuperTail), h...), p...), payload
}

// checkInner verifies packets delivered from a super-packet: valid
// transport checksums, FIN and PSH on the last TCP segment only, and the
// payload carried in order.
func checkInner(t *testing.T, pkts [][]byte, tcp, fin bool, payload []byte) {
	t.Helper()
	var got []byte
	for i, p := range pkts {
		var l packet.Layout
		if err := packet.ParseLayout(p, &l); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		var f packet.Flow
		if err := packet.ParseFlow(p, &f); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		th := p[l.ProtoOff:l.End]
		sum := packet.PseudoHeaderSum(f.Proto, f.Src, f.Dst, uint32(len(th)))
		if packet.Checksum(th, uint32(sum)) != 0xffff {
			t.Fatalf("packet %d: bad transport checksum", i)
		}
		hl := 8
		if tcp {
			hl = int(th[12]>>4) * 4
			want := byte(0x10)
			if i == len(pkts)-1 {
				want |= 0x08
				if fin {
					want |= 0x01
				}
			}
			if th[13] != want {
				t.Fatalf("packet %d of %d: TCP flags %#x, want %#x", i, len(pkts), th[13], want)
			}
		}
		got = append(got, th[hl:]...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("delivered %d payload bytes, not the %d sent", len(got), len(payload))
	}
}

// A super-packet sealed straight into the arena, its segments made in its
// own buffer and sealed from there (in place) or written into the arena
// and sealed there, opens, at the peer, to the very packets that cutting
// it into buffers and EncryptTo give; each segment is one ESP packet,
// adjacent in the arena, with consecutive sequence numbers, counted by the
// SA and the engine.
func TestEncryptSuper(t *testing.T) {
	for _, inPlace := range []bool{true, false} {
		t.Run(fmt.Sprintf("in place %v", inPlace), func(t *testing.T) { testEncryptSuper(t, inPlace) })
	}
}

func testEncryptSuper(t *testing.T, inPlace bool) {
	for _, tc := range []struct {
		name   string
		la, ra string
		tcp    bool
		n, seg int
		fin    bool
	}{
		{"tcp4", "10.1.0.1", "10.1.0.2", true, 20000, 1348, false},
		{"tcp4 fin, exact", "10.1.0.1", "10.1.0.2", true, 8 * 1000, 1000, true},
		{"tcp6 64k", "fd00::1", "fd00::2", true, 65000, 1328, true},
		{"udp4", "10.1.0.1", "10.1.0.2", false, 7001, 1200, false},
		{"udp6", "fd00::1", "fd00::2", false, 5000, 1232, false},
		{"tcp4 one short segment", "10.1.0.1", "10.1.0.2", true, 300, 1348, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la, ra := netip.MustParseAddr(tc.la), netip.MustParseAddr(tc.ra)
			a, b := peers(t, sad.Tunnel, la, ra)
			raw, payload := superRead(t, la, ra, tc.tcp, tc.n, tc.seg, tc.fin)
			if !inPlace {
				raw = slices.Clip(raw)
			}
			var sp tun.Super
			if err := tun.ParseSuper(raw, &sp); err != nil {
				t.Fatal(err)
			}
			if sp.InPlace() != inPlace {
				t.Fatalf("InPlace %v", sp.InPlace())
			}
			n := sp.Segments()

			// The usual way: cut into buffers, then EncryptTo.
			pkts := make([][]byte, n)
			for i := range pkts {
				pkts[i] = make([]byte, sp.SegmentLen(i))
				sp.WriteSegment(i, pkts[i])
			}
			bufs, sizes := tunBatch(pkts...)
			arena := make([]byte, 0, n*(1500+Tailroom))
			ds, _ := a.EncryptTo(bufs, sizes, Headroom, make([]Datagram, 0, n), arena)
			want := b.Decrypt(carry(ds, addrA), nil, tunOffset)
			if len(want) != n {
				t.Fatalf("usual way: %d of %d packets delivered", len(want), n)
			}
			for i := range want {
				want[i] = bytes.Clone(want[i][tunOffset:])
			}

			// Straight into the arena.
			out := sa(t, a)
			seq0, pk0, by0 := out.ESP().LastSeq(), out.Packets(), out.Bytes()
			tun0, tunBytes0 := a.Stats.TunPackets.Load(), a.Stats.TunBytes.Load()
			arena = make([]byte, 0, n*(1500+Tailroom))
			ds, arena, ok := a.encryptSuper(&sp, make([]Datagram, 0, n), arena, 1500)
			if !ok || len(ds) != n {
				t.Fatalf("encryptSuper: taken %v, %d datagrams for %d segments, stats %+v", ok, len(ds), n, &a.Stats)
			}
			var total uint64
			for i, d := range ds {
				if &d.Buf[0] != &arena[:1][0] {
					t.Fatalf("datagram %d not in the arena", i)
				}
				if i > 0 && ds[i-1].End != d.Off {
					t.Errorf("datagram %d at %d, the one before ends at %d", i, d.Off, ds[i-1].End)
				}
				if s := binary.BigEndian.Uint32(d.Payload()[4:]); uint64(s) != seq0+1+uint64(i) {
					t.Errorf("datagram %d: sequence number %d, want %d", i, s, seq0+1+uint64(i))
				}
				total += uint64(len(pkts[i]))
			}
			if len(arena) != ds[n-1].End {
				t.Errorf("arena length %d, last datagram ends at %d", len(arena), ds[n-1].End)
			}
			if got := out.Packets() - pk0; got != uint64(n) {
				t.Errorf("SA counted %d packets, want %d", got, n)
			}
			if got := out.Bytes() - by0; got != total {
				t.Errorf("SA counted %d bytes, want %d", got, total)
			}
			if got := a.Stats.TunPackets.Load() - tun0; got != uint64(n) {
				t.Errorf("engine counted %d packets, want %d", got, n)
			}
			if got := a.Stats.TunBytes.Load() - tunBytes0; got != total {
				t.Errorf("engine counted %d bytes, want %d", got, total)
			}
			got := b.Decrypt(carry(ds, addrA), nil, tunOffset)
			if len(got) != n {
				t.Fatalf("%d of %d packets delivered, peer stats %+v", len(got), n, &b.Stats)
			}
			for i := range got {
				got[i] = got[i][tunOffset:]
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("packet %d differs from the usual way's", i)
				}
			}
			checkInner(t, got, tc.tcp, tc.fin, payload)
		})
	}
}

// sa returns engine e's outbound SA of child 1.
func sa(t *testing.T, e *Engine) *sad.SA {
	t.Helper()
	s := e.sad.Outbound(1)
	if s == nil {
		t.Fatal("no outbound SA")
	}
	return s
}

// encryptSuper leaves alone, for the usual way to count or seal packet by
// packet, every super-packet it cannot take whole.
func TestEncryptSuperDeclines(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	const n, seg = 10000, 1348
	segs := (n + seg - 1) / seg
	for _, tc := range []struct {
		name  string
		mode  sad.Mode
		setup func(t *testing.T, e *Engine)
		src   netip.Addr // of the inner packets
		out   int        // capacity for datagrams
		arena int        // capacity of the arena
		room  int
	}{
		{name: "fits (control)", mode: sad.Tunnel},
		{name: "no policy", mode: sad.Tunnel, src: netip.MustParseAddr("10.9.9.9")},
		{name: "no SA", mode: sad.Tunnel, setup: func(t *testing.T, e *Engine) { e.sad.Delete(sa(t, e)) }},
		{name: "transport mode", mode: sad.Transport},
		{name: "datagrams short", mode: sad.Tunnel, out: segs - 1},
		{name: "arena short", mode: sad.Tunnel, arena: segs * (seg + 40)},
		{name: "no arena", mode: sad.Tunnel, arena: -1},
		{name: "segments over room", mode: sad.Tunnel, room: seg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := peers(t, tc.mode, la, ra)
			if tc.setup != nil {
				tc.setup(t, a)
			}
			src := la
			if tc.src.IsValid() {
				src = tc.src
			}
			raw, _ := superRead(t, src, ra, true, n, seg, false)
			var sp tun.Super
			if err := tun.ParseSuper(raw, &sp); err != nil {
				t.Fatal(err)
			}
			out := make([]Datagram, 3, 3+max(tc.out, segs))
			if tc.out > 0 {
				out = out[: 3 : 3+tc.out]
			}
			var arena []byte
			switch {
			case tc.arena > 0:
				arena = make([]byte, 7, 7+tc.arena)
			case tc.arena == 0:
				arena = make([]byte, 7, 7+segs*(1500+Tailroom))
			}
			room := 1500
			if tc.room > 0 {
				room = tc.room
			}
			before := fmt.Sprintf("%+v", &a.Stats)
			got, garena, ok := a.encryptSuper(&sp, out, arena, room)
			if tc.name == "fits (control)" {
				if !ok || len(got) != 3+segs {
					t.Fatalf("not taken: %v, %d datagrams", ok, len(got))
				}
				return
			}
			if ok || len(got) != 3 || len(garena) != len(arena) {
				t.Fatalf("taken %v: %d datagrams, arena %d bytes", ok, len(got), len(garena))
			}
			if after := fmt.Sprintf("%+v", &a.Stats); after != before {
				t.Errorf("counters moved: %s, were %s", after, before)
			}
		})
	}
}

// BenchmarkSuperToArena takes a 64 KB TCP super-packet to 48 ESP packets
// in the arena: cut into buffers and sealed from there (cut, the way
// without encryptSuper), written and sealed in place in the arena (arena),
// or made in the super-packet's buffer and sealed from there (inplace).
// None allocates.
func BenchmarkSuperToArena(b *testing.B) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	a, _ := peers(b, sad.Tunnel, la, ra)
	raw, _ := superRead(b, la, ra, true, 48*1348, 1348, false)
	var sp tun.Super
	if err := tun.ParseSuper(raw, &sp); err != nil {
		b.Fatal(err)
	}
	n := sp.Segments()
	const room = 1400
	tb := newTxBatch(64, room) // as the outbound loop has them
	bufs, sizes, arena, ds := tb.bufs, tb.sizes, tb.arena, tb.ds
	b.Run("cut", func(b *testing.B) {
		b.SetBytes(int64(len(raw) - 10))
		b.ReportAllocs()
		for b.Loop() {
			for i := range n {
				sizes[i] = sp.WriteSegment(i, bufs[i][Headroom:])
			}
			ds, arena = a.EncryptTo(bufs[:n], sizes[:n], Headroom, ds[:0], arena[:0])
			if len(ds) != n {
				b.Fatal(len(ds))
			}
		}
	})
	b.Run("arena", func(b *testing.B) {
		var sp tun.Super
		if err := tun.ParseSuper(slices.Clip(raw), &sp); err != nil || sp.InPlace() {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(raw) - 10))
		b.ReportAllocs()
		for b.Loop() {
			var ok bool
			ds, arena, ok = a.encryptSuper(&sp, ds[:0], arena[:0], room)
			if !ok || len(ds) != n {
				b.Fatal(ok, len(ds))
			}
		}
	})
	// Last: it writes over the super-packet (the segments' payload
	// changes, their headers and the work stay the same).
	b.Run("inplace", func(b *testing.B) {
		if !sp.InPlace() {
			b.Fatal("not in place")
		}
		b.SetBytes(int64(len(raw) - 10))
		b.ReportAllocs()
		for b.Loop() {
			var ok bool
			ds, arena, ok = a.encryptSuper(&sp, ds[:0], arena[:0], room)
			if !ok || len(ds) != n {
				b.Fatal(ok, len(ds))
			}
		}
	})
}

// Sealing a super-packet into the arena allocates nothing.
func TestEncryptSuperZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	la, ra := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	a, _ := peers(t, sad.Tunnel, la, ra)
	raw, _ := superRead(t, la, ra, true, 40000, 1328, false)
	var sp tun.Super
	if err := tun.ParseSuper(raw, &sp); err != nil {
		t.Fatal(err)
	}
	tb := newTxBatch(64, 1400)
	allocs := testing.AllocsPerRun(50, func() {
		var ok bool
		tb.ds, tb.arena, ok = a.encryptSuper(&sp, tb.ds[:0], tb.arena[:0], tb.room)
		if !ok || len(tb.ds) != sp.Segments() {
			t.Fatalf("taken %v, %d datagrams", ok, len(tb.ds))
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per super-packet", allocs)
	}
}

// TestEncryptSuperLimits: the segments of a super-packet are counted a run
// at a time, exact against the SA's packet limits: with a hard limit of 5
// and a soft one of 3, a 70-segment super-packet (two runs) gives 5 ESP
// packets, sequence numbers 1 to 5, and 65 segments dropped as expired,
// whether the segments are made in place or in the arena.
func TestEncryptSuperLimits(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	for _, inPlace := range []bool{false, true} {
		a, _ := peers(t, sad.Tunnel, la, ra)
		engine, err := esp.NewSA(espCfg(0x3003, 0x03, true))
		if err != nil {
			t.Fatal(err)
		}
		const limit, segs, seg = 5, 70, 100
		out, _, err := a.sad.Replace(sad.Config{Proto: sad.ESP, Dir: sad.Outbound, Mode: sad.Tunnel, Engine: engine, Child: 1,
			Peer: addrB, Lifetime: sad.Lifetime{Soft: sad.Limits{Packets: 3}, Hard: sad.Limits{Packets: limit}}})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := superRead(t, la, ra, true, segs*seg, seg, false)
		if !inPlace {
			raw = slices.Clip(raw)
		}
		var sp tun.Super
		if err := tun.ParseSuper(raw, &sp); err != nil {
			t.Fatal(err)
		}
		if sp.Segments() != segs {
			t.Fatalf("%d segments, want %d", sp.Segments(), segs)
		}
		ds, _, ok := a.encryptSuper(&sp, make([]Datagram, 0, segs), make([]byte, 0, segs*(1500+Tailroom)), 1500)
		if !ok || len(ds) != limit {
			t.Fatalf("in place %v: taken %v, %d datagrams, want %d", inPlace, ok, len(ds), limit)
		}
		for i, d := range ds {
			if seq := binary.BigEndian.Uint32(d.Payload()[4:8]); seq != uint32(i+1) {
				t.Errorf("in place %v: datagram %d has sequence number %d", inPlace, i, seq)
			}
		}
		if out.Packets() != limit || out.Drops(sad.DropExpired) != segs-limit || out.Alive() || a.Stats.NoSA.Load() != segs-limit {
			t.Errorf("in place %v: SA %d packets, %d expired drops, alive %v; engine NoSA %d", inPlace,
				out.Packets(), out.Drops(sad.DropExpired), out.Alive(), a.Stats.NoSA.Load())
		}
		if a.Stats.TunPackets.Load() != segs {
			t.Errorf("in place %v: %d cleartext packets counted, want %d", inPlace, a.Stats.TunPackets.Load(), segs)
		}
	}
}
