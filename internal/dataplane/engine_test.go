package dataplane

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/xform"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

var (
	addrA = netip.MustParseAddrPort("192.0.2.1:4500")
	addrB = netip.MustParseAddrPort("192.0.2.2:4500")
)

func espCfg(spi uint32, key byte, esn bool) *esp.Config {
	enc, _ := xform.LookupEnc("aes128gcm16")
	k := bytes.Repeat([]byte{key}, enc.KeyLen())
	return &esp.Config{SPI: spi, Enc: enc, EncKey: k, ESN: esn}
}

// peers returns two engines with one static child between them.
func peers(t testing.TB, mode sad.Mode, la, ra netip.Addr) (a, b *Engine) {
	t.Helper()
	mk := func(local, remote netip.Addr, peer netip.AddrPort, in, out uint32) *Engine {
		e := New(spd.New(spd.Discard), sad.New(sad.Options{}), nil)
		c := &StaticChild{
			ID: 1, Mode: mode,
			Local: []netip.Prefix{netip.PrefixFrom(local, local.BitLen())}, Remote: []netip.Prefix{netip.PrefixFrom(remote, remote.BitLen())},
			InnerLocal: local, InnerRemote: remote, Peer: peer,
			In: espCfg(in, byte(in), true), Out: espCfg(out, byte(out), true),
		}
		if err := e.InstallStatic(c); err != nil {
			t.Fatal(err)
		}
		return e
	}
	return mk(la, ra, addrB, 0x1001, 0x2002), mk(ra, la, addrA, 0x2002, 0x1001)
}

func udpPacket(t testing.TB, src, dst netip.Addr, payload []byte) []byte {
	var ip gopacket.NetworkLayer
	var l gopacket.SerializableLayer
	udp := &layers.UDP{SrcPort: 1111, DstPort: 2222}
	if src.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()), Flags: layers.IPv4DontFragment}
		ip, l = v4, v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ip, l = v6, v6
	}
	udp.SetNetworkLayerForChecksum(ip)
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, l, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b.Bytes()...)
}

// tunBatch puts packets into buffers at Headroom, as a TUN read would.
func tunBatch(pkts ...[]byte) ([][]byte, []int) {
	bufs := make([][]byte, len(pkts))
	sizes := make([]int, len(pkts))
	for i, p := range pkts {
		bufs[i] = make([]byte, BufferSize)
		copy(bufs[i][Headroom:], p)
		sizes[i] = len(p)
	}
	return bufs, sizes
}

// carry moves datagrams "over the wire" into fresh buffers, as a UDP read
// would, marking them as coming from addr.
func carry(ds []Datagram, addr netip.AddrPort) []Datagram {
	out := make([]Datagram, len(ds))
	for i, d := range ds {
		buf := make([]byte, BufferSize)
		n := copy(buf[Headroom:], d.Payload())
		out[i] = Datagram{Buf: buf, Off: Headroom, End: Headroom + n, Addr: addr}
	}
	return out
}

const tunOffset = 16

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   sad.Mode
		la, ra string
	}{
		{"tunnel v4", sad.Tunnel, "10.1.0.1", "10.1.0.2"},
		{"tunnel v6", sad.Tunnel, "fd00::1", "fd00::2"},
		{"transport v4", sad.Transport, "192.0.2.1", "192.0.2.2"},
		{"transport v6", sad.Transport, "2001:db8::1", "2001:db8::2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la, ra := netip.MustParseAddr(tc.la), netip.MustParseAddr(tc.ra)
			a, b := peers(t, tc.mode, la, ra)
			p1 := udpPacket(t, la, ra, []byte("first"))
			p2 := udpPacket(t, la, ra, bytes.Repeat([]byte("x"), 1300))
			bufs, sizes := tunBatch(p1, p2)
			ds := a.Encrypt(bufs, sizes, Headroom, nil)
			if len(ds) != 2 || ds[0].Addr != addrB {
				t.Fatalf("encrypt: %d datagrams (%+v), stats %+v", len(ds), ds, &a.Stats)
			}
			for _, d := range ds {
				if bytes.Contains(d.Payload(), []byte("first")) {
					t.Fatal("cleartext in ESP")
				}
			}
			out := b.Decrypt(carry(ds, addrA), nil, tunOffset)
			if len(out) != 2 {
				t.Fatalf("decrypt: %d packets, stats %+v", len(out), &b.Stats)
			}
			for i, want := range [][]byte{p1, p2} {
				if got := out[i][tunOffset:]; !bytes.Equal(got, want) {
					t.Fatalf("packet %d:\n got %x\nwant %x", i, got, want)
				}
			}
			sa := b.sad.Inbound(sad.ESP, 0x2002)
			if sa.Packets() != 2 {
				t.Fatalf("inbound SA counted %d packets", sa.Packets())
			}
		})
	}
}

