package ts

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/ike/message"
)

func mustParse(t *testing.T, s string) Selector {
	t.Helper()
	sel, err := Parse(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return sel
}

func list(t *testing.T, s string) []Selector {
	t.Helper()
	if s == "" {
		return nil
	}
	var out []Selector
	for _, x := range strings.Split(s, " ") {
		out = append(out, mustParse(t, x))
	}
	return out
}

func format(ss []Selector) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.String())
	}
	return strings.Join(out, " ")
}

func TestParse(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		in   string
		want Selector
	}{
		{"10.1.0.0/16", Selector{Type: message.TSIPv4AddrRange, Start: a("10.1.0.0"), End: a("10.1.255.255"), EndPort: 0xffff}},
		{"10.1.2.3/16", Selector{Type: message.TSIPv4AddrRange, Start: a("10.1.0.0"), End: a("10.1.255.255"), EndPort: 0xffff}},
		{"0.0.0.0/0", Selector{Type: message.TSIPv4AddrRange, Start: a("0.0.0.0"), End: a("255.255.255.255"), EndPort: 0xffff}},
		{"10.1.0.1", Selector{Type: message.TSIPv4AddrRange, Start: a("10.1.0.1"), End: a("10.1.0.1"), EndPort: 0xffff}},
		{"::ffff:10.1.0.1", Selector{Type: message.TSIPv4AddrRange, Start: a("10.1.0.1"), End: a("10.1.0.1"), EndPort: 0xffff}},
		{"10.1.0.1-10.1.0.9", Selector{Type: message.TSIPv4AddrRange, Start: a("10.1.0.1"), End: a("10.1.0.9"), EndPort: 0xffff}},
		{"2001:db8::/64", Selector{Type: message.TSIPv6AddrRange, Start: a("2001:db8::"), End: a("2001:db8::ffff:ffff:ffff:ffff"), EndPort: 0xffff}},
		{"::/0", Selector{Type: message.TSIPv6AddrRange, Start: a("::"), End: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), EndPort: 0xffff}},
		{"10.0.0.0/8[tcp/80]", Selector{Type: message.TSIPv4AddrRange, Protocol: 6, Start: a("10.0.0.0"), End: a("10.255.255.255"), StartPort: 80, EndPort: 80}},
		{"10.0.0.0/8[udp]", Selector{Type: message.TSIPv4AddrRange, Protocol: 17, Start: a("10.0.0.0"), End: a("10.255.255.255"), EndPort: 0xffff}},
		{"10.0.0.0/8[udp/%any]", Selector{Type: message.TSIPv4AddrRange, Protocol: 17, Start: a("10.0.0.0"), End: a("10.255.255.255"), EndPort: 0xffff}},
		{"10.0.0.0/8[6/1024-65535]", Selector{Type: message.TSIPv4AddrRange, Protocol: 6, Start: a("10.0.0.0"), End: a("10.255.255.255"), StartPort: 1024, EndPort: 0xffff}},
		{"10.0.0.0/8[%any/53]", Selector{Type: message.TSIPv4AddrRange, Start: a("10.0.0.0"), End: a("10.255.255.255"), StartPort: 53, EndPort: 53}},
		{"2001:db8::1[icmpv6/%opaque]", Selector{Type: message.TSIPv6AddrRange, Protocol: 58, Start: a("2001:db8::1"), End: a("2001:db8::1"), StartPort: 0xffff, EndPort: 0}},
		{" 10.1.0.1 ", Selector{Type: message.TSIPv4AddrRange, Start: a("10.1.0.1"), End: a("10.1.0.1"), EndPort: 0xffff}},
	} {
		got, err := Parse(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "10.0.0.5-10.0.0.1", "10.0.0.1-::1", "10.0.0.1-x", "1.2.3.4[tcp/80",
		"1.2.3.4[foo]", "1.2.3.4[tcp/99999]", "1.2.3.4[tcp/90-80]", "1.2.3.4[tcp/x]", "1.2.3.4[300]", "host.example"} {
		if s, err := Parse(bad); err == nil {
			t.Errorf("%q accepted: %v", bad, s)
		}
	}
	if _, err := ParseList([]string{"10.0.0.0/8", "bad"}); err == nil {
		t.Error("bad list accepted")
	}
	if got := Host(netip.MustParseAddr("2001:db8::5")); got.Start != got.End || got.Type != message.TSIPv6AddrRange {
		t.Errorf("Host %v", got)
	}
}

