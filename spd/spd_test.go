package spd

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/goipsec/goipsec/internal/packet"
)

const (
	tcp    = 6
	udp    = 17
	icmp   = 1
	icmpv6 = 58
)

func TestLookupTable(t *testing.T) {
	type check struct {
		name string
		dir  Direction
		f    *packet.Flow
		want result
	}
	opaque := func(f *packet.Flow) *packet.Flow { f.Opaque, f.SrcPort, f.DstPort = true, 0, 0; return f }
	tests := []struct {
		name   string
		def    Action
		ps     []Policy
		checks []check
	}{{
		name: "site-to-site prefixes, both directions",
		ps: []Policy{
			{ID: 1, Dir: Outbound, Selector: Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("192.168.1.0/24")}, Action: Protect, Ref: 7},
			{ID: 2, Dir: Inbound, Selector: Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("192.168.1.0/24")}, Action: Protect, Ref: 7},
		},
		checks: []check{
			{"out", Outbound, flow("10.0.0.5", "192.168.1.9", tcp, 1234, 80), result{Protect, 7, 1}},
			{"out first and last", Outbound, flow("10.0.0.0", "192.168.1.255", udp, 1, 1), result{Protect, 7, 1}},
			{"out reversed", Outbound, flow("192.168.1.9", "10.0.0.5", tcp, 80, 1234), result{Discard, 0, 0}},
			{"out outside", Outbound, flow("10.0.1.5", "192.168.1.9", tcp, 1234, 80), result{Discard, 0, 0}},
			{"in", Inbound, flow("192.168.1.9", "10.0.0.5", tcp, 80, 1234), result{Protect, 7, 2}},
			{"in reversed", Inbound, flow("10.0.0.5", "192.168.1.9", tcp, 1234, 80), result{Discard, 0, 0}},
		},
	}, {
		name: "address ranges and lists",
		ps: []Policy{
			{ID: 1, Selector: Selector{Local: pfxList("10.0.0.10-10.0.0.20", "10.9.0.1"), Remote: pfxList("192.168.1.0-192.168.2.255")}, Action: Bypass},
		},
		checks: []check{
			{"below", Outbound, flow("10.0.0.9", "192.168.1.1", 0, 0, 0), result{Discard, 0, 0}},
			{"low end", Outbound, flow("10.0.0.10", "192.168.1.1", 0, 0, 0), result{Bypass, 0, 1}},
			{"high end", Outbound, flow("10.0.0.20", "192.168.2.255", 0, 0, 0), result{Bypass, 0, 1}},
			{"above", Outbound, flow("10.0.0.21", "192.168.1.1", 0, 0, 0), result{Discard, 0, 0}},
			{"second entry", Outbound, flow("10.9.0.1", "192.168.2.0", 0, 0, 0), result{Bypass, 0, 1}},
			{"remote above", Outbound, flow("10.9.0.1", "192.168.3.0", 0, 0, 0), result{Discard, 0, 0}},
		},
	}, {
		name: "protocol and ports",
		ps: []Policy{
			{ID: 1, Priority: 1, Selector: Selector{Proto: tcp, LocalPorts: Port(22)}, Action: Bypass},
			{ID: 2, Priority: 1, Dir: Inbound, Selector: Selector{Proto: tcp, LocalPorts: Port(22)}, Action: Bypass},
			{ID: 3, Priority: 2, Selector: Selector{Proto: udp, RemotePorts: Ports(1000, 2000)}, Action: Protect, Ref: 3},
			{ID: 4, Priority: 3, Selector: Selector{Proto: tcp}, Action: Protect, Ref: 4},
		},
		checks: []check{
			{"ssh reply out", Outbound, flow("10.0.0.1", "10.0.0.2", tcp, 22, 5555), result{Bypass, 0, 1}},
			{"ssh to remote out", Outbound, flow("10.0.0.1", "10.0.0.2", tcp, 5555, 22), result{Protect, 4, 4}},
			{"ssh in", Inbound, flow("10.0.0.2", "10.0.0.1", tcp, 5555, 22), result{Bypass, 0, 2}},
			{"ssh reply in", Inbound, flow("10.0.0.2", "10.0.0.1", tcp, 22, 5555), result{Discard, 0, 0}},
			{"udp in range", Outbound, flow("10.0.0.1", "10.0.0.2", udp, 22, 1000), result{Protect, 3, 3}},
			{"udp range end", Outbound, flow("10.0.0.1", "10.0.0.2", udp, 22, 2000), result{Protect, 3, 3}},
			{"udp out of range", Outbound, flow("10.0.0.1", "10.0.0.2", udp, 22, 2001), result{Discard, 0, 0}},
			{"other protocol", Outbound, flow("10.0.0.1", "10.0.0.2", 47, 0, 0), result{Discard, 0, 0}},
			{"ipv6 too", Outbound, flow("2001:db8::1", "2001:db8::2", tcp, 22, 1), result{Bypass, 0, 1}},
		},
	}, {
		name: "ICMP type and code",
		ps: []Policy{
			{ID: 1, Selector: Selector{Proto: icmp, ICMPType: Port(8), ICMPCode: Port(0)}, Action: Bypass},
			{ID: 2, Dir: Inbound, Selector: Selector{Proto: icmp, ICMPType: Port(8)}, Action: Bypass},
			{ID: 3, Selector: Selector{Proto: icmpv6, ICMPType: Ports(133, 137)}, Action: Bypass},
			{ID: 4, Selector: Selector{Proto: icmp, ICMPType: Port(3), ICMPCode: Ports(0, 3)}, Action: Protect, Ref: 9},
		},
		checks: []check{
			{"echo request out", Outbound, flow("10.0.0.1", "10.0.0.2", icmp, 8, 0), result{Bypass, 0, 1}},
			{"echo request in: type is not a remote port", Inbound, flow("10.0.0.2", "10.0.0.1", icmp, 8, 5), result{Bypass, 0, 2}},
			{"echo request bad code", Outbound, flow("10.0.0.1", "10.0.0.2", icmp, 8, 1), result{Discard, 0, 0}},
			{"echo reply", Outbound, flow("10.0.0.1", "10.0.0.2", icmp, 0, 0), result{Discard, 0, 0}},
			{"ICMPv6 ND", Outbound, flow("fe80::1", "ff02::1", icmpv6, 135, 0), result{Bypass, 0, 3}},
			{"ICMPv6 echo", Outbound, flow("fe80::1", "ff02::1", icmpv6, 128, 0), result{Discard, 0, 0}},
			{"ICMPv6 type as ICMP", Outbound, flow("10.0.0.1", "10.0.0.2", icmp, 135, 0), result{Discard, 0, 0}},
			{"unreachable code 3", Outbound, flow("10.0.0.1", "10.0.0.2", icmp, 3, 3), result{Protect, 9, 4}},
			{"unreachable code 4", Outbound, flow("10.0.0.1", "10.0.0.2", icmp, 3, 4), result{Discard, 0, 0}},
		},
	}, {
		name: "opaque ports",
		ps: []Policy{
			{ID: 1, Priority: 1, Selector: Selector{Proto: udp, RemotePorts: Port(53)}, Action: Bypass},
			{ID: 2, Priority: 2, Selector: Selector{Proto: udp, RemotePorts: OpaquePort()}, Action: Protect, Ref: 2},
			{ID: 3, Priority: 3, Selector: Selector{Proto: tcp}, Action: Protect, Ref: 3},
			{ID: 4, Priority: 4, Selector: Selector{Proto: icmp, ICMPType: Port(8)}, Action: Bypass},
		},
		checks: []check{
			{"dns", Outbound, flow("10.0.0.1", "10.0.0.2", udp, 999, 53), result{Bypass, 0, 1}},
			{"dns fragment: port unknown", Outbound, opaque(flow("10.0.0.1", "10.0.0.2", udp, 0, 0)), result{Protect, 2, 2}},
			{"not opaque, other port", Outbound, flow("10.0.0.1", "10.0.0.2", udp, 999, 54), result{Discard, 0, 0}},
			{"ANY matches opaque", Outbound, opaque(flow("10.0.0.1", "10.0.0.2", tcp, 0, 0)), result{Protect, 3, 3}},
			{"ICMP fragment", Outbound, opaque(flow("10.0.0.1", "10.0.0.2", icmp, 0, 0)), result{Discard, 0, 0}},
			{"opaque flow with stale ports", Outbound, &packet.Flow{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: udp, DstPort: 53, Opaque: true}, result{Protect, 2, 2}},
		},
	}, {
		name: "families",
		ps: []Policy{
			{ID: 1, Priority: 1, Selector: Selector{Local: pfxList("10.0.0.0/8")}, Action: Bypass},
			{ID: 2, Priority: 2, Selector: Selector{Remote: pfxList("2001:db8::/32")}, Action: Protect, Ref: 2},
			{ID: 3, Priority: 3, Selector: Selector{Local: pfxList("192.168.0.0/16", "fd00::/8"), Remote: pfxList("172.16.0.0/12", "fd00::/8")}, Action: Protect, Ref: 3},
			{ID: 4, Priority: 4, Selector: Selector{Local: pfxList("0.0.0.0/0"), Remote: pfxList("0.0.0.0/0")}, Action: Protect, Ref: 4},
			{ID: 5, Priority: 5, Selector: Selector{}, Action: Bypass},
		},
		checks: []check{
			{"v4 local", Outbound, flow("10.1.2.3", "1.1.1.1", 0, 0, 0), result{Bypass, 0, 1}},
			{"v6 remote", Outbound, flow("fd00::1", "2001:db8::5", 0, 0, 0), result{Protect, 2, 2}},
			{"mixed list v4", Outbound, flow("192.168.1.1", "172.16.0.1", 0, 0, 0), result{Protect, 3, 3}},
			{"mixed list v6", Outbound, flow("fd00::1", "fd00::2", 0, 0, 0), result{Protect, 3, 3}},
			{"v4 any", Outbound, flow("192.168.1.1", "8.8.8.8", 0, 0, 0), result{Protect, 4, 4}},
			{"v6 any", Outbound, flow("2001:db9::1", "2001:db9::2", 0, 0, 0), result{Bypass, 0, 5}},
			{"IPv4-mapped is IPv6", Outbound, flow("::ffff:10.1.2.3", "::ffff:1.1.1.1", 0, 0, 0), result{Bypass, 0, 5}},
			{"mixed-family flow", Outbound, flow("10.1.2.3", "2001:db8::5", 0, 0, 0), result{Discard, 0, 0}},
			{"invalid flow", Outbound, &packet.Flow{}, result{Discard, 0, 0}},
			{"zoned address", Outbound, flow("fe80::1%eth0", "2001:db8::1", 0, 0, 0), result{Protect, 2, 2}},
		},
	}, {
		name: "order: priority, then insertion",
		def:  Bypass,
		ps: []Policy{
			{ID: 10, Priority: 20, Selector: Selector{Local: pfxList("10.0.0.1"), Remote: pfxList("10.0.1.1")}, Action: Protect, Ref: 10},
			{ID: 11, Priority: 10, Selector: Selector{Local: pfxList("10.0.0.0/16"), Remote: pfxList("10.0.0.0/16")}, Action: Discard},
			{ID: 12, Priority: 10, Selector: Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("10.0.1.0/24")}, Action: Protect, Ref: 12},
			{ID: 13, Priority: 5, Selector: Selector{Proto: udp, RemotePorts: Port(500)}, Action: Bypass},
			{ID: 14, Priority: 30, Selector: Selector{Local: pfxList("10.0.0.0/8"), Remote: pfxList("10.0.0.0/8")}, Action: Protect, Ref: 14},
		},
		checks: []check{
			{"broader earlier wins over exact host pair", Outbound, flow("10.0.0.1", "10.0.1.1", tcp, 1, 2), result{Discard, 0, 11}},
			{"IKE bypass first", Outbound, flow("10.0.0.1", "10.0.1.1", udp, 500, 500), result{Bypass, 0, 13}},
			{"falls to /8", Outbound, flow("10.1.0.1", "10.2.1.1", tcp, 1, 2), result{Protect, 14, 14}},
			{"default bypass", Outbound, flow("11.0.0.1", "10.0.1.1", tcp, 1, 2), result{Bypass, 0, 0}},
			{"invalid flow still discarded", Outbound, flow("10.0.0.1", "::1", tcp, 1, 2), result{Discard, 0, 0}},
			{"inbound has no policies", Inbound, flow("10.0.1.1", "10.0.0.1", tcp, 1, 2), result{Bypass, 0, 0}},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := New(tc.def)
			mustAdd(t, db, tc.ps...)
			checkInvariants(t, db.Snapshot())
			ref := refOf(db)
			for _, c := range tc.checks {
				got := resultOf(db.Lookup(c.dir, c.f))
				if got != c.want {
					t.Errorf("%s: got %v, want %v", c.name, got, c.want)
				}
				if r := ref.lookup(c.dir, c.f); r != c.want {
					t.Errorf("%s: reference scan got %v, want %v", c.name, r, c.want)
				}
			}
		})
	}
}

