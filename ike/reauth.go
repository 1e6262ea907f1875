package ike

import (
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// Reauthentication (swanctl reauth_time): unlike a rekey, which derives
// the new IKE SA's keys from the old one's, it sets up a new IKE SA from
// scratch, with a new key exchange and new authentication, as strongSwan
// does on reauth_time. It is make-before-break: the new IKE SA negotiates
// the connection's children again (IKE_AUTH, then CREATE_CHILD_SA), each
// new Child SA taking over the old one's child ID like a rekey (our
// outbound SA switches at once, the old inbound SA stays for the grace
// period), and the old IKE SA is deleted once all are done. The peer
// sends on its old Child SAs until that DELETE arrives.

// reauthRetry is how long a failed reauthentication waits before the next
// try (the old IKE SA stays meanwhile, up to its hard lifetime).
const reauthRetry = 10 * time.Second

// reauth starts reauthenticating the IKE SA.
func (sa *ikeSA) reauth() {
	if sa.state != stateEstablished || sa.rekeyedTo != nil || sa.reauthTo != nil || sa.conn == nil {
		return
	}
	m := sa.m
	if sa.ikeRekey != nil || sa.childrenBusy() {
		sa.reauthTimer = m.after(2*time.Second+time.Duration(rand.Int64N(int64(3*time.Second))), sa.reauth)
		return
	}
	var chs []*Child
	for _, c := range sa.children {
		if c.state == childInstalled && sa.current(c) && !containsChild(chs, c.cfg) {
			chs = append(chs, c.cfg)
		}
	}
	if len(chs) == 0 {
		sa.info("reauth_time: no Child SA to move; rekeying the IKE SA instead")
		sa.rekeyIKE("reauth_time")
		return
	}
	ns := m.newSA(true)
	ns.conn, ns.remote, ns.natt = sa.conn, sa.remote, sa.natt
	ns.offered = sa.conn.Proposals
	ns.ni = randomBytes(nonceLen)
	ns.keMethod = sa.suite.KE
	ns.pendingChildren = chs
	ns.state = stateInitSent
	ns.reauthOf, sa.reauthTo = sa, ns
	sa.info("reauthenticating IKE SA", zap.String("new", ns.name()))
	if err := ns.sendInit(true); err != nil {
		ns.destroy(err)
		sa.reauthTo = nil
		sa.reauthTimer = m.after(reauthRetry, sa.reauth)
		return
	}
	sa.reauthTimer = m.after(time.Second, sa.reauthCheck)
}

// reauthCheck deletes the old IKE SA once the new one has taken over its
// children, or schedules another try if the new one failed.
func (sa *ikeSA) reauthCheck() {
	ns := sa.reauthTo
	if sa.state != stateEstablished || ns == nil {
		return
	}
	busy := len(ns.pendingChildren) > 0 || ns.authChild != nil
	for _, n := range ns.creating {
		busy = busy || n > 0
	}
	switch {
	case ns.state == stateDead:
		sa.warn("reauthentication failed: keeping the IKE SA, trying again later", zap.Duration("in", reauthRetry))
		sa.reauthTo = nil
		sa.reauthTimer = sa.m.after(reauthRetry, sa.reauth)
	case ns.state == stateEstablished && !busy:
		sa.info("IKE SA reauthenticated: deleting the old one", zap.String("new", ns.name()))
		sa.rekeyedTo = ns
		ns.reauthOf = nil
		sa.deleteIKE()
		// The peer sends on the old Child SAs until it has the DELETE:
		// their inbound SAs stay for the grace period from now.
		for _, c := range append([]*childSA(nil), ns.retired...) {
			if c.takenOver {
				c.takenOver = false
				c.graceTimer.Stop()
				c.graceTimer = nil
				ns.retire(c, true)
			}
		}
	default:
		sa.reauthTimer = sa.m.after(time.Second, sa.reauthCheck)
	}
}

// reauthChild returns the Child SA of cfg that a reauthentication replaces.
func (sa *ikeSA) reauthChild(cfg *Child) *childSA {
	for _, c := range sa.children {
		if c.cfg == cfg && c.state == childInstalled && sa.current(c) && c.successor == nil && !c.rekeying && c.pending == nil {
			return c
		}
	}
	return nil
}

// tookOver moves old, replaced by c of the reauthenticating SA, over to
// it: it accepts packets until the grace period after the old IKE SA's
// DELETE, then goes.
func (sa *ikeSA) tookOver(old, c *childSA) {
	old.ike.unlist(old)
	old.ike = sa
	old.successor = c
	sa.retire(old, false)
	// Should the old IKE SA go another way (the peer deletes it), the
	// old inbound SA still goes in the end.
	old.takenOver = true
	old.graceTimer = sa.m.after(takeOverGrace, func() {
		old.takenOver = false
		old.ike.removeChild(old)
	})
}

// takeOverGrace bounds how long a Child SA a reauthentication replaced
// keeps accepting packets if the old IKE SA's DELETE does not start the
// grace period.
const takeOverGrace = 30 * time.Second
