package spd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/goipsec/goipsec/internal/packet"
)

// Protocol numbers that change how a Selector reads the Flow's ports.
const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// Action is what a policy, or the default, decides for a packet.
type Action uint8

const (
	// Discard drops the packet. It is the zero Action, so that an unset action fails closed.
	Discard Action = iota
	// Bypass passes the packet without IPsec processing.
	Bypass
	// Protect requires IPsec: outbound, through the SA that Policy.Ref designates;
	// inbound, a cleartext packet that matches it is dropped.
	Protect
)

// String returns "discard", "bypass" or "protect".
func (a Action) String() string {
	switch a {
	case Discard:
		return "discard"
	case Bypass:
		return "bypass"
	case Protect:
		return "protect"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

func (a Action) valid() bool { return a <= Protect }

// Direction is the traffic a policy applies to, seen from the local host.
type Direction uint8

const (
	// Outbound is traffic from the local side toward the remote side.
	Outbound Direction = iota
	// Inbound is traffic from the remote side toward the local side.
	Inbound
)

// String returns "out" or "in".
func (d Direction) String() string {
	switch d {
	case Outbound:
		return "out"
	case Inbound:
		return "in"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

func (d Direction) valid() bool { return d <= Inbound }

type portKind uint8

const (
	portAny portKind = iota
	portRange
	portOpaque
	portEmpty
)

// PortRange is a selector value for a port, an ICMP type or an ICMP code:
// ANY (the zero value), an inclusive range of values, or OPAQUE.
type PortRange struct {
	lo, hi uint16
	kind   portKind
}

// AnyPort returns the ANY value: it matches every value, and OPAQUE ports.
func AnyPort() PortRange { return PortRange{} }

// OpaquePort returns the OPAQUE value (IKEv2's 65535-0): it matches only flows whose ports are OPAQUE.
func OpaquePort() PortRange { return PortRange{lo: 0xffff, kind: portOpaque} }

// Port returns the range holding only p.
func Port(p uint16) PortRange { return Ports(p, p) }

// Ports returns the range lo through hi; 0-65535 is ANY, and lo > hi is an empty range that Validate rejects.
func Ports(lo, hi uint16) PortRange {
	switch {
	case lo == 0 && hi == 0xffff:
		return PortRange{}
	case lo > hi:
		return PortRange{lo: lo, hi: hi, kind: portEmpty}
	}
	return PortRange{lo: lo, hi: hi, kind: portRange}
}

// IsAny reports whether r is ANY.
func (r PortRange) IsAny() bool { return r.kind == portAny }

// IsOpaque reports whether r is OPAQUE.
func (r PortRange) IsOpaque() bool { return r.kind == portOpaque }

// Bounds returns r as IKEv2 traffic selectors encode it: 0-65535 for ANY, 65535-0 for OPAQUE.
func (r PortRange) Bounds() (lo, hi uint16) {
	if r.kind == portAny {
		return 0, 0xffff
	}
	return r.lo, r.hi
}

// String returns "any", "opaque", a single value or "lo-hi".
func (r PortRange) String() string {
	switch r.kind {
	case portAny:
		return "any"
	case portOpaque:
		return "opaque"
	}
	if r.lo == r.hi && r.kind == portRange {
		return strconv.Itoa(int(r.lo))
	}
	return strconv.Itoa(int(r.lo)) + "-" + strconv.Itoa(int(r.hi))
}

// matches reports whether the port value v of a flow, or OPAQUE when opaque
// is set, falls in r.
func (r PortRange) matches(v uint16, opaque bool) bool {
	switch r.kind {
	case portAny:
		return true
	case portOpaque:
		return opaque
	case portRange:
		return !opaque && r.lo <= v && v <= r.hi
	}
	return false
}

// AddrRange is an inclusive range of addresses of one family; a prefix is
// the range it covers. Zones are ignored.
type AddrRange struct {
	From, To netip.Addr
}

// PrefixRange returns the range of addresses that p covers (invalid if p is).
func PrefixRange(p netip.Prefix) AddrRange {
	if !p.IsValid() {
		return AddrRange{}
	}
	p = p.Masked()
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) | uint32(lowMask64(uint(32-p.Bits())))
		binary.BigEndian.PutUint32(b[:], v)
		return AddrRange{From: a, To: netip.AddrFrom4(b)}
	}
	u := u128FromAddr(a).or(lowMask128(uint(128 - p.Bits())))
	return AddrRange{From: a, To: u.addr6()}
}

// HostRange returns the range holding only a.
func HostRange(a netip.Addr) AddrRange { return AddrRange{From: a, To: a} }

// ParseAddrRange parses "10.0.0.0/8", "10.0.0.1-10.0.0.9", "2001:db8::1" and the like.
func ParseAddrRange(s string) (AddrRange, error) {
	if from, to, ok := strings.Cut(s, "-"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(from))
		if err != nil {
			return AddrRange{}, err
		}
		b, err := netip.ParseAddr(strings.TrimSpace(to))
		if err != nil {
			return AddrRange{}, err
		}
		r := AddrRange{From: a, To: b}
		return r, r.check()
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return AddrRange{}, err
		}
		return PrefixRange(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return AddrRange{}, err
	}
	return HostRange(a), nil
}

// MustParseAddrRange is ParseAddrRange that panics on error, for tests and constants.
func MustParseAddrRange(s string) AddrRange {
	r, err := ParseAddrRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

// IsValid reports whether r is a non-empty range of a single family.
func (r AddrRange) IsValid() bool { return r.check() == nil }

func (r AddrRange) check() error {
	switch {
	case !r.From.IsValid() || !r.To.IsValid():
		return errors.New("invalid address")
	case r.From.BitLen() != r.To.BitLen():
		return fmt.Errorf("range %v-%v mixes address families", r.From, r.To)
	case r.From.WithZone("").Compare(r.To.WithZone("")) > 0:
		return fmt.Errorf("empty range %v-%v", r.From, r.To)
	}
	return nil
}

// Contains reports whether a lies in r.
func (r AddrRange) Contains(a netip.Addr) bool {
	if a.BitLen() != r.From.BitLen() || a.BitLen() == 0 {
		return false
	}
	a = a.WithZone("")
	return r.From.WithZone("").Compare(a) <= 0 && a.Compare(r.To.WithZone("")) <= 0
}

// Prefix returns the prefix that r covers exactly, if there is one.
func (r AddrRange) Prefix() (netip.Prefix, bool) {
	if !r.IsValid() {
		return netip.Prefix{}, false
	}
	for bits := 0; bits <= r.From.BitLen(); bits++ {
		p := netip.PrefixFrom(r.From.WithZone(""), bits)
		if p.Masked() == p && PrefixRange(p).To == r.To.WithZone("") {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// String returns r as a prefix if it is one, else as "from-to".
func (r AddrRange) String() string {
	if p, ok := r.Prefix(); ok {
		return p.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// listContains reports whether a, as a number of family is4, lies in a range
// of l; an empty l is ANY.
func listContains(l []AddrRange, a u128, is4 bool) bool {
	if len(l) == 0 {
		return true
	}
	for i := range l {
		r := &l[i]
		if r.From.Is4() == is4 && u128FromAddr(r.From).cmp(a) <= 0 && a.cmp(u128FromAddr(r.To)) <= 0 {
			return true
		}
	}
	return false
}

// Selector is the set of packets a policy applies to (RFC 4301 section
// 4.4.1), written from the local host's point of view.
type Selector struct {
	// Local and Remote are the addresses the local and the remote end may
	// have; an empty list is ANY (IPv4 and IPv6).
	Local, Remote []AddrRange
	// Proto is the upper-layer protocol number; 0 is ANY.
	Proto uint8
	// LocalPorts and RemotePorts select the ports of protocols other than
	// ICMP and ICMPv6; they must be ANY when Proto is ANY.
	LocalPorts, RemotePorts PortRange
	// ICMPType and ICMPCode select ICMP (Proto 1) or ICMPv6 (Proto 58)
	// messages, in either direction; they must be ANY for other protocols.
	ICMPType, ICMPCode PortRange
}

func isICMP(proto uint8) bool { return proto == protoICMP || proto == protoICMPv6 }

// Validate reports why s cannot be installed, or nil.
func (s *Selector) Validate() error {
	for i, r := range s.Local {
		if err := r.check(); err != nil {
			return fmt.Errorf("local[%d]: %v", i, err)
		}
	}
	for i, r := range s.Remote {
		if err := r.check(); err != nil {
			return fmt.Errorf("remote[%d]: %v", i, err)
		}
	}
	ports := []struct {
		name string
		r    PortRange
	}{{"local port", s.LocalPorts}, {"remote port", s.RemotePorts}, {"ICMP type", s.ICMPType}, {"ICMP code", s.ICMPCode}}
	for i, p := range ports {
		switch {
		case p.r.kind == portEmpty:
			return fmt.Errorf("%s: empty range %d-%d", p.name, p.r.lo, p.r.hi)
		case p.r.kind > portEmpty:
			return fmt.Errorf("%s: invalid value", p.name)
		case p.r.kind == portAny:
		case s.Proto == 0:
			return fmt.Errorf("%s %v needs a specific protocol", p.name, p.r)
		case isICMP(s.Proto) && i < 2:
			return fmt.Errorf("%s %v with ICMP: use ICMPType and ICMPCode", p.name, p.r)
		case !isICMP(s.Proto) && i >= 2:
			return fmt.Errorf("%s %v with protocol %d, not ICMP", p.name, p.r, s.Proto)
		case i >= 2 && p.r.kind == portRange && p.r.hi > 0xff:
			return fmt.Errorf("%s %v beyond 255", p.name, p.r)
		}
	}
	return nil
}

// flowFamily reports whether f has valid addresses of one family.
func flowFamily(f *packet.Flow) (fam int, ok bool) {
	switch {
	case f.Src.Is4() && f.Dst.Is4():
		return famV4, true
	case f.Src.Is6() && f.Dst.Is6():
		return famV6, true
	}
	return 0, false
}

// MatchOutbound reports whether an outbound packet f matches s: f.Src is the
// local end and f.Dst the remote one.
func (s *Selector) MatchOutbound(f *packet.Flow) bool {
	return s.match(f, f.Src, f.Dst, f.SrcPort, f.DstPort)
}

// MatchInbound reports whether an inbound packet f matches s: f.Src is the
// remote end and f.Dst the local one. The datapath uses it to check that a
// decrypted packet fits the selectors of the SA it came through.
func (s *Selector) MatchInbound(f *packet.Flow) bool {
	return s.match(f, f.Dst, f.Src, f.DstPort, f.SrcPort)
}

func (s *Selector) match(f *packet.Flow, local, remote netip.Addr, lport, rport uint16) bool {
	fam, ok := flowFamily(f)
	if !ok {
		return false
	}
	if s.Proto != 0 && s.Proto != f.Proto {
		return false
	}
	if !listContains(s.Local, u128FromAddr(local), fam == famV4) || !listContains(s.Remote, u128FromAddr(remote), fam == famV4) {
		return false
	}
	if isICMP(s.Proto) {
		return s.ICMPType.matches(f.SrcPort, f.Opaque) && s.ICMPCode.matches(f.DstPort, f.Opaque)
	}
	return s.LocalPorts.matches(lport, f.Opaque) && s.RemotePorts.matches(rport, f.Opaque)
}

// String returns a one-line description of s for logs.
func (s Selector) String() string {
	var b strings.Builder
	list := func(l []AddrRange) {
		if len(l) == 0 {
			b.WriteString("any")
			return
		}
		for i, r := range l {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(r.String())
		}
	}
	b.WriteString("local ")
	list(s.Local)
	b.WriteString(" remote ")
	list(s.Remote)
	b.WriteString(" proto ")
	if s.Proto == 0 {
		b.WriteString("any")
	} else {
		b.WriteString(strconv.Itoa(int(s.Proto)))
	}
	if isICMP(s.Proto) {
		fmt.Fprintf(&b, " type %v code %v", s.ICMPType, s.ICMPCode)
	} else if s.Proto != 0 {
		fmt.Fprintf(&b, " lport %v rport %v", s.LocalPorts, s.RemotePorts)
	}
	return b.String()
}

// clone returns a copy of s that shares no memory with it, zones stripped.
func (s *Selector) clone() Selector {
	c := *s
	nl, nr := len(s.Local), len(s.Remote)
	if nl+nr == 0 {
		return c
	}
	buf := make([]AddrRange, nl+nr) // one allocation for both lists
	for i, r := range s.Local {
		buf[i] = AddrRange{From: r.From.WithZone(""), To: r.To.WithZone("")}
	}
	for i, r := range s.Remote {
		buf[nl+i] = AddrRange{From: r.From.WithZone(""), To: r.To.WithZone("")}
	}
	c.Local, c.Remote = nil, nil
	if nl > 0 {
		c.Local = buf[:nl:nl]
	}
	if nr > 0 {
		c.Remote = buf[nl:]
	}
	return c
}
