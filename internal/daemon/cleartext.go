package daemon

import (
	"context"
	"fmt"
	"net/netip"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/tun"
)

// RouteTable is the routing table used for policy routing on host-to-host
// links (see tun.PolicyRouting).
const RouteTable = 0x4711

// espUDPOverhead is the most ESP-in-UDP adds to an inner packet: outer IPv6
// and UDP headers, ESP header and IV, up to 15 bytes of padding, pad length,
// next header and a 32-byte ICV.
const espUDPOverhead = 40 + 8 + 8 + 16 + 15 + 2 + 32

func (d *Daemon) openCleartext(ctx context.Context) error {
	t := &d.cfg.Tun
	switch t.Mode {
	case "netstack":
		return d.openNetstack(ctx)
	case "kernel":
	default:
		return fmt.Errorf("tun.mode %q", t.Mode)
	}
	if t.MTU+espUDPOverhead > 1500 {
		d.log.Info("tun MTU plus ESP-in-UDP overhead exceeds 1500: ESP packets may be fragmented on a 1500-byte underlay",
			zap.Int("mtu", t.MTU), zap.Int("overhead", espUDPOverhead))
	}
	dev, err := tun.CreateKernel(t.Name, t.MTU)
	if err != nil {
		return fmt.Errorf("tun %s: %w", t.Name, err)
	}
	d.dev = dev
	name, err := dev.Name()
	if err != nil {
		return err
	}
	cfg := tun.Config{MTU: t.MTU, Addresses: t.Prefixes}
	var policy []netip.Prefix
	for _, sc := range d.statics {
		for _, p := range sc.Remote {
			switch {
			case p.Contains(sc.Peer.Addr()):
				// Host to host: route by firewall mark so that the
				// daemon's own ESP packets to the peer still leave
				// through the underlay.
				policy = append(policy, p)
			case coveredBy(p, t.Prefixes):
				// The device's own prefix already routes it.
			default:
				cfg.Routes = append(cfg.Routes, p)
			}
		}
	}
	if len(policy) > 0 {
		cfg.Policy = &tun.PolicyRouting{Mark: FWMark, Table: RouteTable, Prefixes: policy}
	}
	undo, err := tun.Configure(name, cfg)
	if err != nil {
		return fmt.Errorf("tun %s: %w", name, err)
	}
	d.cleanup = append(d.cleanup, func() {
		if err := undo(); err != nil {
			d.log.Warn("tun cleanup", zap.Error(err))
		}
	})
	d.log.Info("tun device up", zap.String("name", name), zap.Int("mtu", t.MTU),
		zap.Stringers("addresses", t.Prefixes), zap.Stringers("routes", cfg.Routes), zap.Stringers("policy_routes", policy))
	return nil
}

// coveredBy reports whether p lies inside one of the device's own prefixes.
func coveredBy(p netip.Prefix, own []netip.Prefix) bool {
	for _, o := range own {
		if o.Masked().Contains(p.Addr()) && o.Bits() <= p.Bits() {
			return true
		}
	}
	return false
}
