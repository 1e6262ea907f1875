//go:build linux

package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"
)

// Link configures one network interface through rtnetlink (no exec of
// ip(8)). Its methods apply one step each and return the Undo for it; call
// the Undo functions before Close.
type Link struct {
	c     *rtnetlink.Conn
	index uint32
	name  string
}

// OpenLink finds the interface called name, in the calling thread's network
// namespace, and opens an rtnetlink connection to configure it.
func OpenLink(name string) (*Link, error) {
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("tun: rtnetlink: %w", err)
	}
	links, err := c.Link.List()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("tun: listing links: %w", err)
	}
	for _, m := range links {
		if m.Attributes != nil && m.Attributes.Name == name {
			return &Link{c: c, index: m.Index, name: name}, nil
		}
	}
	c.Close()
	return nil, fmt.Errorf("tun: no link called %q", name)
}

// Close closes the rtnetlink connection.
func (l *Link) Close() error { return l.c.Close() }

// Index returns the interface index.
func (l *Link) Index() int { return int(l.index) }

// Name returns the interface name.
func (l *Link) Name() string { return l.name }

func (l *Link) get() (rtnetlink.LinkMessage, error) {
	m, err := l.c.Link.Get(l.index)
	if err != nil {
		return m, fmt.Errorf("tun: link %s: %w", l.name, err)
	}
	return m, nil
}

// Up brings the link up; its Undo brings it down again if it was down.
func (l *Link) Up() (Undo, error) {
	m, err := l.get()
	if err != nil {
		return nil, err
	}
	if m.Flags&unix.IFF_UP != 0 {
		return func() error { return nil }, nil
	}
	if err := l.setFlags(unix.IFF_UP); err != nil {
		return nil, fmt.Errorf("tun: setting %s up: %w", l.name, err)
	}
	return func() error {
		if err := l.setFlags(0); err != nil && !gone(err) {
			return fmt.Errorf("tun: setting %s down: %w", l.name, err)
		}
		return nil
	}, nil
}

func (l *Link) setFlags(flags uint32) error {
	return l.c.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: l.index, Flags: flags, Change: unix.IFF_UP})
}

// SetMTU sets the link MTU; its Undo restores the previous one.
func (l *Link) SetMTU(mtu int) (Undo, error) {
	if mtu <= 0 || mtu > 1<<16 {
		return nil, fmt.Errorf("tun: MTU %d out of range", mtu)
	}
	m, err := l.get()
	if err != nil {
		return nil, err
	}
	old := uint32(0)
	if m.Attributes != nil {
		old = m.Attributes.MTU
	}
	if old == uint32(mtu) {
		return func() error { return nil }, nil
	}
	if err := l.setMTU(uint32(mtu)); err != nil {
		return nil, fmt.Errorf("tun: MTU %d on %s: %w", mtu, l.name, err)
	}
	return func() error {
		if err := l.setMTU(old); err != nil && !gone(err) {
			return fmt.Errorf("tun: restoring MTU %d on %s: %w", old, l.name, err)
		}
		return nil
	}, nil
}

func (l *Link) setMTU(mtu uint32) error {
	return l.c.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: l.index, Attributes: &rtnetlink.LinkAttributes{MTU: mtu}})
}

// SetTxQueueLen sets the link's transmit queue length in packets (for a
// TUN device: how many packets wait for the reader before the kernel
// drops); its Undo restores the previous length.
func (l *Link) SetTxQueueLen(n int) (Undo, error) {
	if n <= 0 || n > 1<<20 {
		return nil, fmt.Errorf("tun: transmit queue length %d out of range", n)
	}
	m, err := l.get()
	if err != nil {
		return nil, err
	}
	var old uint32
	if m.Attributes != nil && m.Attributes.TxQueueLen != nil {
		old = *m.Attributes.TxQueueLen
	}
	if old == uint32(n) {
		return func() error { return nil }, nil
	}
	if err := l.setTxQueueLen(uint32(n)); err != nil {
		return nil, fmt.Errorf("tun: transmit queue length %d on %s: %w", n, l.name, err)
	}
	return func() error {
		if old == 0 {
			return nil
		}
		if err := l.setTxQueueLen(old); err != nil && !gone(err) {
			return fmt.Errorf("tun: restoring transmit queue length %d on %s: %w", old, l.name, err)
		}
		return nil
	}, nil
}

// setTxQueueLen sets the queue length with SIOCSIFTXQLEN: rtnetlink's
// encoder leaves IFLA_TXQLEN out.
func (l *Link) setTxQueueLen(n uint32) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(l.name)
	if err != nil {
		return err
	}
	ifr.SetUint32(n)
	return unix.IoctlIfreq(fd, unix.SIOCSIFTXQLEN, ifr)
}

