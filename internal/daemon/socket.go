package daemon

import (
	"fmt"
	"net/netip"

	"github.com/goipsec/goipsec/internal/udp"
)

// needsBypass reports whether some child protects traffic to a peer's own
// underlay address, so that the daemon's own UDP packets must bypass the
// tunnel route by firewall mark (as wg-quick does).
func (d *Daemon) needsBypass() bool {
	if d.cfg.Tun.Mode != "kernel" {
		return false
	}
	for _, r := range d.protectedRoutes() {
		if r.peer.IsValid() && r.prefix.Contains(r.peer) {
			return true
		}
	}
	return false
}

func (d *Daemon) openSocket() error {
	opts := &udp.Options{}
	if d.needsBypass() {
		opts.Mark = FWMark
	}
	la := d.listenAddr()
	conn, err := udp.ListenAddrPort(la, opts)
	if err != nil {
		return fmt.Errorf("listen on %v: %w", la, err)
	}
	d.conn = conn
	return nil
}

// LocalAddr returns the socket's address once Run has opened it.
func (d *Daemon) LocalAddr() netip.AddrPort {
	if d.conn == nil {
		return netip.AddrPort{}
	}
	return d.conn.LocalAddr()
}
