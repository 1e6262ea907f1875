package ike

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// What happens to the children of an IKE SA whose peer is dead (swanctl
// dpd_action), and to a child the peer deletes (swanctl close_action).
const (
	DPDClear   = "clear"   // remove the SAs, nothing more
	DPDTrap    = "trap"    // install trap policies: traffic brings the children back
	DPDRestart = "restart" // initiate again at once, and retry until the peer answers
	CloseNone  = "none"    // nothing (the default)
	CloseTrap  = "trap"    // install trap policies
	CloseStart = "start"   // initiate the child again
)

// Backoff between the attempts of a restart (dpd_action restart): each
// attempt is a whole retransmission sequence, then the next one starts
// after a delay that doubles from restartMin up to restartMax.
const (
	restartMin = time.Second
	restartMax = 30 * time.Second
)

// restartState is a connection being (re-)established with retries: after
// its peer died, or at start with keyingtries other than 1.
type restartState struct {
	children []*Child
	attempt  int
	limit    int    // attempts before giving up; 0: until it works
	why      string // for the logs
	timer    Timer  // the next attempt, or the next look at the children
}

// lifecycle is the Manager's state for dead peers and restarts.
type lifecycle struct {
	restarts map[*Connection]*restartState
}

// childConfigs returns the configured children the SA carries or
// negotiates.
func (sa *ikeSA) childConfigs() []*Child {
	var out []*Child
	add := func(ch *Child) {
		if ch != nil && !containsChild(out, ch) {
			out = append(out, ch)
		}
	}
	for _, c := range sa.children {
		add(c.cfg)
	}
	for _, ch := range sa.pendingChildren {
		add(ch)
	}
	if sa.authChild != nil {
		add(sa.authChild.cfg)
	}
	for ch, n := range sa.creating {
		if n > 0 {
			add(ch)
		}
	}
	return out
}

// peerDead deletes the IKE SA of a peer that stopped answering and applies
// the connection's dpd_action to its children.
func (sa *ikeSA) peerDead(err error) {
	if sa.state == stateDead {
		return
	}
	chs := sa.childConfigs()
	sa.warn("dead peer: it stopped answering; deleting its SAs", zap.Error(err))
	sa.m.obs.PeerDead()
	sa.destroy(err)
	m := sa.m
	var restart []*Child
	for _, ch := range chs {
		switch ch.DPDAction {
		case DPDTrap:
			m.trapIfDown(ch)
		case DPDRestart:
			restart = append(restart, ch)
		}
	}
	if len(restart) > 0 {
		m.log.Info("re-establishing the children of the dead peer (dpd_action restart)", zap.String("connection", sa.conn.Name))
		m.restart(sa.conn, restart, 0, "dpd_action restart")
	}
}

// childUp reports whether ch has an installed Child SA.
func (m *Manager) childUp(ch *Child) bool {
	for _, v := range m.children {
		if c, ok := v.(*childSA); ok && c.cfg == ch && c.state == childInstalled {
			return true
		}
	}
	return false
}

// trapIfDown installs ch's trap policies unless it is up or trapped.
func (m *Manager) trapIfDown(ch *Child) {
	if _, ok := m.traps[ch]; ok || m.childUp(ch) {
		return
	}
	m.installTrap(ch)
}

// closeAction applies the children's close_action after the peer deleted
// them (or their IKE SA).
func (m *Manager) closeAction(chs []*Child) {
	for _, ch := range chs {
		switch ch.CloseAction {
		case CloseTrap:
			m.trapIfDown(ch)
		case CloseStart:
			if m.childUp(ch) {
				continue
			}
			m.log.Info("the peer closed the child: initiating it again (close_action start)", zap.String("child", ch.FullName()))
			if _, err := m.initiateLocked(ch, nil); err != nil {
				m.log.Error("initiating failed", zap.String("child", ch.FullName()), zap.Error(err))
			}
		}
	}
}

// restart initiates children of a connection, retrying with backoff until
// they are up or limit attempts failed (0: no limit).
func (m *Manager) restart(conn *Connection, chs []*Child, limit int, why string) {
	if m.life.restarts == nil {
		m.life.restarts = map[*Connection]*restartState{}
	}
	r := m.life.restarts[conn]
	if r == nil {
		r = &restartState{limit: limit, why: why}
		m.life.restarts[conn] = r
	} else if limit == 0 {
		r.limit, r.why = 0, why
	}
	for _, ch := range chs {
		if !containsChild(r.children, ch) {
			r.children = append(r.children, ch)
		}
	}
	if r.timer != nil {
		return // an attempt is scheduled; it takes the new children too
	}
	m.restartAttempt(conn, r)
}

// startChild initiates a child with start_action start: once, or with
// retries as the connection's keyingtries says.
func (m *Manager) startChild(ch *Child) {
	tries := ch.conn.KeyingTries
	if tries == 0 || tries == 1 {
		if _, err := m.initiateLocked(ch, nil); err != nil {
			m.log.Error("initiating failed", zap.String("child", ch.FullName()), zap.Error(err))
		}
		return
	}
	m.restart(ch.conn, []*Child{ch}, max(tries, 0), "start_action start, keyingtries")
}

// restartAttempt initiates the restart's children that are neither up nor
// being negotiated, then watches them: when one fails, the next attempt
// follows after the backoff delay.
func (m *Manager) restartAttempt(conn *Connection, r *restartState) {
	if m.closed || m.life.restarts[conn] != r {
		return
	}
	r.timer = nil
	for _, ch := range r.children {
		if m.childUp(ch) || m.negotiatingAnywhere(ch) {
			continue
		}
		if _, err := m.initiateLocked(ch, nil); err != nil {
			m.log.Error("re-establishing failed", zap.String("child", ch.FullName()), zap.Error(err))
		}
	}
	r.timer = m.after(restartPoll, func() { m.restartCheck(conn, r) })
}