// AddAddress adds an address with its on-link prefix (10.1.0.1/24); its
// Undo removes it. IPv6 addresses skip duplicate address detection.
func (l *Link) AddAddress(p netip.Prefix) (Undo, error) {
	if !p.IsValid() {
		return nil, errors.New("tun: invalid address prefix")
	}
	msg := l.addrMsg(p)
	if err := l.c.Address.New(msg); err != nil {
		return nil, fmt.Errorf("tun: adding address %v to %s: %w", p, l.name, err)
	}
	return func() error {
		if err := l.c.Address.Delete(l.addrMsg(p)); err != nil && !gone(err) {
			return fmt.Errorf("tun: removing address %v from %s: %w", p, l.name, err)
		}
		return nil
	}, nil
}

func (l *Link) addrMsg(p netip.Prefix) *rtnetlink.AddressMessage {
	ip := net.IP(p.Addr().Unmap().AsSlice())
	m := &rtnetlink.AddressMessage{
		Family:       family(p.Addr()),
		PrefixLength: uint8(p.Bits()),
		Scope:        unix.RT_SCOPE_UNIVERSE,
		Index:        l.index,
		Attributes:   &rtnetlink.AddressAttributes{Address: ip, Local: ip},
	}
	if m.Family == unix.AF_INET6 {
		m.Flags = unix.IFA_F_NODAD
		m.Attributes.Flags = unix.IFA_F_NODAD
	}
	return m
}

// AddRoute routes dst through the link in routing table table (0: main);
// its Undo removes the route.
func (l *Link) AddRoute(dst netip.Prefix, table uint32) (Undo, error) {
	if !dst.IsValid() {
		return nil, errors.New("tun: invalid route prefix")
	}
	dst = dst.Masked()
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	if err := l.c.Route.Add(l.routeMsg(dst, table, false)); err != nil {
		return nil, fmt.Errorf("tun: adding route %v (table %d) via %s: %w", dst, table, l.name, err)
	}
	return func() error {
		if err := l.c.Route.Delete(l.routeMsg(dst, table, true)); err != nil && !gone(err) {
			return fmt.Errorf("tun: removing route %v (table %d) via %s: %w", dst, table, l.name, err)
		}
		return nil
	}, nil
}

// AddFailClosed installs "unreachable dst metric 2^32-1" in table (0:
// main): a route that loses to the link's own route while the link exists
// and, when the daemon dies and its TUN device goes with its routes, keeps
// traffic for dst from falling through to another route in clear. A route
// left behind by an earlier crash is taken over. Its Undo removes it.
func (l *Link) AddFailClosed(dst netip.Prefix, table uint32) (Undo, error) {
	if !dst.IsValid() {
		return nil, errors.New("tun: invalid route prefix")
	}
	dst = dst.Masked()
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	m := failClosedMsg(dst, table)
	if err := l.c.Route.Add(m); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("tun: adding unreachable route %v (table %d): %w", dst, table, err)
	}
	return func() error {
		if err := l.c.Route.Delete(failClosedMsg(dst, table)); err != nil && !gone(err) {
			return fmt.Errorf("tun: removing unreachable route %v (table %d): %w", dst, table, err)
		}
		return nil
	}, nil
}

func failClosedMsg(dst netip.Prefix, table uint32) *rtnetlink.RouteMessage {
	return &rtnetlink.RouteMessage{
		Family:    family(dst.Addr()),
		DstLength: uint8(dst.Bits()),
		Table:     tableByte(table),
		Protocol:  unix.RTPROT_BOOT,
		Scope:     unix.RT_SCOPE_UNIVERSE,
		Type:      unix.RTN_UNREACHABLE,
		Attributes: rtnetlink.RouteAttributes{
			Dst:      net.IP(dst.Addr().Unmap().AsSlice()),
			Table:    table,
			Priority: ^uint32(0),
		},
	}
}

func (l *Link) routeMsg(dst netip.Prefix, table uint32, del bool) *rtnetlink.RouteMessage {
	m := &rtnetlink.RouteMessage{
		Family:    family(dst.Addr()),
		DstLength: uint8(dst.Bits()),
		Table:     tableByte(table),
		Protocol:  unix.RTPROT_BOOT,
		Scope:     unix.RT_SCOPE_LINK,
		Type:      unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{
			Dst:      net.IP(dst.Addr().Unmap().AsSlice()),
			OutIface: l.index,
			Table:    table,
		},
	}
	if del {
		m.Scope = unix.RT_SCOPE_NOWHERE // any scope, as ip(8) deletes
	}
	return m
}

// AddPolicyRouting sets up the routes and rules that PolicyRouting
// describes; its Undo removes exactly those.
func (l *Link) AddPolicyRouting(pr PolicyRouting) (Undo, error) {
	if err := pr.validate(); err != nil {
		return nil, err
	}
	var steps []Undo
	fail := func(err error) (Undo, error) {
		if uerr := undoAll(steps); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, err
	}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		has, dflt := false, false
		for _, p := range pr.Prefixes {
			if family(p.Addr()) != fam {
				continue
			}
			has = true
			dflt = dflt || p.Bits() == 0
			u, err := l.AddRoute(p, pr.Table)
			if err != nil {
				return fail(err)
			}
			steps = append(steps, u)
			if u, err = l.AddFailClosed(p, pr.Table); err != nil {
				return fail(err)
			}
			steps = append(steps, u)
		}
		if !has {
			continue
		}
		u, err := l.addRule(l.markRule(fam, pr))
		if err != nil {
			return fail(err)
		}
		steps = append(steps, u)
		if dflt {
			u, err := l.addRule(suppressRule(fam, pr))
			if err != nil {
				return fail(err)
			}
			steps = append(steps, u)
		}
	}
	return func() error { return undoAll(steps) }, nil
}

