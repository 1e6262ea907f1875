package daemon

// Reload: the daemon re-reads its configuration file (SIGHUP, `goipsec
// reload`) and applies the difference without touching what did not
// change.
//
// What a reload can change:
//   - static (manual) children: unchanged ones keep their SAs (and SPIs,
//     counters and replay state); removed ones lose their SAs and policy;
//     added ones are installed; changed ones are replaced (removed, then
//     installed under the same child ID).
//   - secrets read by no IKE connection, and the daemon section (daemon.user
//     and daemon.group only take effect at start; the running values stay).
//
// What needs a restart, and is refused with an error naming it:
//   - the tun section (device, addresses, MTU, forwards) and the control
//     section (control socket, metrics address);
//   - the listening sockets: the first connection's local_addrs and
//     local_port (the NAT-T socket, and plain IKE on port 500);
//   - in kernel mode, a change of the protected remote networks (the
//     routes into the TUN device are set up at start);
//   - IKE connections and their secrets: the IKE Manager cannot yet add,
//     remove or replace connections while it runs. (A secret read from a
//     file or environment variable is read at start only.)

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/control"
	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/sad"
)

// ErrRestartNeeded reports a configuration change that a reload cannot
// apply: the daemon must be restarted for it.
var ErrRestartNeeded = errors.New("needs a restart")

// SetConfigPath sets the configuration file Reload re-reads: the one the
// daemon was started from.
func (d *Daemon) SetConfigPath(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfgPath = path
}