func TestUpdates(t *testing.T) {
	db := New(Discard)
	f := flow("10.0.0.1", "10.0.1.1", tcp, 1, 2)
	sel := Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("10.0.1.0/24")}
	mustAdd(t, db,
		Policy{ID: 1, Priority: 5, Selector: sel, Action: Protect, Ref: 1},
		Policy{ID: 2, Priority: 5, Selector: sel, Action: Protect, Ref: 2},
		Policy{ID: 3, Priority: 5, Selector: sel, Action: Protect, Ref: 3},
	)
	want := func(id uint64) {
		t.Helper()
		checkInvariants(t, db.Snapshot())
		got := resultOf(db.Lookup(Outbound, f))
		if got.ID != id {
			t.Fatalf("got %v, want policy %d", got, id)
		}
		if r := refOf(db).lookup(Outbound, f); r != got {
			t.Fatalf("reference %v, compiled %v", r, got)
		}
	}
	want(1)
	// Replace keeps the place among equal priorities.
	if err := db.Replace(Policy{ID: 1, Priority: 5, Selector: sel, Action: Bypass}); err != nil {
		t.Fatal(err)
	}
	want(1)
	if got := db.Lookup(Outbound, f); got.Action != Bypass || got.Ref != 0 {
		t.Fatalf("after replace: %+v", got)
	}
	if err := db.Remove(1); err != nil {
		t.Fatal(err)
	}
	want(2)
	// A re-added policy goes last among equals.
	mustAdd(t, db, Policy{ID: 1, Priority: 5, Selector: sel, Action: Protect, Ref: 1})
	want(2)
	if err := db.Replace(Policy{ID: 1, Priority: 4, Selector: sel, Action: Protect, Ref: 1}); err != nil {
		t.Fatal(err)
	}
	want(1)
	// Replace may move the policy elsewhere entirely.
	if err := db.Replace(Policy{ID: 1, Priority: 4, Dir: Inbound, Selector: sel, Action: Protect, Ref: 1}); err != nil {
		t.Fatal(err)
	}
	want(2)
	if got := db.Lookup(Inbound, flow("10.0.1.1", "10.0.0.1", 0, 0, 0)); got.Policy == nil || got.Policy.ID != 1 {
		t.Fatalf("inbound: %+v", got)
	}

	// A batch is atomic: a failing change leaves everything as it was.
	gen, n := db.Snapshot().Generation(), db.Len()
	var b Batch
	b.Remove(2)
	b.Add(Policy{ID: 9, Selector: sel, Action: Bypass})
	b.Remove(77)
	err := db.Apply(&b)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if db.Snapshot().Generation() != gen || db.Len() != n {
		t.Fatal("failed batch changed the DB")
	}
	if _, ok := db.Get(9); ok {
		t.Fatal("failed batch installed a policy")
	}
	want(2)

	// Changes in a batch see the earlier ones.
	b = Batch{}
	b.Add(Policy{ID: 9, Priority: 0, Selector: sel, Action: Bypass})
	b.Remove(2)
	b.Replace(Policy{ID: 9, Priority: 1, Selector: sel, Action: Discard})
	b.Add(Policy{ID: 10, Priority: 1, Selector: sel, Action: Discard})
	b.Remove(10)
	if err := db.Apply(&b); err != nil {
		t.Fatal(err)
	}
	want(9)
	if db.Len() != 3 {
		t.Fatalf("Len %d, want 3", db.Len())
	}
	if err := db.Apply(&Batch{}); err != nil {
		t.Fatal(err)
	}

	if err := db.SetDefault(Bypass); err != nil {
		t.Fatal(err)
	}
	if got := db.Lookup(Outbound, flow("1.1.1.1", "2.2.2.2", 0, 0, 0)); got.Action != Bypass || got.Policy != nil {
		t.Fatalf("default: %+v", got)
	}
	if db.SetDefault(Action(9)) == nil {
		t.Fatal("bad default accepted")
	}
	if New(Action(9)).Default() != Discard {
		t.Fatal("bad default not taken as discard")
	}
}