func TestFailClosed(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	a, _ := peers(t, sad.Tunnel, la, ra)
	a.sad.DeleteChild(1) // the SAs are gone, the policy stays
	bufs, sizes := tunBatch(udpPacket(t, la, ra, []byte("secret")))
	if ds := a.Encrypt(bufs, sizes, Headroom, nil); len(ds) != 0 {
		t.Fatalf("sent %d datagrams without an SA", len(ds))
	}
	if a.Stats.NoSA.Load() != 1 {
		t.Fatalf("NoSA = %d", a.Stats.NoSA.Load())
	}
	select {
	case acq := <-a.Acquires():
		if acq.Child != 1 || acq.Flow.Dst != ra {
			t.Fatalf("acquire %+v", acq)
		}
	default:
		t.Fatal("no acquire raised")
	}
	// Traffic no policy covers is discarded (the default), not sent.
	bufs, sizes = tunBatch(udpPacket(t, la, netip.MustParseAddr("10.9.9.9"), []byte("x")))
	if ds := a.Encrypt(bufs, sizes, Headroom, nil); len(ds) != 0 || a.Stats.Discarded.Load() != 1 {
		t.Fatalf("unprotected traffic: %d datagrams, discarded %d", len(ds), a.Stats.Discarded.Load())
	}
}

// EncryptTo seals tunnel-mode packets back to back into the arena while
// it has room, in place after that (transport mode always in place); the
// datagrams open to the packets either way.
func TestEncryptToArena(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   sad.Mode
		la, ra string
		arena  int // capacity
	}{
		{"tunnel, room for all", sad.Tunnel, "10.1.0.1", "10.1.0.2", 8 * (1400 + Tailroom)},
		{"tunnel, room for two", sad.Tunnel, "fd00::1", "fd00::2", 2*(1400+Tailroom) + 10},
		{"transport", sad.Transport, "192.0.2.1", "192.0.2.2", 8 * (1400 + Tailroom)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la, ra := netip.MustParseAddr(tc.la), netip.MustParseAddr(tc.ra)
			a, b := peers(t, tc.mode, la, ra)
			var pkts [][]byte
			for i := range 5 {
				pkts = append(pkts, udpPacket(t, la, ra, bytes.Repeat([]byte{byte('a' + i)}, 1300)))
			}
			bufs, sizes := tunBatch(pkts...)
			arena := make([]byte, 0, tc.arena)
			ds, arena := a.EncryptTo(bufs, sizes, Headroom, nil, arena)
			if len(ds) != len(pkts) {
				t.Fatalf("%d datagrams for %d packets, stats %+v", len(ds), len(pkts), &a.Stats)
			}
			inArena := 0
			for i, d := range ds {
				if len(arena) > 0 && &d.Buf[0] == &arena[:1][0] {
					inArena++
					if i > 0 && &ds[i-1].Buf[0] == &d.Buf[0] && ds[i-1].End != d.Off {
						t.Errorf("datagram %d at %d, the one before ends at %d", i, d.Off, ds[i-1].End)
					}
				}
			}
			want := 0
			if tc.mode == sad.Tunnel {
				want = min(len(pkts), tc.arena/(len(pkts[0])+Tailroom))
			}
			if inArena != want {
				t.Errorf("%d datagrams in the arena, want %d", inArena, want)
			}
			if inArena > 0 && len(arena) != ds[inArena-1].End {
				t.Errorf("arena length %d, last datagram in it ends at %d", len(arena), ds[inArena-1].End)
			}
			out := b.Decrypt(carry(ds, addrA), nil, tunOffset)
			if len(out) != len(pkts) {
				t.Fatalf("decrypt: %d packets, stats %+v", len(out), &b.Stats)
			}
			for i, p := range pkts {
				if !bytes.Equal(out[i][tunOffset:], p) {
					t.Errorf("packet %d differs", i)
				}
			}
		})
	}
}

