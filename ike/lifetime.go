package ike

import (
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/sad"
)

// Lifetimes of Child and IKE SAs, as strongSwan models them.
//
// A Child SA is rekeyed after rekey_time less a random part of up to
// rand_time, and deleted at life_time if it was not rekeyed by then
// (life_time defaults to rekey_time plus a tenth, rand_time to the
// difference). Byte and packet limits work alike, but per SA in the SAD:
// the soft limit (rekey_bytes less a random part of rand_bytes) raises
// SoftExpire, which rekeys the child, the hard one (life_bytes) HardExpire,
// which removes the SA at once and deletes the child. An IKE SA is rekeyed
// after rekey_time less up to rand_time, and deleted over_time later if
// that did not happen.

// randomLess returns d less a random part of up to r (never less than a
// tenth of d, nor below zero).
func randomLess(d, r time.Duration) time.Duration {
	if r <= 0 || d <= 0 {
		return d
	}
	return max(d-time.Duration(rand.Int64N(int64(r)+1)), d/10)
}

// effective resolves a configured rekey, life and rand triple (negative:
// explicitly none, 0: the default) to the values in force.
func effective(rekey, life, rnd int64) (r, l, j int64) {
	r = max(rekey, 0)
	switch {
	case life < 0:
	case life == 0 && r > 0:
		l = r + r/10
	default:
		l = life
	}
	switch {
	case rnd < 0:
	case rnd == 0 && r > 0 && l > r:
		j = l - r
	default:
		j = rnd
	}
	if r > 0 && j >= r {
		j = r - 1
	}
	return r, l, j
}

// checkTriple validates a configured rekey, life and rand triple.
func checkTriple(what string, rekey, life, rnd int64, unit func(int64) string) error {
	if rekey > 0 && life > 0 && rekey >= life {
		return fmt.Errorf("rekey_%s (%s) must be below life_%s (%s)", what, unit(rekey), what, unit(life))
	}
	if rekey > 0 && rnd >= rekey {
		return fmt.Errorf("rand_%s (%s) must be below rekey_%s (%s)", what, unit(rnd), what, unit(rekey))
	}
	return nil
}

func durString(v int64) string { return time.Duration(v).String() }
func intString(v int64) string { return fmt.Sprint(v) }

// checkLifetimes validates the child's lifetimes and close action.
func (ch *Child) checkLifetimes() error {
	if err := checkTriple("time", int64(ch.RekeyTime), int64(ch.LifeTime), int64(ch.RandTime), durString); err != nil {
		return err
	}
	if err := checkTriple("bytes", ch.RekeyBytes, ch.LifeBytes, ch.RandBytes, intString); err != nil {
		return err
	}
	if err := checkTriple("packets", ch.RekeyPackets, ch.LifePackets, ch.RandPackets, intString); err != nil {
		return err
	}
	switch ch.CloseAction {
	case "":
		ch.CloseAction = CloseNone
	case CloseNone, CloseTrap, CloseStart:
	default:
		return fmt.Errorf("close_action %q: want none, trap or start", ch.CloseAction)
	}
	switch ch.DPDAction {
	case "":
		ch.DPDAction = DPDClear
	case DPDClear, DPDTrap, DPDRestart:
	default:
		return fmt.Errorf("dpd_action %q: want clear, trap or restart", ch.DPDAction)
	}
	if ch.DPDAction != DPDClear || ch.CloseAction == CloseStart {
		if _, ok := ch.conn.remoteAddr(); !ok {
			return fmt.Errorf("dpd_action %s and close_action %s need a single IP address in remote_addrs to initiate to", ch.DPDAction, ch.CloseAction)
		}
	}
	return nil
}

// checkLifecycle validates the connection's IKE SA lifetimes.
func (c *Connection) checkLifecycle() error {
	if c.RekeyTime > 0 && c.RandTime >= c.RekeyTime {
		return fmt.Errorf("rand_time (%v) must be below rekey_time (%v)", c.RandTime, c.RekeyTime)
	}
	return nil
}

// timeLimits returns the child's rekey interval, hard lifetime and rekey
// jitter in force.
func (ch *Child) timeLimits() (rekey, life, rnd time.Duration) {
	r, l, j := effective(int64(ch.RekeyTime), int64(ch.LifeTime), int64(ch.RandTime))
	return time.Duration(r), time.Duration(l), time.Duration(j)
}

// softLimit is a soft volume limit: rekey less a random part of up to rnd.
func softLimit(rekey, rnd int64) uint64 {
	if rekey <= 0 {
		return 0
	}
	if rnd > 0 {
		rekey -= rand.Int64N(rnd + 1)
	}
	return uint64(max(rekey, 1))
}