func TestValidation(t *testing.T) {
	db := New(Discard)
	mustAdd(t, db, Policy{ID: 1})
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1")
	bad := []struct {
		name string
		p    Policy
		err  error
	}{
		{"zero ID", Policy{}, ErrInvalid},
		{"duplicate ID", Policy{ID: 1}, ErrExists},
		{"bad direction", Policy{ID: 2, Dir: 2}, ErrInvalid},
		{"bad action", Policy{ID: 2, Action: 3}, ErrInvalid},
		{"mixed-family range", Policy{ID: 2, Selector: Selector{Local: []AddrRange{{v4, v6}}}}, ErrInvalid},
		{"empty range", Policy{ID: 2, Selector: Selector{Remote: []AddrRange{{netip.MustParseAddr("10.0.0.2"), v4}}}}, ErrInvalid},
		{"invalid address", Policy{ID: 2, Selector: Selector{Remote: []AddrRange{{}}}}, ErrInvalid},
		{"invalid prefix", Policy{ID: 2, Selector: Selector{Remote: []AddrRange{PrefixRange(netip.Prefix{})}}}, ErrInvalid},
		{"ports without protocol", Policy{ID: 2, Selector: Selector{LocalPorts: Port(1)}}, ErrInvalid},
		{"opaque without protocol", Policy{ID: 2, Selector: Selector{RemotePorts: OpaquePort()}}, ErrInvalid},
		{"empty port range", Policy{ID: 2, Selector: Selector{Proto: tcp, LocalPorts: Ports(5, 4)}}, ErrInvalid},
		{"ports with ICMP", Policy{ID: 2, Selector: Selector{Proto: icmp, LocalPorts: Port(1)}}, ErrInvalid},
		{"ICMP type with TCP", Policy{ID: 2, Selector: Selector{Proto: tcp, ICMPType: Port(1)}}, ErrInvalid},
		{"ICMP type beyond 255", Policy{ID: 2, Selector: Selector{Proto: icmpv6, ICMPType: Ports(1, 256)}}, ErrInvalid},
	}
	for _, c := range bad {
		if err := db.Add(c.p); !errors.Is(err, c.err) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.err)
		}
	}
	if err := db.Remove(5); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove missing: %v", err)
	}
	if err := db.Replace(Policy{ID: 5}); !errors.Is(err, ErrNotFound) {
		t.Errorf("replace missing: %v", err)
	}
	if err := db.Replace(Policy{ID: 1, Action: 7}); !errors.Is(err, ErrInvalid) {
		t.Errorf("replace invalid: %v", err)
	}
	good := []Selector{
		{Proto: tcp, LocalPorts: Ports(0, 65535)},
		{Proto: icmp, ICMPType: Port(255), ICMPCode: OpaquePort()},
		{Proto: 50},
		{Local: pfxList("0.0.0.0/0", "::/0", "1.2.3.4-1.2.3.4")},
	}
	for i, s := range good {
		if err := db.Add(Policy{ID: uint64(100 + i), Selector: s}); err != nil {
			t.Errorf("good selector %v: %v", s, err)
		}
	}
	if db.Len() != 1+len(good) {
		t.Fatalf("Len %d", db.Len())
	}
}