func TestIntersect(t *testing.T) {
	for _, tc := range []struct {
		a, b, want string // want "" for disjoint
	}{
		{"10.0.0.0/8", "10.1.0.0/16", "10.1.0.0/16"},
		{"10.1.0.0/16", "10.0.0.0/8", "10.1.0.0/16"},
		{"10.1.0.0/16", "10.2.0.0/16", ""},
		{"10.0.0.0-10.0.0.100", "10.0.0.50-10.0.0.200", "10.0.0.50..10.0.0.100"},
		{"10.0.0.1", "10.0.0.0/24", "10.0.0.1/32"},
		{"0.0.0.0/0", "::/0", ""},
		{"2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::/48"},
		{"2001:db8::/48", "2001:db8:1::/48", ""},
		{"10.0.0.0/8[tcp]", "10.0.0.0/8", "10.0.0.0/8[6]"},
		{"10.0.0.0/8", "10.0.0.0/8[udp/53]", "10.0.0.0/8[17/53]"},
		{"10.0.0.0/8[tcp]", "10.0.0.0/8[udp]", ""},
		{"10.0.0.0/8[tcp/1-1000]", "10.0.0.0/8[tcp/80-8080]", "10.0.0.0/8[6/80-1000]"},
		{"10.0.0.0/8[tcp/80]", "10.0.0.0/8[tcp/443]", ""},
		{"10.0.0.0/8[tcp/%opaque]", "10.0.0.0/8[tcp]", "10.0.0.0/8[6/OPAQUE]"},
		{"10.0.0.0/8", "10.0.0.0/8[tcp/%opaque]", "10.0.0.0/8[6/OPAQUE]"},
		{"10.0.0.0/8[tcp/%opaque]", "10.0.0.0/8[tcp/%opaque]", "10.0.0.0/8[6/OPAQUE]"},
		{"10.0.0.0/8[tcp/%opaque]", "10.0.0.0/8[tcp/80]", ""},
		{"10.0.0.0/8[tcp/80]", "10.0.0.0/8[tcp/%opaque]", ""},
	} {
		x, ok := Intersect(mustParse(t, tc.a), mustParse(t, tc.b))
		switch {
		case tc.want == "" && ok:
			t.Errorf("%s ∩ %s = %v, want nothing", tc.a, tc.b, x)
		case tc.want != "" && (!ok || x.String() != tc.want):
			t.Errorf("%s ∩ %s = %v (%v), want %s", tc.a, tc.b, x, ok, tc.want)
		}
	}
	// Unknown types and malformed ranges never intersect.
	odd := Selector{Type: 10, Data: []byte("x")}
	if _, ok := Intersect(odd, odd); ok {
		t.Error("unknown type intersected")
	}
	inverted := Selector{Type: message.TSIPv4AddrRange, Start: netip.MustParseAddr("10.0.0.9"), End: netip.MustParseAddr("10.0.0.1"), EndPort: 0xffff}
	if _, ok := Intersect(inverted, mustParse(t, "0.0.0.0/0")); ok {
		t.Error("inverted range intersected")
	}
	mixed := Selector{Type: message.TSIPv4AddrRange, Start: netip.MustParseAddr("::1"), End: netip.MustParseAddr("::2"), EndPort: 0xffff}
	if _, ok := Intersect(mixed, mixed); ok {
		t.Error("IPv4 selector with IPv6 addresses intersected")
	}
}