// saLifetime returns the limits of one new SA of the child for the SAD:
// soft volume limits (with their jitter) and hard ones, and the hard time
// limit as a safeguard of the Manager's own timer, a moment later so that
// the Manager acts first (switching to a successor, telling the peer).
func (ch *Child) saLifetime() sad.Lifetime {
	rb, lb, jb := effective(ch.RekeyBytes, ch.LifeBytes, ch.RandBytes)
	rp, lp, jp := effective(ch.RekeyPackets, ch.LifePackets, ch.RandPackets)
	_, life, _ := ch.timeLimits()
	return sad.Lifetime{
		Soft: sad.Limits{Bytes: softLimit(rb, jb), Packets: softLimit(rp, jp)},
		Hard: sad.Limits{Bytes: uint64(lb), Packets: uint64(lp), Time: life + hardTimeMargin(life)},
	}
}

// hardTimeMargin is how much later than life_time the SAD removes an SA.
func hardTimeMargin(life time.Duration) time.Duration {
	if life <= 0 {
		return 0
	}
	return max(life/20, time.Second)
}

// armRekey schedules the rekeying of c after its rekey_time (less the
// jitter) and its deletion at life_time.
func (sa *ikeSA) armRekey(c *childSA) {
	rekey, life, rnd := c.cfg.timeLimits()
	now := sa.m.clock.Now()
	if rekey > 0 {
		d := randomLess(rekey, rnd)
		c.rekeyAt = now.Add(d)
		c.rekeyTimer = sa.m.after(d, func() { c.ike.rekeyChild(c, "rekey_time") })
	}
	if life > 0 {
		c.expireAt = now.Add(life)
		c.lifeTimer = sa.m.after(life, func() { c.ike.expireChild(c, "life_time") })
	}
}

// expireChild handles the hard expiry of c (life_time, or a hard limit of
// the SAD): the SA was not rekeyed in time, so it goes from the dataplane
// at once and the peer is told.
func (sa *ikeSA) expireChild(c *childSA, why string) {
	if c.state != childInstalled {
		return
	}
	if s := c.successor; s != nil && s.state == childInstalled {
		// A rekey by the peer is complete but for its DELETE: use the
		// new SA now.
		sa.switchPending(s)
		sa.retire(c, true)
		return
	}
	if !sa.current(c) {
		return
	}
	sa.warn("CHILD_SA expired (hard lifetime) before it was rekeyed: deleting it", zap.String("child", c.cfg.FullName()),
		zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)), zap.String("spi_out", fmt.Sprintf("%08x", c.spiOut)), zap.String("limit", why))
	spi := c.spiIn
	sa.removeChild(c)
	if sa.state == stateEstablished {
		sa.sendRequest(message.Informational, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPIs: []uint32{spi}}}, nil,
			func() { sa.peerDead(fmt.Errorf("deleting an expired CHILD_SA: %w", ErrTimeout)) })
	}
}

// ikeTimes returns the IKE SA's rekey interval, the time it lives beyond
// the later of rekey_time and reauth_time, and the jitter in force.
func (c *Connection) ikeTimes() (rekey, over, rnd time.Duration) {
	rekey = max(c.RekeyTime, 0)
	reauth := max(c.ReauthTime, 0)
	longest := max(rekey, reauth)
	switch {
	case c.OverTime < 0:
	case c.OverTime == 0:
		over = longest / 10
	default:
		over = c.OverTime
	}
	switch {
	case c.RandTime < 0:
	case c.RandTime == 0:
		rnd = over
	default:
		rnd = c.RandTime
	}
	shortest := longest
	if rekey > 0 && reauth > 0 {
		shortest = min(rekey, reauth)
	}
	if shortest > 0 && rnd >= shortest {
		rnd = shortest - 1
	}
	return rekey, over, rnd
}

// armIKERekey schedules the rekeying of the IKE SA after rekey_time and
// its reauthentication after reauth_time (less the jitter), and its
// deletion over_time after the later of the two.
func (sa *ikeSA) armIKERekey() {
	if sa.conn == nil {
		return
	}
	rekey, over, rnd := sa.conn.ikeTimes()
	reauth := max(sa.conn.ReauthTime, 0)
	now := sa.m.clock.Now()
	if rekey > 0 {
		d := randomLess(rekey, rnd)
		sa.rekeyAt = now.Add(d)
		sa.rekeyTimer = sa.m.after(d, func() { sa.rekeyIKE("rekey_time") })
	}
	if reauth > 0 {
		// A rekey does not authenticate again: the new IKE SA keeps
		// the old one's time, as strongSwan's do.
		if sa.reauthAt.IsZero() {
			sa.reauthAt = now.Add(randomLess(reauth, rnd))
		}
		sa.reauthTimer = sa.m.after(max(sa.reauthAt.Sub(now), 0), sa.reauth)
	}
	if life := max(rekey, reauth); life > 0 && over > 0 {
		sa.expireAt = now.Add(life + over)
		sa.lifeTimer = sa.m.after(life+over, func() {
			if sa.state != stateEstablished || sa.rekeyedTo != nil {
				return
			}
			sa.warn("IKE SA expired (rekey_time or reauth_time, + over_time) before it was replaced: deleting it")
			sa.deleteIKE()
		})
	}
}