func TestPoliciesAreCopies(t *testing.T) {
	db := New(Discard)
	sel := Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("10.0.1.0/24")}
	mustAdd(t, db,
		Policy{ID: 3, Dir: Inbound, Priority: 1, Selector: sel},
		Policy{ID: 1, Priority: 2, Selector: sel, Action: Protect, Ref: 5},
		Policy{ID: 2, Priority: 2, Selector: sel},
		Policy{ID: 4, Priority: 1, Selector: sel},
	)
	sel.Local[0] = MustParseAddrRange("0.0.0.0/0") // the caller's slice: not the DB's
	f := flow("10.0.0.1", "10.0.1.1", 0, 0, 0)
	if got := db.Lookup(Outbound, flow("10.9.0.1", "10.0.1.1", 0, 0, 0)); got.Policy != nil {
		t.Fatal("DB shares the caller's selector slices")
	}
	ps := db.Policies()
	var ids []uint64
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, []uint64{4, 1, 2, 3}) {
		t.Fatalf("order %v", ids)
	}
	ps[0].Selector.Local[0] = MustParseAddrRange("10.9.0.0/16")
	p, ok := db.Get(4)
	if !ok || p.Selector.Local[0] != MustParseAddrRange("10.0.0.0/24") {
		t.Fatalf("Policies shares memory with the DB: %v", p)
	}
	p.Selector.Remote[0] = MustParseAddrRange("10.9.0.0/16")
	if got := db.Lookup(Outbound, f); got.Policy == nil || got.Policy.ID != 4 {
		t.Fatalf("Get shares memory with the DB: %+v", got)
	}
	if s := db.Lookup(Outbound, f).Policy.String(); s != "#4 out prio 1 local 10.0.0.0/24 remote 10.0.1.0/24 proto any: discard" {
		t.Fatalf("String: %q", s)
	}
}

