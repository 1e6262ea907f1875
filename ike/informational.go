package ike

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/message"
)

// INFORMATIONAL exchanges (RFC 7296 section 1.4): deleting Child and IKE
// SAs, notifications, and liveness checks (dead peer detection).

var (
	errPeerDeleted = errors.New("deleted by the peer")
	errDeleted     = errors.New("deleted")
)

// handleInformational answers the peer's INFORMATIONAL request.
func (sa *ikeSA) handleInformational(msg *message.Message) {
	var ours []uint32
	var closed []*Child // children the peer deleted
	deleteIKE := false
	authFailed := false
	for _, p := range msg.Payloads {
		switch p := p.(type) {
		case *message.Delete:
			switch p.Protocol {
			case message.ProtoIKE:
				deleteIKE = true
			case message.ProtoESP, message.ProtoAH:
				for _, spi := range p.SPIs {
					c := sa.childByOutSPI(spi)
					if c == nil {
						c = sa.retiredByOutSPI(spi)
					}
					if c == nil {
						sa.m.log.Debug("peer deletes a Child SA we do not have", sa.logFields(zap.String("spi", fmt.Sprintf("%08x", spi)))...)
						continue
					}
					// Our own DELETE may be crossing this one (RFC 7296
					// section 1.4.1): answer with the SPI either way.
					ours = append(ours, c.spiIn)
					if s := c.successor; s != nil && s.state == childInstalled {
						// The peer completed its rekey: send on the new
						// SA, keep accepting on the old one a while.
						sa.switchPending(s)
						sa.info("rekeyed CHILD_SA deleted by the peer", zap.String("child", c.cfg.FullName()),
							zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)), zap.String("spi_out", fmt.Sprintf("%08x", c.spiOut)))
						sa.retire(c, true)
						continue
					}
					if !sa.current(c) {
						// A redundant SA of a rekey collision, or one
						// already replaced.
						sa.info("replaced CHILD_SA deleted by the peer", zap.String("child", c.cfg.FullName()),
							zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)))
						sa.retire(c, true)
						continue
					}
					sa.info("CHILD_SA deleted by the peer", zap.String("child", c.cfg.FullName()),
						zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)), zap.String("spi_out", fmt.Sprintf("%08x", c.spiOut)))
					sa.removeChild(c)
					closed = append(closed, c.cfg)
				}
			}
		case *message.Notify:
			switch {
			case p.NotifyType == message.AuthenticationFailed:
				authFailed = true
			case p.NotifyType < 16384:
				sa.warn("the peer reports an error", zap.Stringer("notify", p.NotifyType))
			default:
				// Status notifications (NO_ADDITIONAL_ADDRESSES and the
				// other MOBIKE ones, ...) need no more than an answer.
				sa.m.log.Debug("INFORMATIONAL notification", sa.logFields(zap.Stringer("notify", p.NotifyType))...)
			}
		}
	}
	var resp []message.Payload
	if len(ours) > 0 && !deleteIKE {
		resp = append(resp, &message.Delete{Protocol: message.ProtoESP, SPIs: ours})
	}
	sa.respond(message.Informational, msg.MessageID, resp)
	switch {
	case authFailed:
		hint := "check that both ends use the same pre-shared key and expect each other's identities"
		if sa.conn != nil && pubkey(sa.conn.LocalAuth) {
			hint = "check that the peer trusts the CA of our certificate and expects our identity"
		}
		sa.errorf("the peer refused our authentication (AUTHENTICATION_FAILED): " + hint)
		sa.destroy(&AuthError{Detail: "refused by the peer"})
	case deleteIKE:
		chs := sa.childConfigs()
		sa.destroy(errPeerDeleted)
		sa.m.closeAction(chs)
	default:
		sa.m.closeAction(closed)
	}
}

// childByOutSPI finds the child whose outbound SA has spi (the peer's
// inbound SPI, by which it names the pair).
func (sa *ikeSA) childByOutSPI(spi uint32) *childSA {
	for _, c := range sa.children {
		if c.spiOut == spi {
			return c
		}
	}
	return nil
}

// deleteIKE deletes the IKE SA with the peer: the Child SAs go at once,
// the IKE SA when the peer answers (or does not).
func (sa *ikeSA) deleteIKE() {
	if sa.state != stateEstablished {
		sa.destroy(errDeleted)
		return
	}
	sa.state = stateDeleting
	for len(sa.children) > 0 {
		sa.removeChild(sa.children[0])
	}
	sa.queued = nil
	done := func() { sa.destroy(errDeleted) }
	sa.sendRequest(message.Informational, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}},
		func(*message.Message, []byte) { done() }, done)
}

// sendDeleteIKE tells the peer the IKE SA is gone, once and without
// waiting (shutdown).
func (sa *ikeSA) sendDeleteIKE() {
	id := sa.nextReqID
	if sa.pending != nil {
		id = sa.pending.id + 1
	}
	wire, err := sa.seal(message.Informational, id, false, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}})
	if err == nil {
		sa.m.queueAll(wire, sa.remote, sa.natt)
	}
}

// deleteChild deletes one Child SA with the peer.
func (sa *ikeSA) deleteChild(c *childSA) {
	if c.state != childInstalled {
		return
	}
	c.state = childDeleting
	sa.info("deleting CHILD_SA", zap.String("child", c.cfg.FullName()), zap.String("spi_in", fmt.Sprintf("%08x", c.spiIn)))
	sa.sendRequest(message.Informational, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPIs: []uint32{c.spiIn}}},
		func(*message.Message, []byte) { sa.removeChild(c) },
		func() {
			sa.removeChild(c)
			sa.peerDead(fmt.Errorf("deleting a CHILD_SA: %w", ErrTimeout))
		})
}

// armDPD schedules the next liveness check.
func (sa *ikeSA) armDPD() {
	if sa.conn == nil || sa.conn.DPDDelay <= 0 {
		return
	}
	sa.dpdTimer = sa.m.after(sa.conn.DPDDelay, sa.dpdCheck)
}

// dpdCheck sends an empty INFORMATIONAL if nothing came from the peer for
// dpd_delay, neither IKE nor ESP (RFC 7296 section 2.4).
func (sa *ikeSA) dpdCheck() {
	if sa.state != stateEstablished {
		return
	}
	m := sa.m
	now := m.clock.Now()
	var in uint64
	for _, c := range sa.children {
		in += m.inst.InboundPackets(c.id)
	}
	if in != sa.lastInPackets {
		sa.lastInPackets = in
		sa.lastRecv = now
	}
	if now.Sub(sa.lastRecv) >= sa.conn.DPDDelay && sa.pending == nil && len(sa.queued) == 0 {
		m.log.Debug("nothing from the peer for dpd_delay: checking liveness", sa.logFields()...)
		sa.sendRequest(message.Informational, nil, nil, func() {
			sa.peerDead(fmt.Errorf("liveness check: %w", ErrTimeout))
		})
	}
	sa.armDPD()
}