// markRule is "not fwmark Mark lookup Table".
func (l *Link) markRule(fam uint8, pr PolicyRouting) *rtnetlink.RuleMessage {
	mark, mask, table := pr.Mark, uint32(0xffffffff), pr.Table
	m := &rtnetlink.RuleMessage{
		Family: fam,
		Table:  tableByte(table),
		Action: unix.FR_ACT_TO_TBL,
		Flags:  unix.FIB_RULE_INVERT,
		Attributes: &rtnetlink.RuleAttributes{
			FwMark: &mark,
			FwMask: &mask,
			Table:  &table,
		},
	}
	if pr.Priority != 0 {
		prio := pr.Priority
		m.Attributes.Priority = &prio
	}
	return m
}

// suppressRule is "lookup main suppress_prefixlength 0".
func suppressRule(fam uint8, pr PolicyRouting) *rtnetlink.RuleMessage {
	table, zero := uint32(unix.RT_TABLE_MAIN), uint32(0)
	m := &rtnetlink.RuleMessage{
		Family: fam,
		Table:  unix.RT_TABLE_MAIN,
		Action: unix.FR_ACT_TO_TBL,
		Attributes: &rtnetlink.RuleAttributes{
			Table:             &table,
			SuppressPrefixLen: &zero,
		},
	}
	if pr.Priority != 0 {
		prio := pr.Priority - 1
		m.Attributes.Priority = &prio
	}
	return m
}

func (l *Link) addRule(m *rtnetlink.RuleMessage) (Undo, error) {
	// Rules are not unique: remove copies an earlier run left behind (a
	// crash skips the undo) so that they do not pile up.
	for i := 0; i < 64 && l.c.Rule.Delete(m) == nil; i++ {
	}
	if err := l.c.Rule.Add(m); err != nil {
		return nil, fmt.Errorf("tun: adding rule %s: %w", describeRule(m), err)
	}
	return func() error {
		if err := l.c.Rule.Delete(m); err != nil && !gone(err) {
			return fmt.Errorf("tun: removing rule %s: %w", describeRule(m), err)
		}
		return nil
	}, nil
}

func describeRule(m *rtnetlink.RuleMessage) string {
	a := m.Attributes
	if a.FwMark != nil {
		return fmt.Sprintf("not fwmark %#x lookup %d", *a.FwMark, *a.Table)
	}
	return "lookup main suppress_prefixlength 0"
}

// Configure applies cfg to the link called name in order (MTU, transmit
// queue length, addresses, up, routes, policy routing) and returns an undo that reverts exactly those
// steps, in reverse. On error, the steps already done are reverted. The
// kernel makes new IPv6 addresses reachable a moment after the link comes
// up (asynchronously, even without DAD).
func Configure(name string, cfg Config) (Undo, error) {
	l, err := OpenLink(name)
	if err != nil {
		return nil, err
	}
	var steps []Undo
	add := func(u Undo, err error) error {
		if err == nil {
			steps = append(steps, u)
		}
		return err
	}
	err = func() error {
		if cfg.MTU != 0 {
			if err := add(l.SetMTU(cfg.MTU)); err != nil {
				return err
			}
		}
		if cfg.TxQueueLen != 0 {
			if err := add(l.SetTxQueueLen(cfg.TxQueueLen)); err != nil {
				return err
			}
		}
		for _, p := range cfg.Addresses {
			if err := add(l.AddAddress(p)); err != nil {
				return err
			}
		}
		if err := add(l.Up()); err != nil {
			return err
		}
		for _, p := range cfg.Routes {
			if err := add(l.AddRoute(p, 0)); err != nil {
				return err
			}
		}
		for _, p := range cfg.FailClosed {
			if err := add(l.AddFailClosed(p, 0)); err != nil {
				return err
			}
		}
		if cfg.Policy != nil {
			if err := add(l.AddPolicyRouting(*cfg.Policy)); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		if uerr := undoAll(steps); uerr != nil {
			err = errors.Join(err, uerr)
		}
		l.Close()
		return nil, err
	}
	var once sync.Once
	return func() error {
		once.Do(func() {
			err = undoAll(steps)
			l.Close()
		})
		return err
	}, nil
}

func family(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// tableByte is the 8-bit table field: the table itself when it fits, else
// RT_TABLE_UNSPEC with the table in the attribute (as ip(8) does).
func tableByte(t uint32) uint8 {
	if t < 256 {
		return uint8(t)
	}
	return unix.RT_TABLE_UNSPEC
}

// gone tells whether a removal failed because the object is already gone.
func gone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EADDRNOTAVAIL)
}
