// Package ts builds and narrows IKEv2 traffic selectors (RFC 7296 sections
// 2.9 and 3.13): the responder's intersection of what the initiator
// proposes with what its configuration allows, for IPv4 and IPv6 ranges,
// protocols and ports.
package ts

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/goipsec/goipsec/ike/message"
)

// Selector is a traffic selector.
type Selector = message.TrafficSelector

// Port ranges with a special meaning.
const (
	AnyPortStart    = 0
	AnyPortEnd      = 0xffff
	OpaquePortStart = 0xffff // OPAQUE: start 65535, end 0 (RFC 7296 3.13.1)
	OpaquePortEnd   = 0
)

// ErrUnacceptable reports an empty narrowing result: answer TS_UNACCEPTABLE.
var ErrUnacceptable = errors.New("ts: traffic selectors unacceptable")

// FromPrefix returns the selector covering prefix p, all protocols and ports.
func FromPrefix(p netip.Prefix) Selector {
	p = p.Masked()
	return FromRange(p.Addr(), lastAddr(p))
}

// FromRange returns the selector covering start..end, all protocols and
// ports.
func FromRange(start, end netip.Addr) Selector {
	t := message.TSIPv4AddrRange
	if start.Is6() {
		t = message.TSIPv6AddrRange
	}
	return Selector{Type: t, Start: start, End: end, StartPort: AnyPortStart, EndPort: AnyPortEnd}
}

// Host returns the selector for a single address: what strongSwan's
// "dynamic" becomes.
func Host(a netip.Addr) Selector {
	a = a.Unmap()
	return FromRange(a, a)
}

// lastAddr returns the highest address of prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}

// Parse reads a selector as strongSwan writes it: an address, a prefix
// ("10.1.0.0/16") or a range ("10.1.0.1-10.1.0.9"), optionally followed by
// "[proto]", "[proto/port]", "[proto/lo-hi]" or "[proto/%any]", where proto
// is a name (tcp, udp, icmp, ...), a number or %any. For ICMP the port is
// type and code as strongSwan encodes them (type in the high octet).
func Parse(s string) (Selector, error) {
	addr, spec, hasSpec := strings.Cut(strings.TrimSpace(s), "[")
	var sel Selector
	switch {
	case strings.Contains(addr, "/"):
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return sel, fmt.Errorf("ts: %q: %v", s, err)
		}
		sel = FromPrefix(p)
	case strings.Contains(addr, "-"):
		a, b, _ := strings.Cut(addr, "-")
		start, err1 := netip.ParseAddr(a)
		end, err2 := netip.ParseAddr(b)
		if err1 != nil || err2 != nil || start.Is4() != end.Is4() || end.Less(start) {
			return sel, fmt.Errorf("ts: %q: bad address range", s)
		}
		sel = FromRange(start, end)
	default:
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return sel, fmt.Errorf("ts: %q: %v", s, err)
		}
		sel = Host(a)
	}
	if !hasSpec {
		return sel, nil
	}
	spec, ok := strings.CutSuffix(spec, "]")
	if !ok {
		return sel, fmt.Errorf("ts: %q: missing ]", s)
	}
	proto, port, hasPort := strings.Cut(spec, "/")
	switch {
	case proto == "" || proto == "%any":
	case protoNames[proto] != 0:
		sel.Protocol = protoNames[proto]
	default:
		n, err := strconv.ParseUint(proto, 10, 8)
		if err != nil {
			return sel, fmt.Errorf("ts: %q: unknown protocol %q", s, proto)
		}
		sel.Protocol = uint8(n)
	}
	if !hasPort || port == "" || port == "%any" {
		return sel, nil
	}
	if port == "%opaque" {
		sel.StartPort, sel.EndPort = OpaquePortStart, OpaquePortEnd
		return sel, nil
	}
	lo, hi, isRange := strings.Cut(port, "-")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return sel, fmt.Errorf("ts: %q: bad port %q", s, lo)
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(hi, 10, 16); err != nil || h < l {
			return sel, fmt.Errorf("ts: %q: bad port range %q", s, port)
		}
	}
	sel.StartPort, sel.EndPort = uint16(l), uint16(h)
	return sel, nil
}