func TestInboundRejections(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	a, b := peers(t, sad.Tunnel, la, ra)
	seal := func(pkt []byte) []Datagram {
		bufs, sizes := tunBatch(pkt)
		return carry(a.Encrypt(bufs, sizes, Headroom, nil), addrA)
	}
	good := seal(udpPacket(t, la, ra, []byte("ok")))
	// Replay.
	replayed := carry(good, addrA)
	if n := len(b.Decrypt(good, nil, tunOffset)); n != 1 {
		t.Fatal("good packet dropped")
	}
	if n := len(b.Decrypt(replayed, nil, tunOffset)); n != 0 {
		t.Fatal("replay delivered")
	}
	in := b.sad.Inbound(sad.ESP, 0x2002)
	if in.Drops(sad.DropReplay) != 1 {
		t.Fatalf("replay drops %d", in.Drops(sad.DropReplay))
	}
	// Bad ICV.
	bad := seal(udpPacket(t, la, ra, []byte("tampered")))
	bad[0].Buf[bad[0].End-1] ^= 1
	if n := len(b.Decrypt(bad, nil, tunOffset)); n != 0 || in.Drops(sad.DropBadICV) != 1 {
		t.Fatalf("bad ICV: delivered %d, drops %d", n, in.Drops(sad.DropBadICV))
	}
	// Inner source outside the SA's selectors (a spoof through the tunnel):
	// a's policy for it must exist to seal it, so widen a's policy only.
	if err := a.spd.Replace(spd.Policy{ID: 1, Dir: spd.Outbound, Selector: spd.Selector{}, Action: spd.Protect, Ref: 1}); err != nil {
		t.Fatal(err)
	}
	spoof := seal(udpPacket(t, netip.MustParseAddr("10.66.0.1"), ra, []byte("spoof")))
	if n := len(b.Decrypt(spoof, nil, tunOffset)); n != 0 || in.Drops(sad.DropPolicy) != 1 {
		t.Fatalf("policy mismatch: delivered %d, drops %d", n, in.Drops(sad.DropPolicy))
	}
	// Unknown SPI, keepalive, IKE, junk.
	unk := seal(udpPacket(t, la, ra, []byte("x")))
	unk[0].Buf[unk[0].Off+3] ^= 0x40
	var ike []byte
	ikeMsg := bytes.Repeat([]byte("ike!"), 8) // as long as an IKE header and more
	b.SetIKEHandler(func(msg []byte, from netip.AddrPort) { ike = append([]byte(nil), msg...) })
	mk := func(p []byte) Datagram {
		buf := make([]byte, BufferSize)
		n := copy(buf[Headroom:], p)
		return Datagram{Buf: buf, Off: Headroom, End: Headroom + n, Addr: addrA}
	}
	misc := []Datagram{unk[0], mk([]byte{0xff}), mk(append([]byte{0, 0, 0, 0}, ikeMsg...)), mk([]byte{1, 2, 3})}
	if n := len(b.Decrypt(misc, nil, tunOffset)); n != 0 {
		t.Fatalf("delivered %d", n)
	}
	if b.Stats.UnknownSPI.Load() != 1 || b.Stats.Keepalives.Load() != 1 || b.Stats.IKE.Load() != 1 || b.Stats.Invalid.Load() != 1 || !bytes.Equal(ike, ikeMsg) {
		t.Fatalf("demux: spi %d keepalive %d ike %d (%q) invalid %d", b.Stats.UnknownSPI.Load(), b.Stats.Keepalives.Load(), b.Stats.IKE.Load(), ike, b.Stats.Invalid.Load())
	}
}

