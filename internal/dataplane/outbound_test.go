package dataplane

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

// withPorts returns a copy of the UDP packet p (an optionless IPv4 or an
// IPv6 header, as udpPacket makes them) with its destination port set.
func withPorts(p []byte, dport uint16) []byte {
	q := append([]byte(nil), p...)
	off := packet.IPv4MinHeaderLen
	if q[0]>>4 == 6 {
		off = packet.IPv6HeaderLen
	}
	binary.BigEndian.PutUint16(q[off+2:], dport)
	return q
}

// TestOutboundVerdictCache checks EncryptTo's reuse of SPD verdicts
// within a batch against a lookup of every packet on its own: packets
// between the same addresses but of other ports get their own verdict
// while a policy names ports, address pairs change verdicts, and a policy
// change applies from the next batch on.
func TestOutboundVerdictCache(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	other := netip.MustParseAddr("10.1.0.3")
	la6, ra6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	base := []spd.Policy{{ID: 1, Dir: spd.Outbound, Priority: 10, Action: spd.Protect, Ref: 1}}
	hostOther := spd.Policy{ID: 2, Dir: spd.Outbound, Priority: 5, Action: spd.Discard,
		Selector: spd.Selector{Remote: []spd.AddrRange{spd.HostRange(other)}}}
	port := func(id uint64, remote netip.Addr, p uint16, act spd.Action) spd.Policy {
		return spd.Policy{ID: id, Dir: spd.Outbound, Priority: 5, Action: act,
			Selector: spd.Selector{Remote: []spd.AddrRange{spd.HostRange(remote)}, Proto: 17, RemotePorts: spd.Port(p)}}
	}
	v4, v6 := udpPacket(t, la, ra, []byte("four")), udpPacket(t, la6, ra6, []byte("six"))
	batch := [][]byte{
		v4, withPorts(v4, 3333), withPorts(v4, 2222), udpPacket(t, la, other, []byte("o")),
		withPorts(v4, 3333), v4, v6, withPorts(v6, 3333), v6, withPorts(v6, 4444), v4,
	}
	for _, tc := range []struct {
		name  string
		extra []spd.Policy
	}{
		{"addresses only", []spd.Policy{hostOther}},
		{"v4 port discard", []spd.Policy{hostOther, port(3, ra, 3333, spd.Discard)}},
		{"v4 port bypass", []spd.Policy{port(3, ra, 2222, spd.Bypass)}},
		{"v6 port discard", []spd.Policy{hostOther, port(3, ra6, 3333, spd.Discard)}},
		{"both", []spd.Policy{port(3, ra6, 4444, spd.Discard), port(4, ra, 3333, spd.Discard)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := peers(t, sad.Tunnel, la, ra)
			// The peers' child covers every address: one outbound SA.
			for _, p := range append(append([]spd.Policy(nil), base...), tc.extra...) {
				if err := a.spd.Replace(p); err != nil {
					if err := a.spd.Add(p); err != nil {
						t.Fatal(err)
					}
				}
			}
			var want [][]byte
			var discarded, bypassed uint64
			for _, p := range batch {
				var f packet.Flow
				if err := packet.ParseFlow(p, &f); err != nil {
					t.Fatal(err)
				}
				switch a.spd.Lookup(spd.Outbound, &f).Action {
				case spd.Protect:
					want = append(want, p)
				case spd.Bypass:
					bypassed++
				default:
					discarded++
				}
			}
			bufs, sizes := tunBatch(batch...)
			ds := a.Encrypt(bufs, sizes, Headroom, nil)
			if len(ds) != len(want) || a.Stats.Discarded.Load() != discarded || a.Stats.Bypassed.Load() != bypassed {
				t.Fatalf("%d sealed, %d discarded, %d bypassed; want %d, %d, %d",
					len(ds), a.Stats.Discarded.Load(), a.Stats.Bypassed.Load(), len(want), discarded, bypassed)
			}
			// The peer's inbound SA checks its selectors (la and ra only):
			// open the datagrams with a's outbound key directly.
			open, err := esp.NewSA(espCfg(0x2002, 0x02, true))
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range carry(ds, addrA) {
				s, e, err := open.DecapTunnel(d.Buf, d.Off, d.End)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if !bytes.Equal(d.Buf[s:e], want[i]) {
					t.Errorf("datagram %d: got % x, want % x", i, d.Buf[s:e], want[i])
				}
			}
			// A policy added between batches rules the next batch.
			if err := a.spd.Add(spd.Policy{ID: 99, Dir: spd.Outbound, Priority: 1, Action: spd.Discard}); err != nil {
				t.Fatal(err)
			}
			bufs, sizes = tunBatch(batch...)
			if ds := a.Encrypt(bufs, sizes, Headroom, nil); len(ds) != 0 {
				t.Fatalf("%d datagrams sealed after a discard-all policy", len(ds))
			}
		})
	}
}

// TestOutboundRunLimits checks that EncryptTo, counting runs of packets at
// once, stops at the exact packet of the hard limit, gives the packets it
// seals consecutive sequence numbers in batch order, and leaves packets of
// other verdicts in between alone.
func TestOutboundRunLimits(t *testing.T) {
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	for _, arena := range []bool{false, true} {
		a, _ := peers(t, sad.Tunnel, la, ra)
		engine, err := esp.NewSA(espCfg(0x3003, 0x03, true))
		if err != nil {
			t.Fatal(err)
		}
		const limit = 5
		out, _, err := a.sad.Replace(sad.Config{Proto: sad.ESP, Dir: sad.Outbound, Mode: sad.Tunnel, Engine: engine, Child: 1,
			Peer: addrB, Lifetime: sad.Lifetime{Soft: sad.Limits{Packets: 3}, Hard: sad.Limits{Packets: limit}}})
		if err != nil {
			t.Fatal(err)
		}
		var pkts [][]byte
		for i := range 9 {
			dst := ra
			if i == 2 {
				dst = netip.MustParseAddr("10.9.9.9") // no policy: discarded
			}
			pkts = append(pkts, udpPacket(t, la, dst, []byte{byte(i)}))
		}
		bufs, sizes := tunBatch(pkts...)
		var ar []byte
		if arena {
			ar = make([]byte, 0, 1<<16)
		}
		ds, _ := a.EncryptTo(bufs, sizes, Headroom, nil, ar)
		if len(ds) != limit {
			t.Fatalf("arena %v: %d datagrams, want %d", arena, len(ds), limit)
		}
		for i, d := range ds {
			if seq := binary.BigEndian.Uint32(d.Payload()[4:8]); seq != uint32(i+1) {
				t.Errorf("arena %v: datagram %d has sequence number %d", arena, i, seq)
			}
		}
		if out.Packets() != limit || out.Drops(sad.DropExpired) != 3 || out.Alive() ||
			a.Stats.NoSA.Load() != 3 || a.Stats.Discarded.Load() != 1 {
			t.Errorf("arena %v: SA %d packets, %d expired drops, alive %v; engine NoSA %d, discarded %d", arena,
				out.Packets(), out.Drops(sad.DropExpired), out.Alive(), a.Stats.NoSA.Load(), a.Stats.Discarded.Load())
		}
	}
}
