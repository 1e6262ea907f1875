package ike

import (
	"crypto/subtle"
	"errors"
	"reflect"
	"sort"

	"go.uber.org/zap"
)

// Reconfiguration of a running Manager (the daemon's reload): connections
// are matched by name; unchanged ones keep their IKE and Child SAs as they
// are, removed ones are deleted with the peer, changed ones are deleted and
// started again from the new configuration, added ones are started.

// ReconfigureResult names the connections Reconfigure kept, added, changed
// and removed, each list sorted.
type ReconfigureResult struct {
	Unchanged, Added, Changed, Removed []string
}

// errReconfigured ends the SAs of a connection a reload removed or changed.
var errReconfigured = errors.New("connection removed or changed by a reload")

// Reconfigure replaces the Manager's configuration with cfg. A connection
// counts as changed when any of its settings, its children's, or the
// secrets that may apply to its identities differ. Those changed or gone
// lose their IKE SAs (a DELETE goes to the peer), Child SAs and trap
// policies; those changed or new are then started per their children's
// start_action. Unchanged connections are not touched: their SAs, SPIs and
// timers stay. An invalid cfg is refused and nothing changes.
func (m *Manager) Reconfigure(cfg *Config) (ReconfigureResult, error) {
	var res ReconfigureResult
	if err := cfg.prepare(); err != nil {
		return res, err
	}
	m.lock()
	defer m.unlock()
	if m.closed {
		return res, errClosed
	}
	old := map[string]*Connection{}
	for _, c := range m.cfg.Connections {
		old[c.Name] = c
	}
	conns := make([]*Connection, len(cfg.Connections))
	var start []*Connection
	seen := map[string]bool{}
	for i, c := range cfg.Connections {
		seen[c.Name] = true
		conns[i] = c
		o := old[c.Name]
		switch {
		case o == nil:
			res.Added = append(res.Added, c.Name)
			start = append(start, c)
		case sameConnection(o, c) && sameSecrets(m.cfg, cfg, o, c):
			// Keep the running object: the SAs point at it.
			conns[i] = o
			res.Unchanged = append(res.Unchanged, c.Name)
		default:
			res.Changed = append(res.Changed, c.Name)
			m.dropConnection(o)
			start = append(start, c)
		}
	}
	for name, o := range old {
		if !seen[name] {
			res.Removed = append(res.Removed, name)
			m.dropConnection(o)
		}
	}
	cfg.Connections = conns
	m.cfg = cfg
	for _, c := range start {
		m.startConnection(c)
	}
	for _, l := range [][]string{res.Unchanged, res.Added, res.Changed, res.Removed} {
		sort.Strings(l)
	}
	m.log.Info("IKE configuration replaced", zap.Strings("unchanged", res.Unchanged), zap.Strings("added", res.Added),
		zap.Strings("changed", res.Changed), zap.Strings("removed", res.Removed))
	return res, nil
}

// dropConnection deletes everything of connection c: its IKE SAs (telling
// the peer), their Child SAs and its children's trap policies. Responder
// SAs that have not picked a connection yet forget c as a candidate.
func (m *Manager) dropConnection(c *Connection) {
	m.cancelRestart(c)
	for _, sa := range m.sortedSAs() {
		switch {
		case sa.conn == c:
			sa.pendingChildren = nil // no trap policies come back for them
			switch sa.state {
			case stateEstablished:
				sa.info("deleting IKE SA: its connection was removed or changed by a reload")
				sa.deleteIKE()
			case stateDeleting, stateDead:
			default:
				sa.destroy(errReconfigured)
			}
		case sa.conn == nil:
			cands := sa.cands[:0]
			for _, o := range sa.cands {
				if o != c {
					cands = append(cands, o)
				}
			}
			sa.cands = cands
			if len(cands) == 0 {
				sa.destroy(errReconfigured)
			}
		}
	}
	// Removing the Child SAs above reinstalled the trap policies of
	// trapped children: remove them now.
	for ch, id := range m.traps {
		if ch.conn == c {
			m.inst.Remove(id)
			delete(m.children, id)
			delete(m.traps, ch)
		}
	}
}

// startConnection acts on the start_action of c's children, as Start does.
func (m *Manager) startConnection(c *Connection) {
	for _, ch := range c.Children {
		switch ch.StartAction {
		case StartTrap:
			m.installTrap(ch)
		case StartStart:
			m.startChild(ch)
		}
	}
}

// sameConnection reports whether two prepared connections are configured
// alike, children included.
func sameConnection(a, b *Connection) bool {
	x, y := *a, *b
	x.Children, y.Children = nil, nil
	if !reflect.DeepEqual(x, y) || len(a.Children) != len(b.Children) {
		return false
	}
	for i := range a.Children {
		p, q := *a.Children[i], *b.Children[i]
		p.conn, q.conn = nil, nil
		if !reflect.DeepEqual(p, q) {
			return false
		}
	}
	return true
}

// sameSecrets reports whether the secrets that may authenticate connection
// a under configuration ca are those that may authenticate b under cb, in
// the same order.
func sameSecrets(ca, cb *Config, a, b *Connection) bool {
	sa, sb := ca.secretsFor(a), cb.secretsFor(b)
	if len(sa) != len(sb) {
		return false
	}
	for i := range sa {
		if subtle.ConstantTimeCompare(sa[i].Key, sb[i].Key) != 1 || !reflect.DeepEqual(sa[i].ids, sb[i].ids) {
			return false
		}
	}
	return true
}

// secretsFor lists the secrets lookupPSK may pick for connection c: those
// naming none, or any, of its identities (all of them when c accepts any
// peer identity).
func (cfg *Config) secretsFor(c *Connection) []*Secret {
	var out []*Secret
	for _, s := range cfg.Secrets {
		use := len(s.ids) == 0 || c.remoteID.any
		for _, id := range s.ids {
			use = use || id.any || id.matches(&c.localID.id) || id.matches(&c.remoteID.id)
		}
		if use {
			out = append(out, s)
		}
	}
	return out
}