// TestNarrowResponder covers RFC 7296 section 2.9 as strongSwan applies
// it: each configured selector intersected with each proposed one, in
// configuration order.
func TestNarrowResponder(t *testing.T) {
	for _, tc := range []struct {
		name             string
		tsi, tsr         string // initiator's proposal
		remote, local    string // responder's configuration
		wantTSi, wantTSr string // "" expects TS_UNACCEPTABLE
	}{
		{"exact", "10.1.0.0/24", "10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24"},
		{"initiator asks for everything", "0.0.0.0/0", "0.0.0.0/0", "10.1.0.0/24", "10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24"},
		{"initiator asks for less", "10.1.0.5", "10.2.0.0/25", "10.1.0.0/24", "10.2.0.0/24", "10.1.0.5/32", "10.2.0.0/25"},
		{"host to host", "192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2", "192.0.2.1/32", "192.0.2.2/32"},
		{"trigger packet first", "10.1.0.7[tcp/40000] 10.1.0.0/24", "10.2.0.9[tcp/443] 10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24",
			"10.1.0.0/24", "10.2.0.0/24"},
		{"narrow selectors that no other covers stay", "10.1.0.0/24", "10.2.0.1[tcp/80] 10.2.0.5[udp/53]", "10.1.0.0/24", "10.2.0.0/24",
			"10.1.0.0/24", "10.2.0.1/32[6/80] 10.2.0.5/32[17/53]"},
		{"overlapping configuration", "0.0.0.0/0", "0.0.0.0/0", "10.1.0.0/24", "10.2.0.0/25 10.2.0.0/24 10.2.0.128/25", "10.1.0.0/24", "10.2.0.0/24"},
		{"disjoint local", "10.1.0.0/24", "10.3.0.0/24", "10.1.0.0/24", "10.2.0.0/24", "", ""},
		{"disjoint remote", "10.9.0.0/24", "10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24", "", ""},
		{"IPv6", "2001:db8:1::/48", "::/0", "2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:1::/64", "2001:db8:2::/64"},
		{"family mismatch", "2001:db8:1::/48", "::/0", "10.1.0.0/24", "10.2.0.0/24", "", ""},
		{"dual stack", "0.0.0.0/0 ::/0", "0.0.0.0/0 ::/0", "10.1.0.0/24 2001:db8:1::/64", "10.2.0.0/24 2001:db8:2::/64",
			"10.1.0.0/24 2001:db8:1::/64", "10.2.0.0/24 2001:db8:2::/64"},
		{"protocol narrowing", "10.1.0.0/24", "10.2.0.0/24[tcp]", "10.1.0.0/24[tcp]", "10.2.0.0/24", "10.1.0.0/24[6]", "10.2.0.0/24[6]"},
		{"port narrowing", "10.1.0.0/24", "10.2.0.1[tcp/1-1024]", "10.1.0.0/24", "10.2.0.0/24[tcp/443]", "10.1.0.0/24", "10.2.0.1/32[6/443]"},
		{"ports disjoint", "10.1.0.0/24", "10.2.0.1[tcp/80]", "10.1.0.0/24", "10.2.0.0/24[tcp/443]", "", ""},
		{"several configured, config order", "0.0.0.0/0", "0.0.0.0/0", "10.1.0.0/24", "10.2.1.0/24 10.2.0.0/24", "10.1.0.0/24", "10.2.1.0/24 10.2.0.0/24"},
		{"duplicates dropped", "10.1.0.0/24 10.1.0.0/24", "10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24"},
		{"empty proposal", "", "10.2.0.0/24", "10.1.0.0/24", "10.2.0.0/24", "", ""},
	} {
		gi, gr, err := NarrowResponder(list(t, tc.tsi), list(t, tc.tsr), list(t, tc.remote), list(t, tc.local))
		if tc.wantTSi == "" {
			if !errors.Is(err, ErrUnacceptable) {
				t.Errorf("%s: %v %v %v", tc.name, gi, gr, err)
			}
			continue
		}
		if err != nil || format(gi) != tc.wantTSi || format(gr) != tc.wantTSr {
			t.Errorf("%s: TSi %q TSr %q %v; want %q %q", tc.name, format(gi), format(gr), err, tc.wantTSi, tc.wantTSr)
			continue
		}
		// The initiator's check passes on the result.
		if !Subset(gi, list(t, tc.tsi)) || !Subset(gr, list(t, tc.tsr)) {
			t.Errorf("%s: narrowed selectors not within the proposal", tc.name)
		}
	}
}

func TestSubset(t *testing.T) {
	proposed := list(t, "10.1.0.0/16 2001:db8::/32[tcp]")
	for _, tc := range []struct {
		narrowed string
		want     bool
	}{
		{"10.1.2.0/24", true},
		{"10.1.0.0/16", true},
		{"10.0.0.0/8", false},
		{"2001:db8:5::/48[tcp/80]", true},
		{"2001:db8:5::/48", false},
		{"2001:db8:5::/48[udp]", false},
		{"10.1.2.0/24 10.2.0.0/24", false},
		{"", true},
	} {
		if got := Subset(list(t, tc.narrowed), proposed); got != tc.want {
			t.Errorf("%q: %v", tc.narrowed, got)
		}
	}
	if !Contains(mustParse(t, "0.0.0.0/0"), mustParse(t, "10.0.0.0/8[tcp/%opaque]")) {
		t.Error("any does not contain opaque")
	}
}

// TestWire sends narrowed selectors through the TS payload.
func TestWire(t *testing.T) {
	sel := list(t, "10.1.0.0/24 10.0.0.1-10.0.0.7[udp/53] 2001:db8::/64[tcp/1024-2047] ::1[58/%opaque]")
	m := &message.Message{Payloads: []message.Payload{&message.TSi{Selectors: sel}, &message.TSr{Selectors: sel[:1]}}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := message.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Payloads[0].(*message.TSi).Selectors, sel) {
		t.Errorf("%v", got.Payloads[0])
	}
}
