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
//   - IKE connections (ike.Manager.Reconfigure): unchanged ones keep their
//     IKE and Child SAs; removed ones are deleted with the peer (DELETE)
//     and lose their SAs and trap policies; changed ones (any setting of
//     the connection or its children, or a secret that may apply to its
//     identities) are deleted, then started again; added ones are started
//     per start_action. Secrets are read again, from files and environment
//     variables too.
//   - the log levels (log.level, log.levels).
//   - the daemon section is read, but daemon.user and daemon.group only
//     take effect at start (the running values stay).
//
// What needs a restart, and is refused with an error naming it:
//   - the tun section (device, addresses, MTU, forwards) and the control
//     section (control socket, metrics address), the log format;
//   - the listening sockets: the first connection's local_addrs and
//     local_port (the NAT-T socket, and plain IKE on port 500), and going
//     from no IKE connection to some or back;
//   - in kernel mode, a protected remote network that had no route at start
//     (the routes into the TUN device are set up at start, before
//     privileges are dropped). A network that is no longer protected keeps
//     its route into the device, where its packets find no policy and are
//     dropped (fail closed), and may be protected again by a later reload.

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
	var nextIKE *ikeState
	if d.ike != nil {
		var err error
		if nextIKE, err = newIKE(&next); err != nil { // reads the secrets again
			return err
		}
	}
	if err := d.restartOnly(old, &next, nextIKE); err != nil {
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
			d.log.Named("spd").Info("static child removed", zap.Stringer("name", d.names[sc.ID]), zap.Uint32("child", uint32(sc.ID)))
		}
	}
	for _, sc := range install {
		d.log.Named("spd").Info("static child installed", zap.Stringer("name", names[sc.ID]), zap.Uint32("child", uint32(sc.ID)),
			zap.String("spi_in", fmt.Sprintf("%#x", sc.In.SPI)), zap.String("spi_out", fmt.Sprintf("%#x", sc.Out.SPI)))
	}
	list := append(keep, install...)
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	d.statics, d.names, d.cfg = list, names, &next
	if nextIKE != nil {
		if m := d.ike.m; m != nil {
			res, err := m.Reconfigure(nextIKE.cfg)
			if err != nil {
				// newIKE validated it: this is a closed Manager.
				return fmt.Errorf("IKE connections: %w", err)
			}
			d.log.Info("IKE connections reloaded", zap.Strings("unchanged", res.Unchanged), zap.Strings("added", res.Added),
				zap.Strings("changed", res.Changed), zap.Strings("removed", res.Removed))
		}
		d.ike.cfg = nextIKE.cfg
	}
	d.applyLogLevels(&next)
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
		d.log.Named("spd").Warn("removing a static child's policy", zap.Uint32("child", uint32(id)), zap.Error(err))
	}
	d.Engine.RemoveChild(id)
}

// restartOnly refuses the changes from old to next (whose IKE part is
// nextIKE) that a reload cannot apply.
func (d *Daemon) restartOnly(old, next *config.Config, nextIKE *ikeState) error {
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
	if old.Log.Format != next.Log.Format {
		return refuse("log.format")
	}
	if old.Tun.Mode == "kernel" {
		statics, _, err := staticChildren(next)
		if err != nil {
			return err
		}
		n := &Daemon{cfg: next, statics: statics, ike: nextIKE}
		if r, ok := newRoute(d.routes, n.protectedRoutes()); ok {
			return refuse(fmt.Sprintf("the remote networks (%v is new; routes into the TUN device are set at start)", r.prefix))
		}
	}
	return nil
}

// newRoute returns a route of next that old lacks.
func newRoute(old, next []protectedRoute) (protectedRoute, bool) {
	have := map[protectedRoute]bool{}
	for _, r := range old {
		have[r] = true
	}
	for _, r := range next {
		if !have[r] {
			return r, true
		}
	}
	return protectedRoute{}, false
}
