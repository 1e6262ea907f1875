package ike

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/sad"
)

// Rekeying of Child SAs (RFC 7296 sections 1.3.3, 2.8 and 2.8.1).
//
// The initiator of a rekey sends CREATE_CHILD_SA with REKEY_SA naming the
// old SA by its inbound SPI. The responder installs only the new inbound
// SA and keeps sending on the old one; the initiator, on the response,
// installs the new inbound SA and switches its outbound SA to the new one,
// then deletes the old SA. The DELETE makes the responder switch its
// outbound SA. Both keep the old inbound SA for a grace period, for the
// packets still in flight, so nothing is lost or sent in the clear.
//
// When both ends rekey the same SA at once, both exchanges complete; the
// SA made with the lowest of the four nonces is redundant and deleted by
// its initiator, and the initiator of the other deletes the old SA.

// DefaultRekeyGrace is how long the inbound SA a rekey replaced keeps
// accepting packets after the old SA was deleted.
const DefaultRekeyGrace = 5 * time.Second

// stopTimers stops the child's timers and forgets its pending keys.
func (c *childSA) stopTimers() {
	for _, t := range []Timer{c.rekeyTimer, c.graceTimer, c.switchTmr, c.lifeTimer} {
		if t != nil {
			t.Stop()
		}
	}
	c.dropPending()
}

func (c *childSA) dropPending() {
	if c.pending != nil {
		clear(c.pending.Out.EncKey)
		clear(c.pending.Out.IntegKey)
		c.pending = nil
	}
}

// unlist removes c from the SA's lists.
func (sa *ikeSA) unlist(c *childSA) {
	for _, l := range []*[]*childSA{&sa.children, &sa.retired} {
		for i, x := range *l {
			if x == c {
				*l = append((*l)[:i:i], (*l)[i+1:]...)
				break
			}
		}
	}
}

// retiredByOutSPI finds a replaced child by its outbound SPI.
func (sa *ikeSA) retiredByOutSPI(spi uint32) *childSA {
	for _, c := range sa.retired {
		if c.spiOut == spi {
			return c
		}
	}
	return nil
}

// current reports whether c is the SA its child ID stands for.
func (sa *ikeSA) current(c *childSA) bool {
	cur, _ := sa.m.children[c.id].(*childSA)
	return cur == c
}

// rekeyChild starts rekeying c, unless that is under way or c is not the
// child's current SA.
func (sa *ikeSA) rekeyChild(c *childSA, why string) bool {
	if sa.state != stateEstablished || c.state != childInstalled || c.successor != nil || c.rekeying || c.pending != nil || !sa.current(c) {
		return false
	}
	if sa.reauthTo != nil {
		// The reauthentication replaces it; if that fails, rekey.
		c.rekeyTimer = sa.m.after(2*time.Second, func() { c.ike.rekeyChild(c, why) })
		return false
	}
	sa.info("rekeying CHILD_SA", zap.String("child", c.cfg.FullName()), zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)),
		zap.String("spi_out", fmt.Sprintf("%08x", c.spiOut)), zap.String("reason", why))
	return sa.sendRekey(c, 0)
}

// sendRekey sends the CREATE_CHILD_SA request that rekeys c, with key
// exchange method ke if not 0 (after INVALID_KE_PAYLOAD).
func (sa *ikeSA) sendRekey(c *childSA, ke uint16) bool {
	neg, ps, err := sa.newChildNeg(c.cfg, true)
	if err != nil {
		sa.errorf("cannot rekey the CHILD_SA", zap.String("child", c.cfg.FullName()), zap.Error(err))
		return false
	}
	if ke != 0 {
		neg.retried = true
		if neg.ke, err = kex.NewInitiator(kex.ID(ke)); err != nil {
			neg.release(sa.m)
			sa.errorf("cannot rekey the CHILD_SA", zap.String("child", c.cfg.FullName()), zap.Error(err))
			return false
		}
		for i, p := range ps {
			if _, ok := p.(*message.KE); ok {
				ps[i] = &message.KE{Method: ke, Data: neg.ke.PublicValue()}
			}
		}
	}
	neg.rekey = c
	c.rekeying = true
	ps = append([]message.Payload{message.NewChildNotify(message.RekeySA, message.ProtoESP, c.spiIn, nil)}, ps...)
	sa.sendCreateChild(neg, ps)
	return true
}

