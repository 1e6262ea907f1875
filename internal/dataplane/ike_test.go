package dataplane

import (
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

func negotiatedPair(t *testing.T) (a, b *Engine) {
	t.Helper()
	la, lb := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	mk := func(local, remote netip.Addr, peer netip.AddrPort, in, out uint32) *Engine {
		e := New(spd.New(spd.Discard), sad.New(sad.Options{}), nil)
		sel := spd.Selector{Local: []spd.AddrRange{spd.HostRange(local)}, Remote: []spd.AddrRange{spd.HostRange(remote)}}
		if err := e.InstallNegotiated(&NegotiatedChild{ID: 7, Mode: sad.Tunnel, Selectors: []spd.Selector{sel}, Peer: peer,
			In: espCfg(in, byte(in), false), Out: espCfg(out, byte(out), false)}); err != nil {
			t.Fatal(err)
		}
		return e
	}
	return mk(la, lb, addrB, 0xc0001001, 0xc0002002), mk(lb, la, addrA, 0xc0002002, 0xc0001001)
}

func TestInstallNegotiated(t *testing.T) {
	a, b := negotiatedPair(t)
	la, lb := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	bufs, sizes := tunBatch(udpPacket(t, la, lb, []byte("through a negotiated child")))
	out := a.Encrypt(bufs, sizes, Headroom, nil)
	if len(out) != 1 || out[0].Addr != addrB {
		t.Fatalf("encrypted %d datagrams", len(out))
	}
	got := b.Decrypt(carry(out, addrA), nil, TunOffset)
	if len(got) != 1 {
		t.Fatalf("decrypted %d packets; counters %+v", len(got), &b.Stats)
	}
	if n := b.InboundPackets(7); n != 1 {
		t.Errorf("InboundPackets = %d", n)
	}
	// The peer moves: outbound follows.
	moved := netip.MustParseAddrPort("192.0.2.9:31000")
	a.UpdatePeer(7, moved)
	bufs, sizes = tunBatch(udpPacket(t, la, lb, []byte("again")))
	if out := a.Encrypt(bufs, sizes, Headroom, nil); len(out) != 1 || out[0].Addr != moved {
		t.Fatalf("after UpdatePeer: %v", out)
	}
	// Removal takes SAs and policies; traffic is then discarded.
	a.RemoveNegotiated(7)
	if in, outN := a.sad.Len(); in+outN != 0 || a.spd.Len() != 0 {
		t.Fatalf("left %d SAs, %d policies", in+outN, a.spd.Len())
	}
	bufs, sizes = tunBatch(udpPacket(t, la, lb, []byte("dropped")))
	if out := a.Encrypt(bufs, sizes, Headroom, nil); len(out) != 0 {
		t.Fatal("sent without a child")
	}
}

func TestTrapAcquire(t *testing.T) {
	e := New(spd.New(spd.Discard), sad.New(sad.Options{}), nil)
	la, lb := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	sel := spd.Selector{Local: []spd.AddrRange{spd.HostRange(la)}, Remote: []spd.AddrRange{spd.HostRange(lb)}}
	if err := e.InstallTrap(9, []spd.Selector{sel}, 0); err != nil {
		t.Fatal(err)
	}
	bufs, sizes := tunBatch(udpPacket(t, la, lb, []byte("first packet")))
	if out := e.Encrypt(bufs, sizes, Headroom, nil); len(out) != 0 {
		t.Fatal("a trapped packet left")
	}
	select {
	case acq := <-e.Acquires():
		if acq.Child != 9 || acq.Flow.Dst != lb {
			t.Errorf("acquire %+v", acq)
		}
	default:
		t.Fatal("no acquire")
	}
	// The negotiated child takes the trap's place under its ID.
	if err := e.InstallNegotiated(&NegotiatedChild{ID: 9, Mode: sad.Tunnel, Selectors: []spd.Selector{sel}, Peer: addrB,
		In: espCfg(0xc0000101, 1, false), Out: espCfg(0xc0000202, 2, false)}); err != nil {
		t.Fatal(err)
	}
	if e.spd.Len() != 1 {
		t.Errorf("%d policies, want the one", e.spd.Len())
	}
	if out := e.Encrypt(bufs, sizes, Headroom, nil); len(out) != 1 {
		t.Fatal("not sent once the child is up")
	}
	spi, err := e.AllocateSPI(func(s uint32) bool { return false })
	if err != nil || spi < 0xc0000000 || spi == 0xc0000101 {
		t.Errorf("AllocateSPI = %#x, %v", spi, err)
	}
	// Back to the trap.
	if err := e.InstallTrap(9, []spd.Selector{sel}, 0); err != nil {
		t.Fatal(err)
	}
	if in, out := e.sad.Len(); in+out != 0 || e.spd.Len() != 1 {
		t.Errorf("after re-trapping: %d SAs, %d policies", in+out, e.spd.Len())
	}
}

// TestNegotiatedRekey walks a Child SA rekey the way IKE does it: b (the
// responder) adds its new inbound SA, a (the initiator) installs the new
// pair and switches, b switches after the DELETE, and the old inbound SAs
// go last. Every packet on the way gets through.
func TestNegotiatedRekey(t *testing.T) {
	a, b := negotiatedPair(t)
	la, lb := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	sel := func(local, remote netip.Addr) []spd.Selector {
		return []spd.Selector{{Local: []spd.AddrRange{spd.HostRange(local)}, Remote: []spd.AddrRange{spd.HostRange(remote)}}}
	}
	send := func(from, to *Engine, src, dst netip.Addr, peer netip.AddrPort, wantSPI uint32) {
		t.Helper()
		bufs, sizes := tunBatch(udpPacket(t, src, dst, []byte("across the rekey")))
		out := from.Encrypt(bufs, sizes, Headroom, nil)
		if len(out) != 1 {
			t.Fatalf("encrypted %d datagrams", len(out))
		}
		if got := from.sad.Outbound(7).SPI(); got != wantSPI {
			t.Fatalf("sent on %08x, want %08x", got, wantSPI)
		}
		if got := to.Decrypt(carry(out, peer), nil, TunOffset); len(got) != 1 {
			t.Fatalf("decrypted %d packets on %08x", len(got), wantSPI)
		}
	}
	// b accepts the new SA a will send on (0xc0003003), still sends on the old.
	if err := b.InstallNegotiatedInbound(&NegotiatedChild{ID: 7, Mode: sad.Tunnel, Selectors: sel(lb, la), Peer: addrA,
		In: espCfg(0xc0003003, 3, false)}); err != nil {
		t.Fatal(err)
	}
	send(b, a, lb, la, addrB, 0xc0001001)
	// a installs the new pair: in 0xc0004004, out 0xc0003003.
	if err := a.InstallNegotiated(&NegotiatedChild{ID: 7, Mode: sad.Tunnel, Selectors: sel(la, lb), Peer: addrB,
		In: espCfg(0xc0004004, 4, false), Out: espCfg(0xc0003003, 3, false)}); err != nil {
		t.Fatal(err)
	}
	send(a, b, la, lb, addrA, 0xc0003003)
	send(b, a, lb, la, addrB, 0xc0001001) // old inbound SA of a still there
	// b switches on the DELETE.
	if err := b.SwitchNegotiatedOutbound(&NegotiatedChild{ID: 7, Mode: sad.Tunnel, Selectors: sel(lb, la), Peer: addrA,
		Out: espCfg(0xc0004004, 4, false)}); err != nil {
		t.Fatal(err)
	}
	send(b, a, lb, la, addrB, 0xc0004004)
	// The old inbound SAs go after the grace period; only the child's own.
	if a.RemoveNegotiatedInbound(8, 0xc0001001) {
		t.Error("removed another child's SA")
	}
	if !a.RemoveNegotiatedInbound(7, 0xc0001001) || !b.RemoveNegotiatedInbound(7, 0xc0002002) {
		t.Fatal("old inbound SAs not removed")
	}
	for _, e := range []*Engine{a, b} {
		if in, out := e.sad.Len(); in != 1 || out != 1 {
			t.Errorf("%d inbound, %d outbound SAs left, want 1 each", in, out)
		}
	}
	send(a, b, la, lb, addrA, 0xc0003003)
	send(b, a, lb, la, addrB, 0xc0004004)
}
