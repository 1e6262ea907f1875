//go:build linux

package interop

import (
	"fmt"
	"net/netip"
	"testing"
)

// TopologyOptions choose the shape of a [Topology].
type TopologyOptions struct {
	// NAT puts a router namespace between Left and Right that masquerades
	// Left's private network (nftables, table inet, so IPv4 and IPv6)
	// behind its public address; Right knows Left only as that address.
	NAT bool
	// ForwardIKE (with NAT) also forwards UDP 500 and 4500 arriving at the
	// router's public address to Left (DNAT), so that Right can initiate
	// to a Left behind the NAT.
	ForwardIKE bool
	// IPv6 adds IPv6 underlay and inner addresses next to the IPv4 ones.
	IPv6 bool
}

// Topology is two hosts, Left and Right, joined by a veth or, with
// TopologyOptions.NAT, through a masquerading Router. Each host also holds
// an inner address on its loopback (a /32, or /128) for tunnel-mode
// traffic selectors: traffic between LeftInner and RightInner goes through
// the tunnel once an IPsec peer routes it there (strongSwan's
// kernel-libipsec installs a route to the remote selector via its TUN
// device, ipsec0).
//
// Addresses:
//
//	direct:  Left 192.0.2.1/24      Right 192.0.2.2/24
//	         2001:db8:2::1/64       2001:db8:2::2/64
//	NAT:     Left 192.168.100.2/24 - 192.168.100.1 Router 198.51.100.1 - 198.51.100.2/24 Right
//	         fd00:100::2/64 - fd00:100::1 Router 2001:db8:51::1 - 2001:db8:51::2/64
//	inner:   Left 10.1.0.1, fd01::1 Right 10.2.0.1, fd02::1
type Topology struct {
	// Lab owns the namespaces.
	Lab *Lab
	// Left, Right and Router are the namespaces (Router is nil without
	// NAT).
	Left, Right, Router *Netns

	// LeftDev and RightDev are the hosts' underlay interfaces.
	LeftDev, RightDev string
	// LeftAddr and RightAddr are the hosts' own IPv4 underlay addresses.
	LeftAddr, RightAddr netip.Addr
	// LeftPublic is the address Right sees Left's packets come from (the
	// router's public address with NAT, else LeftAddr).
	LeftPublic netip.Addr
	// LeftAddr6, RightAddr6 and LeftPublic6 are the same for IPv6 (zero
	// without TopologyOptions.IPv6).
	LeftAddr6, RightAddr6, LeftPublic6 netip.Addr
	// LeftInner and RightInner are the hosts' inner (tunnelled) IPv4
	// addresses, on their loopback.
	LeftInner, RightInner netip.Addr
	// LeftInner6 and RightInner6 are the inner IPv6 addresses (zero
	// without TopologyOptions.IPv6).
	LeftInner6, RightInner6 netip.Addr
}

// NewTopology builds the namespaces, links, addresses, routes and (with
// NAT) the router's forwarding and nftables rules. Everything goes away at
// the test's cleanup.
func NewTopology(t testing.TB, opt TopologyOptions) *Topology {
	t.Helper()
	if opt.NAT {
		RequireTools(t, "nft")
	}
	l := NewLab(t)
	tp := &Topology{Lab: l, Left: l.Netns("left"), Right: l.Netns("right")}
	tp.LeftInner, tp.RightInner = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	if opt.IPv6 {
		tp.LeftInner6, tp.RightInner6 = netip.MustParseAddr("fd01::1"), netip.MustParseAddr("fd02::1")
	}
	tp.LeftDev, tp.RightDev = "eth-l", "eth-r"
	v6 := func(s string) []string {
		if opt.IPv6 {
			return []string{s}
		}
		return nil
	}
	if !opt.NAT {
		tp.LeftAddr, tp.RightAddr = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		tp.LeftPublic = tp.LeftAddr
		if opt.IPv6 {
			tp.LeftAddr6, tp.RightAddr6 = netip.MustParseAddr("2001:db8:2::1"), netip.MustParseAddr("2001:db8:2::2")
			tp.LeftPublic6 = tp.LeftAddr6
		}
		l.Link(tp.Left, tp.LeftDev, append([]string{"192.0.2.1/24"}, v6("2001:db8:2::1/64")...),
			tp.Right, tp.RightDev, append([]string{"192.0.2.2/24"}, v6("2001:db8:2::2/64")...))
	} else {
		tp.Router = l.Netns("router")
		tp.LeftAddr, tp.RightAddr = netip.MustParseAddr("192.168.100.2"), netip.MustParseAddr("198.51.100.2")
		tp.LeftPublic = netip.MustParseAddr("198.51.100.1")
		if opt.IPv6 {
			tp.LeftAddr6, tp.RightAddr6 = netip.MustParseAddr("fd00:100::2"), netip.MustParseAddr("2001:db8:51::2")
			tp.LeftPublic6 = netip.MustParseAddr("2001:db8:51::1")
		}
		l.Link(tp.Left, tp.LeftDev, append([]string{"192.168.100.2/24"}, v6("fd00:100::2/64")...),
			tp.Router, "priv", append([]string{"192.168.100.1/24"}, v6("fd00:100::1/64")...))
		l.Link(tp.Router, "pub", append([]string{"198.51.100.1/24"}, v6("2001:db8:51::1/64")...),
			tp.Right, tp.RightDev, append([]string{"198.51.100.2/24"}, v6("2001:db8:51::2/64")...))
		tp.Left.IP(t, "route", "add", "default", "via", "192.168.100.1")
		tp.Router.Sysctl(t, "net.ipv4.ip_forward=1")
		if opt.IPv6 {
			tp.Left.IP(t, "-6", "route", "add", "default", "via", "fd00:100::1")
			tp.Router.Sysctl(t, "net.ipv6.conf.all.forwarding=1")
		}
		rules := `table inet goinat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "pub" masquerade
	}
`
		if opt.ForwardIKE {
			rules += fmt.Sprintf(`	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "pub" ip daddr %s udp dport { 500, 4500 } dnat ip to %s
`, tp.LeftPublic, tp.LeftAddr)
			if opt.IPv6 {
				rules += fmt.Sprintf("\t\tiifname \"pub\" ip6 daddr %s udp dport { 500, 4500 } dnat ip6 to %s\n", tp.LeftPublic6, tp.LeftAddr6)
			}
			rules += "\t}\n"
		}
		rules += "}\n"
		tp.Router.Nft(t, rules)
	}
	tp.Left.AddAddr(t, "lo", tp.LeftInner.String()+"/32")
	tp.Right.AddAddr(t, "lo", tp.RightInner.String()+"/32")
	if opt.IPv6 {
		tp.Left.AddAddr(t, "lo", tp.LeftInner6.String()+"/128")
		tp.Right.AddAddr(t, "lo", tp.RightInner6.String()+"/128")
	}
	return tp
}

// Conntrack lists the router's connection tracking table for UDP (the
// NAT's mappings; "" without a router, an error message without the
// conntrack tool).
func (tp *Topology) Conntrack() string {
	if tp.Router == nil {
		return ""
	}
	out, err := tp.Router.Output("conntrack", "-L", "-p", "udp")
	if err != nil {
		return err.Error()
	}
	return out
}
