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

// overhead is the most ESP in UDP adds to an inner packet for the static
// children's transforms: outer IP and UDP headers, ESP header and IV,
// padding, pad length, next header and ICV.
func (d *Daemon) overhead() int {
	most := 0
	for _, sc := range d.statics {
		outer := 20
		if sc.Peer.Addr().Is6() && !sc.Peer.Addr().Is4In6() {
			outer = 40
		}
		e := sc.Out.Enc
		n := outer + 8 + 8 + e.IVLen + e.Block - 1 + 2 + e.ICVLen
		if sc.Out.Integ != nil {
			n += sc.Out.Integ.ICVLen
		}
		most = max(most, n)
	}
	return most
}

func (d *Daemon) openCleartext(ctx context.Context) error {
	t := &d.cfg.Tun
	switch t.Mode {
	case "netstack":
		return d.openNetstack(ctx)
	case "kernel":
	default:
		return fmt.Errorf("tun.mode %q", t.Mode)
	}
	if o := d.overhead(); t.MTU+o > 1500 {
		d.log.Named("tun").Warn("tun MTU plus ESP-in-UDP overhead exceeds 1500: ESP packets will be fragmented on a 1500-byte underlay",
			zap.Int("mtu", t.MTU), zap.Int("overhead", o), zap.Int("suggested_mtu", 1500-o))
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
	cfg := tun.Config{MTU: t.MTU, TxQueueLen: tun.DefaultTxQueueLen, Addresses: t.Prefixes}
	var policy []netip.Prefix
	for _, r := range d.protectedRoutes() {
		p := r.prefix
		switch {
		case p.Contains(r.peer):
			// Host to host: route by firewall mark so that the
			// daemon's own ESP packets to the peer still leave
			// through the underlay.
			policy = append(policy, p)
		case coveredBy(p, t.Prefixes):
			// The device's own prefix already routes it; the
			// fail-closed route must not be more specific than
			// that connected route, or it would win.
			cfg.FailClosed = append(cfg.FailClosed, covering(p, t.Prefixes))
		default:
			cfg.Routes = append(cfg.Routes, p)
			cfg.FailClosed = append(cfg.FailClosed, p)
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
			d.log.Named("tun").Warn("tun cleanup", zap.Error(err))
		}
	})
	d.log.Named("tun").Info("tun device up", zap.String("name", name), zap.Int("mtu", t.MTU),
		zap.Stringers("addresses", t.Prefixes), zap.Stringers("routes", cfg.Routes), zap.Stringers("policy_routes", policy))
	return nil
}

// covering returns the device prefix that contains p.
func covering(p netip.Prefix, own []netip.Prefix) netip.Prefix {
	for _, o := range own {
		if o.Masked().Contains(p.Addr()) && o.Bits() <= p.Bits() {
			return o.Masked()
		}
	}
	return p
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