// ReloadFile re-reads and validates the configuration file and applies it
// (see Apply). A file that does not load is refused with the loader's
// error and the running configuration stays.
func (d *Daemon) ReloadFile(ctx context.Context) error {
	d.mu.Lock()
	path := d.cfgPath
	d.mu.Unlock()
	if path == "" {
		return fmt.Errorf("%w: the daemon was not started from a configuration file", control.ErrConflict)
	}
	cfg, err := config.Load(path)
	if err != nil {
		d.log.Error("reload refused; the running configuration stays", zap.Error(err))
		return err
	}
	if err := d.Apply(cfg); err != nil {
		d.log.Error("reload refused; the running configuration stays", zap.String("file", path), zap.Error(err))
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Apply replaces the running configuration with cfg, changing only what
// differs (see the top of reload.go). It refuses, changing nothing, a
// configuration with changes that need a restart or that fails to build.
func (d *Daemon) Apply(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.cfg
	next := *cfg
	next.Daemon = old.Daemon // applied at start only (and --user overrides it)
	if err := d.restartOnly(old, &next); err != nil {
		return err
	}
	statics, newNames, err := staticChildren(&next)
	if err != nil {
		return err
	}

	cur := map[childName]*dataplane.StaticChild{}
	used := map[sad.ChildID]bool{}
	for _, sc := range d.statics {
		cur[d.names[sc.ID]] = sc
		used[sc.ID] = true
	}
	var keep, remove, install []*dataplane.StaticChild
	names := map[sad.ChildID]childName{}
	seen := map[childName]bool{}
	added, changed := 0, 0
	for _, sc := range statics {
		n := newNames[sc.ID]
		seen[n] = true
		old, ok := cur[n]
		switch {
		case !ok:
			sc.ID = d.freeChildID(used)
			used[sc.ID] = true
			install = append(install, sc)
			added++
		case sameStatic(old, sc):
			keep = append(keep, old)
			sc = old
		default:
			sc.ID = old.ID
			remove = append(remove, old)
			install = append(install, sc)
			changed++
		}
		names[sc.ID] = n
	}
	for n, sc := range cur {
		if !seen[n] {
			remove = append(remove, sc)
		}
	}
	if err := d.checkSPIs(remove, install, names); err != nil {
		return err
	}

	for _, sc := range remove {
		d.removeStatic(sc.ID)
	}
	var done []*dataplane.StaticChild
	for _, sc := range install {
		if err := d.Engine.InstallStatic(sc); err != nil {
			// Put back what was there.
			for _, sc := range append(done, sc) {
				d.removeStatic(sc.ID)
			}
			for _, sc := range remove {
				if e := d.Engine.InstallStatic(sc); e != nil {
					d.log.Error("restoring a static child failed", zap.Uint32("child", uint32(sc.ID)), zap.Error(e))
				}
			}
			return fmt.Errorf("installing %s: %w", names[sc.ID], err)
		}
		done = append(done, sc)
	}

	for _, sc := range remove {
		if _, ok := names[sc.ID]; !ok {
			d.log.Info("static child removed", zap.Stringer("name", d.names[sc.ID]), zap.Uint32("child", uint32(sc.ID)))
		}
	}
	for _, sc := range install {
		d.log.Info("static child installed", zap.Stringer("name", names[sc.ID]), zap.Uint32("child", uint32(sc.ID)),
			zap.String("spi_in", fmt.Sprintf("%#x", sc.In.SPI)), zap.String("spi_out", fmt.Sprintf("%#x", sc.Out.SPI)))
	}
	list := append(keep, install...)
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	d.statics, d.names, d.cfg = list, names, &next
	for _, w := range next.Warnings {
		d.log.Warn(w)
	}
	d.log.Info("configuration reloaded", zap.Int("unchanged", len(keep)), zap.Int("added", added),
		zap.Int("changed", changed), zap.Int("removed", len(remove)-changed))
	return nil
}

// String names a child as conn.child.
func (n childName) String() string { return n.conn + "." + n.child }

// sameStatic reports whether two static children are configured alike
// (their IDs aside).
func sameStatic(a, b *dataplane.StaticChild) bool {
	x, y := *a, *b
	x.ID, y.ID = 0, 0
	return reflect.DeepEqual(x, y)
}

// freeChildID returns an ID for an added static child. Without IKE it is
// the next after the highest in use; with IKE, whose Manager numbers its
// children upwards from after the static ones of the start, it is the
// highest free one from the top of the range.
func (d *Daemon) freeChildID(used map[sad.ChildID]bool) sad.ChildID {
	if d.ike == nil {
		var top sad.ChildID
		for id := range used {
			top = max(top, id)
		}
		if top < ^sad.ChildID(0) {
			return top + 1
		}
	}
	for id := ^sad.ChildID(0); id > 0; id-- {
		if !used[id] {
			return id
		}
	}
	panic("daemon: out of child IDs")
}

// listenAddr is the NAT-T socket's address for cfg.
func listenAddr(cfg *config.Config) netip.AddrPort { return (&Daemon{cfg: cfg}).listenAddr() }

// plainIKE reports whether cfg has a plain IKE socket on port 500.
func plainIKE(cfg *config.Config) bool {
	return hasIKE(cfg) && (&Daemon{cfg: cfg, ike: &ikeState{}}).usesPlainIKE()
}

// checkSPIs refuses inbound SPIs that would collide with SAs that stay.
func (d *Daemon) checkSPIs(remove, install []*dataplane.StaticChild, names map[sad.ChildID]childName) error {
	going := map[uint32]bool{}
	for _, sc := range remove {
		going[sc.In.SPI] = true
	}
	for _, sc := range install {
		if !going[sc.In.SPI] && d.SAD.Inbound(sad.ESP, sc.In.SPI) != nil {
			n := names[sc.ID]
			return fmt.Errorf("connections.%s.children.%s.manual.in.spi: %#x is in use by another SA", n.conn, n.child, sc.In.SPI)
		}
	}
	return nil
}

// removeStatic removes a static child's SAs, policy and engine state.
func (d *Daemon) removeStatic(id sad.ChildID) {
	d.SAD.DeleteChild(id)
	if err := d.SPD.Remove(uint64(id)); err != nil {
		d.log.Warn("removing a static child's policy", zap.Uint32("child", uint32(id)), zap.Error(err))
	}
	d.Engine.RemoveChild(id)
}

// restartOnly refuses the changes from old to next that a reload cannot
// apply.
func (d *Daemon) restartOnly(old, next *config.Config) error {
	refuse := func(what string) error {
		return fmt.Errorf("%w: %s changed; restart the daemon to apply it", ErrRestartNeeded, what)
	}
	if !reflect.DeepEqual(old.Tun, next.Tun) {
		return refuse("the tun section")
	}
	if !reflect.DeepEqual(old.Control, next.Control) {
		return refuse("the control section")
	}
	if listenAddr(old) != listenAddr(next) || hasIKE(old) != hasIKE(next) || plainIKE(old) != plainIKE(next) {
		return refuse("the listening address or port (the first connection's local_addrs or local_port)")
	}
	if !reflect.DeepEqual(ikeView(old), ikeView(next)) {
		return refuse("an IKE connection or secret (the IKE manager cannot change its connections while it runs yet)")
	}
	if old.Tun.Mode == "kernel" {
		statics, _, err := staticChildren(next)
		if err != nil {
			return err
		}
		o := &Daemon{cfg: old, statics: d.statics, ike: d.ike}
		n := &Daemon{cfg: next, statics: statics, ike: d.ike}
		if !sameRoutes(o.protectedRoutes(), n.protectedRoutes()) {
			return refuse("the remote networks (routes into the TUN device are set at start)")
		}
	}
	return nil
}

// ikeView is the part of a configuration IKE depends on: the connections
// with their IKE children (without the static ones) and the secrets.
func ikeView(cfg *config.Config) any {
	conns := map[string]config.Connection{}
	for name, c := range cfg.Connections {
		cc := *c
		cc.Children = map[string]*config.Child{}
		for n, ch := range c.Children {
			if ch.Manual == nil {
				cc.Children[n] = ch
			}
		}
		if len(cc.Children) > 0 {
			conns[name] = cc
		}
	}
	var secrets map[string]*config.Secret
	if len(conns) > 0 {
		secrets = cfg.Secrets
	}
	return struct {
		Conns   map[string]config.Connection
		Secrets map[string]*config.Secret
	}{conns, secrets}
}

func sameRoutes(a, b []protectedRoute) bool {
	key := func(r protectedRoute) string { return r.prefix.String() + " " + r.peer.String() }
	set := func(rs []protectedRoute) map[string]bool {
		m := map[string]bool{}
		for _, r := range rs {
			m[key(r)] = true
		}
		return m
	}
	return reflect.DeepEqual(set(a), set(b))
}
