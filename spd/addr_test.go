package spd

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestAddrRange(t *testing.T) {
	cases := []struct {
		in, from, to, str string
		prefix            bool
	}{
		{"10.1.2.3/8", "10.0.0.0", "10.255.255.255", "10.0.0.0/8", true},
		{"0.0.0.0/0", "0.0.0.0", "255.255.255.255", "0.0.0.0/0", true},
		{"10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.1/32", true},
		{"10.0.0.1 - 10.0.0.9", "10.0.0.1", "10.0.0.9", "10.0.0.1-10.0.0.9", false},
		{"10.0.0.0-10.0.0.255", "10.0.0.0", "10.0.0.255", "10.0.0.0/24", true},
		{"2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32", true},
		{"::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0", true},
		{"2001:db8::1:0/65", "2001:db8::", "2001:db8::7fff:ffff:ffff:ffff", "2001:db8::/65", true},
		{"fe80::1%eth0", "fe80::1%eth0", "fe80::1%eth0", "fe80::1/128", true},
	}
	for _, c := range cases {
		r, err := ParseAddrRange(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if r.From.String() != c.from || r.To.String() != c.to {
			t.Errorf("%s: got %v-%v, want %s-%s", c.in, r.From, r.To, c.from, c.to)
		}
		if _, ok := r.Prefix(); ok != c.prefix || r.String() != c.str {
			t.Errorf("%s: String %q prefix %v, want %q %v", c.in, r.String(), ok, c.str, c.prefix)
		}
	}
	for _, bad := range []string{"", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "10.0.0.0/33", "x-10.0.0.1", "10.0.0.1-x", "10.0.0.256"} {
		if _, err := ParseAddrRange(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	r := MustParseAddrRange("10.0.0.5-10.0.0.7")
	for a, want := range map[string]bool{"10.0.0.4": false, "10.0.0.5": true, "10.0.0.7": true, "10.0.0.8": false, "::ffff:10.0.0.6": false} {
		if r.Contains(netip.MustParseAddr(a)) != want {
			t.Errorf("Contains(%s) != %v", a, want)
		}
	}
	if (AddrRange{}).Contains(netip.Addr{}) || (AddrRange{}).IsValid() {
		t.Error("zero AddrRange")
	}
}

func TestPortRange(t *testing.T) {
	cases := []struct {
		r                  PortRange
		str                string
		lo, hi             uint16
		any, opaque        bool
		in, out, matchOpaq bool
	}{
		{AnyPort(), "any", 0, 65535, true, false, true, true, true},
		{Ports(0, 65535), "any", 0, 65535, true, false, true, true, true},
		{OpaquePort(), "opaque", 65535, 0, false, true, false, false, true},
		{Port(80), "80", 80, 80, false, false, true, false, false},
		{Ports(80, 90), "80-90", 80, 90, false, false, true, false, false},
		{Ports(90, 80), "90-80", 90, 80, false, false, false, false, false},
	}
	for _, c := range cases {
		lo, hi := c.r.Bounds()
		if c.r.String() != c.str || lo != c.lo || hi != c.hi || c.r.IsAny() != c.any || c.r.IsOpaque() != c.opaque {
			t.Errorf("%v: bounds %d-%d any %v opaque %v", c.r, lo, hi, c.r.IsAny(), c.r.IsOpaque())
		}
		if c.r.matches(80, false) != c.in || c.r.matches(100, false) != c.out || c.r.matches(0, true) != c.matchOpaq {
			t.Errorf("%v: matches", c.r)
		}
	}
}

// TestPrefixCover checks the range to prefix decomposition: exact, disjoint,
// aligned, in order, and no longer than 2w-2 prefixes.
func TestPrefixCover(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(rg r128, fam int) {
		ps := appendPrefixes(nil, rg, fam)
		w := famWidth[fam]
		if len(ps) > int(2*w-2) && len(ps) > 1 {
			t.Fatalf("%v: %d prefixes", rg, len(ps))
		}
		next := rg.lo
		for i, p := range ps {
			if p.a != next {
				t.Fatalf("%v: prefix %d starts at %v, want %v", rg, i, p.a, next)
			}
			if p.a.and(prefixMask(fam, uint(p.bits))) != p.a {
				t.Fatalf("%v: prefix %d unaligned", rg, i)
			}
			end := p.a.or(lowMask128(w - uint(p.bits)))
			if i == len(ps)-1 {
				if end != rg.hi {
					t.Fatalf("%v: ends at %v", rg, end)
				}
			} else {
				next, _ = end.add1()
			}
		}
		// Minimal: no two neighbours merge into one prefix.
		for i := 1; i < len(ps); i++ {
			a, b := ps[i-1], ps[i]
			if a.bits == b.bits && a.bits > 0 && a.a.and(prefixMask(fam, uint(a.bits-1))) == b.a.and(prefixMask(fam, uint(a.bits-1))) {
				t.Fatalf("%v: prefixes %d and %d merge", rg, i-1, i)
			}
		}
	}
	for lo := uint64(0); lo < 64; lo++ {
		for hi := lo; hi < 64; hi++ {
			check(r128{u128{lo: lo}, u128{lo: hi}}, famV4)
		}
	}
	check(r128{u128{}, u128{lo: 0xffffffff}}, famV4)
	check(r128{u128{lo: 1}, u128{lo: 0xfffffffe}}, famV4)
	check(r128{u128{}, u128{^uint64(0), ^uint64(0)}}, famV6)
	check(r128{u128{lo: 1}, u128{^uint64(0), ^uint64(0) - 1}}, famV6)
	for range 2000 {
		a, b := r.Uint32(), r.Uint32()
		if a > b {
			a, b = b, a
		}
		check(r128{u128{lo: uint64(a)}, u128{lo: uint64(b)}}, famV4)
		x, y := u128{r.Uint64(), r.Uint64()}, u128{r.Uint64(), r.Uint64()}
		if r.IntN(2) == 0 {
			y.hi = x.hi
		}
		if x.cmp(y) > 0 {
			x, y = y, x
		}
		check(r128{x, y}, famV6)
	}
}

func TestFamilyRanges(t *testing.T) {
	l := pfxList("10.0.0.8-10.0.0.15", "10.0.0.0/29", "10.0.0.20-10.0.0.30", "10.0.0.25", "2001:db8::/32", "10.0.0.16-10.0.0.19", "11.0.0.0", "255.255.255.255")
	got := familyRanges(nil, l, famV4)
	want := []r128{{u128{lo: 0x0a000000}, u128{lo: 0x0a00001e}}, {u128{lo: 0x0b000000}, u128{lo: 0x0b000000}}, {u128{lo: 0xffffffff}, u128{lo: 0xffffffff}}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if got := familyRanges(nil, pfxList("10.0.0.0/8"), famV6); got != nil {
		t.Fatalf("v6 of a v4 list: %v", got)
	}
	if got := familyRanges(nil, nil, famV6); len(got) != 1 || got[0].hi != (u128{^uint64(0), ^uint64(0)}) {
		t.Fatalf("ANY: %v", got)
	}
	all := pfxList("::/1", "8000::/1", "::1")
	if got := familyRanges(nil, all, famV6); len(got) != 1 {
		t.Fatalf("merge to the top: %v", got)
	}
}