// rekeyFailed handles a refused rekey of old.
func (sa *ikeSA) rekeyFailed(old *childSA, err error) {
	old.rekeying = false
	var ce *ChildError
	if errors.As(err, &ce) && ce.Notify == message.TemporaryFailure {
		// The peer is rekeying it too (and won) or is busy: the
		// collision's outcome stands, or we try again shortly.
		sa.info("the peer could not rekey the CHILD_SA now (TEMPORARY_FAILURE)", zap.String("child", old.cfg.FullName()))
		if old.successor == nil && old.state == childInstalled {
			old.rekeyTimer = sa.m.after(time.Second+time.Duration(rand.Int64N(int64(2*time.Second))), func() { old.ike.rekeyChild(old, "retry") })
		}
		return
	}
	sa.errorf("rekeying the CHILD_SA failed", zap.String("child", old.cfg.FullName()), zap.Error(err))
	if old.successor == nil && old.state == childInstalled {
		old.rekeyTimer = sa.m.after(10*time.Second, func() { old.ike.rekeyChild(old, "retry") })
	}
}

// lostCollision reports whether our rekey exchange with nonces ni, nr lost
// against the peer's rekey the other SA made: the SA made with the lowest
// of the four nonces goes (RFC 7296 section 2.8.1).
func lostCollision(ni, nr []byte, other *childSA) bool {
	lowest := func(a, b []byte) []byte {
		if bytes.Compare(a, b) < 0 {
			return a
		}
		return b
	}
	return bytes.Compare(lowest(ni, nr), lowest(other.nonces[0], other.nonces[1])) < 0
}

// collision reports whether the peer rekeyed old while our own rekey was
// in flight, and its SA is still there.
func collision(old *childSA) *childSA {
	if s := old.successor; s != nil && s.state == childInstalled && !s.weInit {
		return s
	}
	return nil
}

// rekeyedByPeer notes that the peer rekeys old with c, which is installed
// inbound only: the outbound SA follows once the peer deletes old (or
// after a fallback delay).
func (sa *ikeSA) rekeyedByPeer(old, c *childSA) {
	old.successor = c
	if old.rekeying {
		sa.info("CHILD_SA rekey collision: the peer rekeys it too", zap.String("child", old.cfg.FullName()))
	}
	sa.armSwitch(old, c)
}

// armSwitch switches the outbound SA to c if the peer does not delete old
// in time.
func (sa *ikeSA) armSwitch(old, c *childSA) {
	c.switchTmr = sa.m.after(2*sa.m.opts.RekeyGrace, func() {
		sa := c.ike
		if old.successor != c || c.pending == nil || c.state != childInstalled {
			return
		}
		if old.rekeying {
			sa.armSwitch(old, c)
			return
		}
		sa.info("the peer did not delete the rekeyed CHILD_SA: switching to the new one anyway", zap.String("child", c.cfg.FullName()))
		sa.switchPending(c)
	})
}

// switchPending makes c, installed inbound only, the child's current SA.
func (sa *ikeSA) switchPending(c *childSA) {
	p := c.pending
	if p == nil {
		return
	}
	if c.switchTmr != nil {
		c.switchTmr.Stop()
	}
	p.Peer = sa.espPeer()
	if err := sa.m.inst.SwitchOutbound(p); err != nil {
		sa.errorf("switching to the new outbound SA failed", zap.String("child", c.cfg.FullName()), zap.Error(err))
	}
	c.dropPending()
	sa.m.children[c.id] = c
	sa.m.log.Debug("outbound SA switched", sa.logFields(zap.String("child", c.cfg.FullName()), zap.String("spi_out", fmt.Sprintf("%08x", c.spiOut)))...)
}