// TestInboundRunLimits sends one batch through an inbound SA with a hard
// packet limit: the run's packets are counted together, yet exactly the
// first packets up to the limit are delivered, in order; a policy drop in
// the middle of the run is neither counted nor delivered, and the SA
// expires.
func TestInboundRunLimits(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	a, b := peers(t, sad.Tunnel, la, ra)
	engine, err := esp.NewSA(espCfg(0x2002, 0x02, true)) // a's outbound key (see peers)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 5
	in, _, err := b.sad.Replace(sad.Config{Proto: sad.ESP, Dir: sad.Inbound, Mode: sad.Tunnel, Engine: engine, Child: 1,
		Peer: addrA, Selector: &selector{spd.Selector{Remote: []spd.AddrRange{spd.PrefixRange(netip.PrefixFrom(la, 32))}}},
		Lifetime: sad.Lifetime{Hard: sad.Limits{Packets: limit}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.spd.Replace(spd.Policy{ID: 1, Dir: spd.Outbound, Selector: spd.Selector{}, Action: spd.Protect, Ref: 1}); err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for i := range 8 {
		src := la
		if i == 2 {
			src = netip.MustParseAddr("10.66.0.1") // outside the selectors
		}
		pkts = append(pkts, udpPacket(t, src, ra, []byte{byte(i)}))
	}
	bufs, sizes := tunBatch(pkts...)
	out := b.Decrypt(carry(a.Encrypt(bufs, sizes, Headroom, nil), addrA), nil, tunOffset)
	want := [][]byte{pkts[0], pkts[1], pkts[3], pkts[4], pkts[5]}
	if len(out) != len(want) {
		t.Fatalf("%d packets delivered, want %d", len(out), len(want))
	}
	for i, o := range out {
		if !bytes.Equal(o[tunOffset:], want[i]) {
			t.Errorf("packet %d: got % x, want % x", i, o[tunOffset:], want[i])
		}
	}
	if in.Packets() != limit || in.Drops(sad.DropExpired) != 2 || in.Drops(sad.DropPolicy) != 1 || in.Alive() {
		t.Errorf("SA: %d packets, %d expired drops, %d policy drops, alive %v", in.Packets(), in.Drops(sad.DropExpired), in.Drops(sad.DropPolicy), in.Alive())
	}
	if b.Stats.InboundDrops.Load() != 3 || b.Stats.Delivered.Load() != limit {
		t.Errorf("engine: %d inbound drops, %d delivered", b.Stats.InboundDrops.Load(), b.Stats.Delivered.Load())
	}
}

// TestInboundPolicyCache checks that Decrypt's reuse of a policy verdict
// within a batch never lets through a packet its SA's selectors refuse:
// with selectors naming a port, packets between the same addresses are
// checked one flow at a time; with address-only selectors, a new address
// pair is checked again.
func TestInboundPolicyCache(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	spoof := netip.MustParseAddr("10.66.0.1")
	remote := []spd.AddrRange{spd.PrefixRange(netip.PrefixFrom(la, 32))}
	for _, tc := range []struct {
		name   string
		sel    sad.Selector
		byAddr bool
		src    []netip.Addr
		ports  []uint16
		want   []int // indexes of the packets delivered
	}{
		{"port selector", &selector{spd.Selector{Remote: remote, Proto: 17, RemotePorts: spd.Port(1111)}}, false,
			[]netip.Addr{la, la, la, la, la}, []uint16{1111, 3333, 1111, 3333, 3333}, []int{0, 2}},
		{"address selector", &selector{spd.Selector{Remote: remote}}, true,
			[]netip.Addr{la, la, spoof, la, spoof}, []uint16{1111, 3333, 1111, 4444, 1111}, []int{0, 1, 3}},
		{"IKE selectors, one with a port", anySelector{{Remote: remote, Proto: 6}, {Remote: remote, Proto: 17, RemotePorts: spd.Port(1111)}}, false,
			[]netip.Addr{la, la, la, spoof}, []uint16{1111, 3333, 1111, 1111}, []int{0, 2}},
		{"IKE selectors by address", anySelector{{Remote: remote}, {Remote: []spd.AddrRange{spd.PrefixRange(netip.PrefixFrom(spoof, 32))}}}, true,
			[]netip.Addr{la, spoof, netip.MustParseAddr("10.77.0.1"), la}, []uint16{1, 2, 3, 4}, []int{0, 1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := selectsByAddr(tc.sel); got != tc.byAddr {
				t.Fatalf("selectsByAddr = %v, want %v", got, tc.byAddr)
			}
			a, b := peers(t, sad.Tunnel, la, ra)
			engine, err := esp.NewSA(espCfg(0x2002, 0x02, true))
			if err != nil {
				t.Fatal(err)
			}
			in, _, err := b.sad.Replace(sad.Config{Proto: sad.ESP, Dir: sad.Inbound, Mode: sad.Tunnel, Engine: engine, Child: 1, Peer: addrA, Selector: tc.sel})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.spd.Replace(spd.Policy{ID: 1, Dir: spd.Outbound, Selector: spd.Selector{}, Action: spd.Protect, Ref: 1}); err != nil {
				t.Fatal(err)
			}
			var pkts [][]byte
			for i, src := range tc.src {
				p := udpPacket(t, src, ra, []byte{byte(i)})
				p[20], p[21] = byte(tc.ports[i]>>8), byte(tc.ports[i]) // UDP source port
				pkts = append(pkts, p)
			}
			bufs, sizes := tunBatch(pkts...)
			out := b.Decrypt(carry(a.Encrypt(bufs, sizes, Headroom, nil), addrA), nil, tunOffset)
			if len(out) != len(tc.want) {
				t.Fatalf("%d packets delivered, want %d", len(out), len(tc.want))
			}
			for i, o := range out {
				if !bytes.Equal(o[tunOffset:], pkts[tc.want[i]]) {
					t.Errorf("delivered packet %d is not packet %d", i, tc.want[i])
				}
			}
			if d := in.Drops(sad.DropPolicy); d != uint64(len(pkts)-len(tc.want)) {
				t.Errorf("%d policy drops, want %d", d, len(pkts)-len(tc.want))
			}
		})
	}
}

func TestNATRebinding(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	a, b := peers(t, sad.Tunnel, la, ra)
	bufs, sizes := tunBatch(udpPacket(t, la, ra, []byte("moved")))
	moved := netip.MustParseAddrPort("198.51.100.9:31337")
	if n := len(b.Decrypt(carry(a.Encrypt(bufs, sizes, Headroom, nil), moved), nil, tunOffset)); n != 1 {
		t.Fatal("not delivered")
	}
	if got := b.sad.Outbound(1).Peer(); got != moved {
		t.Fatalf("outbound peer %v, want %v", got, moved)
	}
	// A packet that fails authentication must not move the peer.
	bufs, sizes = tunBatch(udpPacket(t, la, ra, []byte("forged")))
	ds := carry(a.Encrypt(bufs, sizes, Headroom, nil), netip.MustParseAddrPort("203.0.113.1:1"))
	ds[0].Buf[ds[0].End-1] ^= 1
	b.Decrypt(ds, nil, tunOffset)
	if got := b.sad.Outbound(1).Peer(); got != moved {
		t.Fatalf("forged packet moved the peer to %v", got)
	}
}

// BenchmarkPipeline runs the whole in-process pipeline (SPD lookup, SA, ESP
// seal, replay window, open, inbound policy check) on batches of 64
// packets of 1400 bytes; it must not allocate.
func BenchmarkPipeline(b *testing.B) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	ea, eb := peers(b, sad.Tunnel, la, ra)
	pkt := udpPacket(b, la, ra, make([]byte, 1400-28))
	const batch = 64
	pkts := make([][]byte, batch)
	for i := range pkts {
		pkts[i] = pkt
	}
	bufs, sizes := tunBatch(pkts...)
	ds := make([]Datagram, 0, batch)
	tunOut := make([][]byte, 0, batch)
	b.SetBytes(int64(len(pkt) * batch))
	b.ReportAllocs()
	for b.Loop() {
		for i := range bufs {
			copy(bufs[i][Headroom:], pkt)
		}
		ds = ea.Encrypt(bufs, sizes, Headroom, ds[:0])
		for i := range ds {
			ds[i].Addr = addrA
		}
		tunOut = eb.Decrypt(ds, tunOut[:0], tunOffset)
		if len(tunOut) != batch {
			b.Fatalf("delivered %d", len(tunOut))
		}
	}
}