// restartPoll is how often a restart looks at its children.
const restartPoll = time.Second

// restartCheck ends the restart once its children are up, waits while
// they are negotiated, and schedules the next attempt when they failed.
func (m *Manager) restartCheck(conn *Connection, r *restartState) {
	if m.closed || m.life.restarts[conn] != r {
		return
	}
	r.timer = nil
	up, pending := true, false
	for _, ch := range r.children {
		if !m.childUp(ch) {
			up = false
			pending = pending || m.negotiatingAnywhere(ch)
		}
	}
	switch {
	case up:
		m.log.Info("connection re-established", zap.String("connection", conn.Name), zap.Int("attempts", r.attempt+1), zap.String("by", r.why))
		delete(m.life.restarts, conn)
	case pending:
		r.timer = m.after(restartPoll, func() { m.restartCheck(conn, r) })
	case r.limit > 0 && r.attempt+1 >= r.limit:
		m.log.Warn("initiating failed: giving up (keyingtries)", zap.String("connection", conn.Name), zap.Int("attempts", r.attempt+1))
		delete(m.life.restarts, conn)
	default:
		d := min(restartMin<<min(r.attempt, 10), restartMax)
		d += time.Duration(rand.Int64N(int64(d)/4 + 1))
		r.attempt++
		m.log.Info("initiating failed: trying again", zap.String("connection", conn.Name), zap.Int("attempt", r.attempt),
			zap.Duration("in", d), zap.String("by", r.why))
		r.timer = m.after(d, func() { m.restartAttempt(conn, r) })
	}
}

// negotiatingAnywhere reports whether some IKE SA negotiates ch.
func (m *Manager) negotiatingAnywhere(ch *Child) bool {
	for _, sa := range m.sas {
		if sa.state != stateDead && sa.negotiating(ch) {
			return true
		}
	}
	return false
}

// cancelRestart stops re-establishing conn (it was terminated).
func (m *Manager) cancelRestart(conn *Connection) {
	if r := m.life.restarts[conn]; r != nil {
		if r.timer != nil {
			r.timer.Stop()
		}
		delete(m.life.restarts, conn)
	}
}

// initialContact deletes the IKE SAs the peer lost: those with the same
// identities established before sa was begun (INITIAL_CONTACT, RFC 7296
// section 2.4). They get a DELETE, in case the peer still has them after
// all, without waiting for its answer.
func (m *Manager) initialContact(sa *ikeSA) {
	for _, o := range m.sortedSAs() {
		if o == sa || o.state != stateEstablished || o.conn != sa.conn || o.rekeyedTo != nil ||
			!o.remoteID.Equal(&sa.remoteID) || !o.localID.Equal(&sa.localID) || !o.estab.Before(sa.created) {
			continue
		}
		o.info("INITIAL_CONTACT from the peer: deleting its old IKE SA", zap.String("new", sa.name()))
		o.sendDeleteIKE()
		o.destroy(fmt.Errorf("replaced after INITIAL_CONTACT by %s", sa.name()))
	}
}

// checkDuplicate resolves two IKE SAs of the same connection and peer that
// both ends set up at the same time (each initiating one): like a rekey
// collision (RFC 7296 section 2.8.1), the one made with the lowest nonce
// is redundant, and its initiator deletes it; its children go with it. It
// waits for the grace period first: the peer may be reauthenticating (a
// new IKE SA while the old one still carries traffic), and then deletes
// the old IKE SA itself once the new one has taken its Child SAs over.
func (sa *ikeSA) checkDuplicate() {
	if o := sa.duplicate(); o != nil {
		sa.m.log.Debug("two IKE SAs with the peer: looking again after the grace period", sa.logFields(zap.String("other", o.name()))...)
		sa.m.after(sa.m.opts.RekeyGrace, sa.resolveDuplicate)
	}
}

// duplicate returns another IKE SA of the same connection and peer, up and
// not replaced, if sa is such an SA too.
func (sa *ikeSA) duplicate() *ikeSA {
	if sa.state != stateEstablished || sa.rekeyedTo != nil || sa.reauthOf != nil || sa.reauthTo != nil {
		return nil
	}
	for _, o := range sa.m.sortedSAs() {
		if o == sa || o.state != stateEstablished || o.conn != sa.conn || o.rekeyedTo != nil || o.peerRekeyed != nil || o.reauthTo != nil ||
			o.reauthOf != nil || !o.remoteID.Equal(&sa.remoteID) || o.remote.Addr() != sa.remote.Addr() {
			continue
		}
		return o
	}
	return nil
}

// resolveDuplicate deletes the redundant one of sa and its duplicate, if
// we initiated it.
func (sa *ikeSA) resolveDuplicate() {
	o := sa.duplicate()
	if o == nil {
		return
	}
	lowest := func(s *ikeSA) []byte {
		if bytes.Compare(s.ni, s.nr) < 0 {
			return s.ni
		}
		return s.nr
	}
	redundant := sa
	if bytes.Compare(lowest(o), lowest(sa)) < 0 {
		redundant = o
	}
	if redundant.initiator {
		redundant.info("duplicate IKE SA with the peer (both ends initiated): deleting this one, made with the lowest nonce")
		redundant.deleteIKE()
		return
	}
	redundant.info("duplicate IKE SA with the peer (both ends initiated): the peer deletes this one, made with the lowest nonce")
}