func TestSnapshotIsStable(t *testing.T) {
	db := New(Discard)
	sel := Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("10.0.1.0/24")}
	mustAdd(t, db, Policy{ID: 1, Selector: sel, Action: Protect, Ref: 1})
	old := db.Snapshot()
	f := flow("10.0.0.1", "10.0.1.1", 0, 0, 0)
	if err := db.Replace(Policy{ID: 1, Selector: sel, Action: Bypass}); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, db, Policy{ID: 2, Selector: Selector{}, Action: Bypass})
	if got := old.Lookup(Outbound, f); got.Action != Protect || got.Ref != 1 {
		t.Fatalf("old snapshot changed: %+v", got)
	}
	if got := db.Lookup(Outbound, f); got.Action != Bypass {
		t.Fatalf("new snapshot: %+v", got)
	}
	if got := db.Lookup(Direction(7), f); got.Action != Discard || got.Policy != nil {
		t.Fatalf("bad direction: %+v", got)
	}
	if old.Len() != 1 || db.Snapshot().Len() != 2 || old.Generation() >= db.Snapshot().Generation() {
		t.Fatal("Len or Generation")
	}
}

func TestSelectorMatchInbound(t *testing.T) {
	// The selectors of a child SA protecting 10.0.0.0/24 <-> 192.168.1.0/24 TCP to remote port 443.
	s := Selector{Local: pfxList("10.0.0.0/24"), Remote: pfxList("192.168.1.0/24"), Proto: tcp, RemotePorts: Port(443)}
	cases := []struct {
		f   *packet.Flow
		in  bool
		out bool
	}{
		{flow("192.168.1.5", "10.0.0.5", tcp, 443, 40000), true, false},
		{flow("10.0.0.5", "192.168.1.5", tcp, 40000, 443), false, true},
		{flow("192.168.1.5", "10.0.0.5", tcp, 444, 40000), false, false},
		{flow("192.168.1.5", "10.0.1.5", tcp, 443, 40000), false, false},
		{flow("192.168.1.5", "10.0.0.5", udp, 443, 40000), false, false},
		{&packet.Flow{Src: netip.MustParseAddr("192.168.1.5"), Dst: netip.MustParseAddr("10.0.0.5"), Proto: tcp, Opaque: true}, false, false},
	}
	for i, c := range cases {
		if got := s.MatchInbound(c.f); got != c.in {
			t.Errorf("%d: MatchInbound %v", i, got)
		}
		if got := s.MatchOutbound(c.f); got != c.out {
			t.Errorf("%d: MatchOutbound %v", i, got)
		}
	}
	if got := testing.AllocsPerRun(100, func() { s.MatchInbound(cases[0].f) }); got != 0 {
		t.Errorf("MatchInbound allocates %v", got)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	db := New(Discard)
	g := &gen{b: seq(1 << 16)}
	for id := uint64(1); id <= 500; id++ {
		if err := db.Add(g.policy(id)); err != nil {
			t.Fatal(err)
		}
	}
	flows := make([]packet.Flow, 100)
	for i := range flows {
		flows[i] = g.flow()
	}
	i := 0
	if got := testing.AllocsPerRun(1000, func() { db.Lookup(Direction(i&1), &flows[i%len(flows)]); i++ }); got != 0 {
		t.Fatalf("Lookup allocates %v per call", got)
	}
}

// seq returns n pseudo-random bytes, the same every time.
func seq(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 32)
	}
	return b
}

func TestStrings(t *testing.T) {
	got := []string{Discard.String(), Bypass.String(), Protect.String(), Action(5).String(), Outbound.String(), Inbound.String(), Direction(2).String(),
		Selector{Proto: icmp, ICMPType: Port(8)}.String(), Selector{Proto: tcp, RemotePorts: Ports(1, 2), Local: pfxList("10.0.0.1-10.0.0.2", "::/0")}.String(),
		Policy{ID: 1, Action: Protect, Ref: 2}.String()}
	want := []string{"discard", "bypass", "protect", "Action(5)", "out", "in", "Direction(2)",
		"local any remote any proto 1 type 8 code any", "local 10.0.0.1-10.0.0.2,::/0 remote any proto 6 lport any rport 1-2",
		"#1 out prio 0 local any remote any proto any: protect ref 2"}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
