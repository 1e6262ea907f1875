package daemon

import (
	"context"
	"fmt"
	"net/netip"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/tun"
)

func (d *Daemon) openNetstack(ctx context.Context) error {
	t := &d.cfg.Tun
	addrs := make([]netip.Addr, len(t.Prefixes))
	for i, p := range t.Prefixes {
		addrs[i] = p.Addr()
	}
	if len(addrs) == 0 {
		return fmt.Errorf("tun.addresses: netstack mode needs at least one address")
	}
	dev, net, err := tun.CreateNetstack(addrs, t.MTU)
	if err != nil {
		return fmt.Errorf("netstack: %w", err)
	}
	d.dev = dev
	d.Net = net
	d.log.Named("tun").Info("userspace network stack up", zap.Stringers("addresses", addrs), zap.Int("mtu", t.MTU))
	return d.startNetstackServices(ctx)
}

// startNetstackServices starts the SOCKS5 proxy, port forwards and exposed
// services the configuration asks for; Close stops them.
func (d *Daemon) startNetstackServices(ctx context.Context) error {
	t := &d.cfg.Tun
	opts := &tun.ServiceOptions{}
	add := func(s *tun.Service, err error, what string) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		d.cleanup = append(d.cleanup, func() { s.Close() })
		d.log.Named("tun").Info("netstack service", zap.String("what", what), zap.Stringer("listen", s.Addr()))
		return nil
	}
	if t.SOCKS5 != "" {
		s, err := tun.ListenSOCKS5(t.SOCKS5, d.Net, opts)
		if err := add(s, err, "socks5 "+t.SOCKS5); err != nil {
			return err
		}
	}
	for _, f := range t.Forwards {
		s, err := tun.ListenForward(f.Proto, f.Listen, f.To, d.Net, opts)
		if err := add(s, err, fmt.Sprintf("forward %s %s -> %s", f.Proto, f.Listen, f.To)); err != nil {
			return err
		}
	}
	for _, e := range t.Expose {
		s, err := tun.ListenExpose(d.Net, e.Proto, e.Port, e.To, opts)
		if err := add(s, err, fmt.Sprintf("expose %s :%d -> %s", e.Proto, e.Port, e.To)); err != nil {
			return err
		}
	}
	return nil
}