// rekeyedByUs finishes our rekey of old with c.
func (sa *ikeSA) rekeyedByUs(old, c *childSA) {
	old.rekeying = false
	if other := collision(old); other != nil {
		if !sa.current(c) {
			sa.info("CHILD_SA rekey collision: the peer's rekey wins (lowest nonce), deleting ours", zap.String("child", c.cfg.FullName()),
				zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)))
			// We keep sending on the old SA until the peer, which
			// may not have our answer yet, deletes it; that switches
			// us to its SA.
			sa.deleteReplaced(c)
			return
		}
		sa.info("CHILD_SA rekey collision: our rekey wins (the peer's has the lowest nonce)", zap.String("child", c.cfg.FullName()))
		other.dropPending()
	}
	old.successor = c
	sa.deleteReplaced(old)
}

// deleteReplaced deletes an SA a rekey replaced (or made redundant) with
// the peer; its inbound SA stays for the grace period after the answer.
func (sa *ikeSA) deleteReplaced(c *childSA) {
	if c.state != childInstalled {
		return
	}
	sa.retire(c, false)
	sa.sendRequest(message.Informational, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPIs: []uint32{c.spiIn}}},
		func(*message.Message, []byte) { sa.retire(c, true) },
		func() {
			sa.removeChild(c)
			sa.peerDead(fmt.Errorf("deleting a rekeyed CHILD_SA: %w", ErrTimeout))
		})
}

// retire moves a replaced SA to the retired list; with grace, its inbound
// SA goes after the grace period.
func (sa *ikeSA) retire(c *childSA, grace bool) {
	if c.state == childDead {
		return
	}
	c.state = childDeleting
	c.rekeying = false
	if c.rekeyTimer != nil {
		c.rekeyTimer.Stop()
	}
	if c.switchTmr != nil {
		c.switchTmr.Stop()
	}
	c.dropPending()
	sa.unlist(c)
	sa.retired = append(sa.retired, c)
	if grace && c.graceTimer == nil {
		sa.m.log.Debug("old CHILD_SA kept for the grace period", sa.logFields(zap.String("child", c.cfg.FullName()),
			zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)))...)
		c.graceTimer = sa.m.after(sa.m.opts.RekeyGrace, func() {
			sa := c.ike
			sa.info("old CHILD_SA removed", zap.String("child", c.cfg.FullName()), zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)),
				zap.String("spi_out", fmt.Sprintf("%08x", c.spiOut)))
			sa.removeChild(c)
		})
	}
}

// Rekey rekeys the named connection's or child's Child SAs ("conn",
// "conn.child" or a child name). It reports ErrNotFound for an unknown
// name and how many rekeys it started.
func (m *Manager) Rekey(name string) (int, error) {
	m.lock()
	defer m.unlock()
	if m.closed {
		return 0, errClosed
	}
	chs, err := m.resolve(name)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sa := range m.sortedSAs() {
		if sa.state != stateEstablished {
			continue
		}
		for _, c := range append([]*childSA(nil), sa.children...) {
			if containsChild(chs, c.cfg) && sa.rekeyChild(c, "requested") {
				n++
			}
		}
	}
	return n, nil
}

// SAEvent handles a lifetime event of the SAD: SoftExpire of a child's
// current SA rekeys it, HardExpire deletes it.
func (m *Manager) SAEvent(ev sad.Event) {
	if ev.Kind != sad.SoftExpire && ev.Kind != sad.HardExpire {
		return
	}
	m.lock()
	defer m.unlock()
	if m.closed {
		return
	}
	c, _ := m.children[ev.Child].(*childSA)
	if c == nil || (ev.SPI != c.spiIn && ev.SPI != c.spiOut) {
		return
	}
	for _, sa := range m.sas {
		if !containsChildSA(sa.children, c) {
			continue
		}
		if ev.Kind == sad.SoftExpire {
			sa.rekeyChild(c, "soft lifetime ("+ev.Reason.String()+")")
		} else {
			sa.expireChild(c, "SAD hard limit ("+ev.Reason.String()+")")
		}
		return
	}
}

func containsChildSA(list []*childSA, c *childSA) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}