// ParseList parses several selectors.
func ParseList(list []string) ([]Selector, error) {
	out := make([]Selector, 0, len(list))
	for _, s := range list {
		sel, err := Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	return out, nil
}

func isOpaque(s *Selector) bool { return s.StartPort == OpaquePortStart && s.EndPort == OpaquePortEnd }

func isRange(s *Selector) bool {
	return (s.Type == message.TSIPv4AddrRange || s.Type == message.TSIPv6AddrRange) &&
		s.Start.IsValid() && s.End.IsValid() && s.Start.BitLen() == s.End.BitLen() &&
		(s.Type == message.TSIPv4AddrRange) == s.Start.Is4() && !s.End.Less(s.Start)
}

// Intersect returns the selector both a and b cover; ok is false if they
// share nothing. Selectors of unknown type never intersect.
func Intersect(a, b Selector) (Selector, bool) {
	if a.Type != b.Type || !isRange(&a) || !isRange(&b) {
		return Selector{}, false
	}
	out := Selector{Type: a.Type}
	switch {
	case a.Protocol == b.Protocol || b.Protocol == 0:
		out.Protocol = a.Protocol
	case a.Protocol == 0:
		out.Protocol = b.Protocol
	default:
		return Selector{}, false
	}
	switch ao, bo := isOpaque(&a), isOpaque(&b); {
	case ao && bo, ao && b.StartPort == AnyPortStart && b.EndPort == AnyPortEnd:
		out.StartPort, out.EndPort = OpaquePortStart, OpaquePortEnd
	case bo && a.StartPort == AnyPortStart && a.EndPort == AnyPortEnd:
		out.StartPort, out.EndPort = OpaquePortStart, OpaquePortEnd
	case ao || bo:
		return Selector{}, false
	default:
		out.StartPort, out.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
		if out.StartPort > out.EndPort {
			return Selector{}, false
		}
	}
	out.Start, out.End = a.Start, a.End
	if out.Start.Less(b.Start) {
		out.Start = b.Start
	}
	if b.End.Less(out.End) {
		out.End = b.End
	}
	if out.End.Less(out.Start) {
		return Selector{}, false
	}
	return out, true
}

// Narrow returns the non-empty intersections of each configured selector
// with each proposed one, in configuration order, dropping any selector
// another one covers (as strongSwan does).
func Narrow(config, proposed []Selector) []Selector {
	var all []Selector
	for _, c := range config {
		for _, p := range proposed {
			if x, ok := Intersect(c, p); ok {
				all = append(all, x)
			}
		}
	}
	var out []Selector
	for i, x := range all {
		redundant := false
		for j, y := range all {
			// Of two equal selectors the first stays.
			if i != j && Contains(y, x) && (j < i || !Contains(x, y)) {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, x)
		}
	}
	return out
}

// NarrowResponder narrows the initiator's TSi and TSr (RFC 7296 section
// 2.9): TSi against the configured remote selectors, TSr against the local
// ones. Either coming out empty is ErrUnacceptable.
func NarrowResponder(tsi, tsr, remote, local []Selector) (newTSi, newTSr []Selector, err error) {
	newTSi, newTSr = Narrow(remote, tsi), Narrow(local, tsr)
	if len(newTSi) == 0 || len(newTSr) == 0 {
		return nil, nil, ErrUnacceptable
	}
	return newTSi, newTSr, nil
}

// Contains reports whether outer covers all of inner.
func Contains(outer, inner Selector) bool {
	x, ok := Intersect(outer, inner)
	return ok && equal(x, inner)
}

// Subset reports whether every selector of narrowed lies within one of
// proposed: the initiator's check of the responder's TSi/TSr.
func Subset(narrowed, proposed []Selector) bool {
	for _, n := range narrowed {
		if !slices.ContainsFunc(proposed, func(p Selector) bool { return Contains(p, n) }) {
			return false
		}
	}
	return true
}

func equal(a, b Selector) bool {
	return a.Type == b.Type && a.Protocol == b.Protocol && a.StartPort == b.StartPort &&
		a.EndPort == b.EndPort && a.Start == b.Start && a.End == b.End && string(a.Data) == string(b.Data)
}
