package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
)

// Rekeying of the IKE SA (RFC 7296 sections 1.3.2 and 2.18): a
// CREATE_CHILD_SA exchange on the old IKE SA with an IKE proposal carrying
// the new SPI, new nonces and a new key exchange. The new SKEYSEED is
// prf(SK_d(old), g^ir | Ni | Nr); the initiator of the rekey is the
// original initiator of the new IKE SA, which takes over the Child SAs;
// the initiator of the rekey deletes the old one.
//
// When both ends rekey the IKE SA at once, both exchanges complete; the
// new IKE SA made with the lowest of the four nonces is deleted by its
// initiator, the Child SAs move to the other, whose initiator deletes the
// old IKE SA (RFC 7296 section 2.8.2). A rekey while other exchanges are
// in flight is answered with TEMPORARY_FAILURE and retried later, so that
// no Child SA is left behind on the old IKE SA.

// ikeRekeyNeg is an IKE SA rekey we started.
type ikeRekeyNeg struct {
	spi     uint64
	ni      []byte
	ke      kex.Exchange
	offered []message.Proposal
}

// retryIKERekey tries again after a few random seconds.
func (sa *ikeSA) retryIKERekey(why string) {
	if sa.rekeyTimer != nil {
		sa.rekeyTimer.Stop()
	}
	d := 2*time.Second + time.Duration(rand.Int64N(int64(3*time.Second)))
	sa.rekeyTimer = sa.m.after(d, func() { sa.rekeyIKE(why) })
}

// busy reports whether exchanges are under way that an IKE SA rekey must
// not overtake: requests of ours, or Child SA rekeys not finished.
func (sa *ikeSA) busy() bool {
	return sa.pending != nil || len(sa.queued) > 0 || sa.ikeRekey != nil || sa.childrenBusy() || sa.reauthTo != nil || len(sa.followups) > 0
}

// childrenBusy reports Child SA rekeys not finished.
func (sa *ikeSA) childrenBusy() bool {
	for _, c := range sa.children {
		if c.rekeying || c.pending != nil || c.state != childInstalled {
			return true
		}
	}
	return false
}

// rekeyIKE starts rekeying the IKE SA.
func (sa *ikeSA) rekeyIKE(why string) bool {
	if sa.state != stateEstablished || sa.ikeRekey != nil || sa.rekeyedTo != nil || sa.conn == nil {
		return false
	}
	if sa.busy() {
		sa.m.log.Debug("IKE SA rekey postponed: other exchanges are under way", sa.logFields()...)
		sa.retryIKERekey(why)
		return true
	}
	m := sa.m
	ke, err := kex.NewInitiator(sa.suite.KE)
	if err != nil {
		sa.errorf("cannot rekey the IKE SA", zap.Error(err))
		return false
	}
	n := &ikeRekeyNeg{spi: m.newSPI(), ni: randomBytes(nonceLen), ke: ke}
	m.sas[n.spi] = sa // reserved
	for _, p := range sa.conn.Proposals {
		c := p.Clone()
		c.SPI = binary.BigEndian.AppendUint64(nil, n.spi)
		n.offered = append(n.offered, c)
	}
	sa.ikeRekey = n
	sa.info("rekeying IKE SA", zap.String("reason", why), zap.String("new_spi", fmt.Sprintf("%016x", n.spi)))
	ps := []message.Payload{&message.SA{Proposals: n.offered}, &message.Nonce{Data: n.ni},
		&message.KE{Method: uint16(sa.suite.KE), Data: ke.PublicValue()}}
	sa.sendRequest(message.CreateChildSA, ps, func(msg *message.Message, _ []byte) { sa.handleIKERekeyResponse(n, msg) },
		func() {
			sa.releaseIKERekey()
			sa.peerDead(fmt.Errorf("rekeying the IKE SA: %w", ErrTimeout))
		})
	return true
}

// releaseIKERekey forgets our IKE SA rekey and its reserved SPI.
func (sa *ikeSA) releaseIKERekey() {
	if n := sa.ikeRekey; n != nil {
		if sa.m.sas[n.spi] == sa {
			delete(sa.m.sas, n.spi)
		}
		sa.ikeRekey = nil
	}
}

func spi64(p *message.Proposal) (uint64, bool) {
	if len(p.SPI) != 8 {
		return 0, false
	}
	v := binary.BigEndian.Uint64(p.SPI)
	return v, v != 0
}

func (sa *ikeSA) handleIKERekeyResponse(n *ikeRekeyNeg, msg *message.Message) {
	if sa.ikeRekey != n {
		return
	}
	sa.releaseIKERekey()
	if sa.state != stateEstablished {
		return
	}
	fail := func(err error) {
		if other := sa.peerRekeyed; other != nil {
			// The peer's rekey stands.
			sa.info("our IKE SA rekey failed, the peer's stands", zap.Error(err))
			sa.peerRekeyed = nil
			sa.moveTo(other)
			sa.awaitDelete()
			return
		}
		sa.warn("rekeying the IKE SA failed: trying again later", zap.Error(err))
		sa.retryIKERekey("retry")
	}
	if e := firstError(msg); e != nil {
		fail(fmt.Errorf("the peer answered %v", e.NotifyType))
		return
	}
	sap, _ := msg.Get(message.PayloadSA).(*message.SA)
	kep, _ := msg.Get(message.PayloadKE).(*message.KE)
	nonce, _ := msg.Get(message.PayloadNonce).(*message.Nonce)
	if sap == nil || kep == nil || nonce == nil || len(sap.Proposals) != 1 {
		fail(errors.New("INVALID_SYNTAX: the response lacks SA, KE or Nonce"))
		return
	}
	chosen := sap.Proposals[0].Clone()
	if err := proposal.CheckSelection(n.offered, &chosen, proposal.Options{}); err != nil {
		fail(fmt.Errorf("the peer chose an IKE proposal we did not offer: %w", err))
		return
	}
	suite, err := proposal.ResolveIKE(&chosen)
	if err != nil {
		fail(err)
		return
	}
	spir, ok := spi64(&chosen)
	if !ok || suite.KE != n.ke.Method().ID || kex.ID(kep.Method) != suite.KE {
		fail(errors.New("the response lacks the responder's SPI or our key exchange"))
		return
	}
	secret, err := n.ke.SharedSecret(kep.Data)
	if err != nil {
		fail(err)
		return
	}
	if adds := proposal.AddKEs(suite.AddKE); len(adds) > 0 {
		// RFC 9370: the new IKE SA comes after the IKE_FOLLOWUP_KE
		// exchanges; our rekey stays in flight meanwhile, so that a
		// peer's rekey is seen as a collision.
		sa.ikeRekey = n
		sa.m.sas[n.spi] = sa
		sa.runFollowups(adds, msg, secret, func(all []byte) {
			sa.releaseIKERekey()
			if sa.state == stateEstablished {
				sa.finishIKERekey(n, spir, &chosen, suite, nonce.Data, clone(all), fail)
			}
		}, func(err error) {
			sa.releaseIKERekey()
			if sa.state == stateEstablished {
				fail(err)
			}
		})
		return
	}
	sa.finishIKERekey(n, spir, &chosen, suite, nonce.Data, secret, fail)
}

// finishIKERekey makes the new IKE SA of our rekey from the shared
// secret(s) (zeroed) and moves over to it.
func (sa *ikeSA) finishIKERekey(n *ikeRekeyNeg, spir uint64, chosen *message.Proposal, suite *proposal.IKESuite, nr, secret []byte, fail func(error)) {
	ns, err := sa.rekeyedSA(true, n.spi, spir, chosen, suite, n.ni, clone(nr), secret)
	if err != nil {
		fail(err)
		return
	}
	if other := sa.peerRekeyed; other != nil {
		sa.peerRekeyed = nil
		if lostCollision(n.ni, nr, &childSA{nonces: [2][]byte{other.ni, other.nr}}) {
			sa.info("IKE SA rekey collision: the peer's rekey wins (lowest nonce), deleting ours", zap.String("ours", ns.name()))
			sa.moveTo(other)
			ns.deleteIKE()
			sa.awaitDelete()
			return
		}
		sa.info("IKE SA rekey collision: our rekey wins", zap.String("theirs", other.name()))
		// The peer deletes its redundant IKE SA.
	}
	sa.moveTo(ns)
	sa.deleteIKE()
}

// handleIKERekeyRequest answers the peer's rekey of the IKE SA.
func (sa *ikeSA) handleIKERekeyRequest(msg *message.Message, sap *message.SA) {
	refuse := func(t message.NotifyType, data []byte, why string) {
		sa.warn("IKE SA rekey refused: answering with "+t.String(), zap.String("reason", why))
		sa.respond(message.CreateChildSA, msg.MessageID, []message.Payload{message.NewNotify(t, data)})
	}
	collision := sa.ikeRekey != nil && sa.peerRekeyed == nil && len(sa.queued) == 0 && !sa.childrenBusy()
	if sa.rekeyedTo != nil || (sa.busy() && !collision) {
		// Another exchange is under way.
		refuse(message.TemporaryFailure, nil, "another exchange is under way")
		return
	}
	kep, _ := msg.Get(message.PayloadKE).(*message.KE)
	nonce, _ := msg.Get(message.PayloadNonce).(*message.Nonce)
	if kep == nil || nonce == nil {
		refuse(message.InvalidSyntax, nil, "IKE SA rekey without KE or Nonce")
		return
	}
	chosen, err := proposal.Select(sa.conn.Proposals, sap.Proposals, proposal.Options{})
	if err == nil && proposal.KEMethod(chosen) != kep.Method {
		if alt, err2 := proposal.Select(onlyKE(sa.conn.Proposals, kep.Method), onlyKE(sap.Proposals, kep.Method), proposal.Options{}); err2 == nil {
			chosen = alt
		} else {
			refuse(message.InvalidKEPayload, message.NewInvalidKE(proposal.KEMethod(chosen)).Data, "the initiator's key exchange is not acceptable")
			return
		}
	}
	if err != nil {
		refuse(message.NoProposalChosen, nil, "no acceptable IKE proposal")
		return
	}
	suite, err := proposal.ResolveIKE(chosen)
	if err != nil {
		refuse(message.NoProposalChosen, nil, err.Error())
		return
	}
	spii, ok := spi64(chosen)
	if !ok {
		refuse(message.InvalidSyntax, nil, "IKE proposal without an SPI")
		return
	}
	pub, secret, err := kex.Respond(suite.KE, kep.Data)
	if err != nil {
		refuse(message.InvalidSyntax, nil, err.Error())
		return
	}
	spir := sa.m.newSPI()
	nr := randomBytes(nonceLen)
	resp := chosen.Clone()
	resp.SPI = binary.BigEndian.AppendUint64(nil, spir)
	if adds := proposal.AddKEs(suite.AddKE); len(adds) > 0 {
		// RFC 9370: the new IKE SA comes after the IKE_FOLLOWUP_KE
		// exchanges.
		ni := clone(nonce.Data)
		note := sa.awaitFollowup(adds, secret, func(all []byte) error {
			if sa.state != stateEstablished || sa.rekeyedTo != nil {
				return &ChildError{Notify: message.TemporaryFailure, Detail: "the IKE SA changed meanwhile"}
			}
			ns, err := sa.rekeyedSA(false, spii, spir, chosen, suite, ni, nr, clone(all))
			if err != nil {
				return err
			}
			if collision && sa.ikeRekey != nil {
				sa.info("IKE SA rekey collision: the peer rekeys it too")
				sa.peerRekeyed = ns
				return nil
			}
			sa.moveTo(ns)
			sa.awaitDelete()
			return nil
		}, nil)
		sa.respond(message.CreateChildSA, msg.MessageID, []message.Payload{&message.SA{Proposals: []message.Proposal{resp}},
			&message.Nonce{Data: nr}, &message.KE{Method: uint16(suite.KE), Data: pub}, note})
		return
	}
	ns, err := sa.rekeyedSA(false, spii, spir, chosen, suite, clone(nonce.Data), nr, secret)
	if err != nil {
		refuse(message.NoProposalChosen, nil, err.Error())
		return
	}
	sa.respond(message.CreateChildSA, msg.MessageID, []message.Payload{&message.SA{Proposals: []message.Proposal{resp}},
		&message.Nonce{Data: nr}, &message.KE{Method: uint16(suite.KE), Data: pub}})
	if collision {
		// Resolved when our own rekey's answer comes.
		sa.info("IKE SA rekey collision: the peer rekeys it too")
		sa.peerRekeyed = ns
		return
	}
	sa.moveTo(ns)
	sa.awaitDelete()
}

// awaitDelete deletes the old IKE SA if the initiator of its rekey does
// not.
func (sa *ikeSA) awaitDelete() {
	if sa.rekeyTimer != nil {
		sa.rekeyTimer.Stop()
	}
	// The initiator of the rekey deletes the old IKE SA; if it does not,
	// the old one goes after a while.
	sa.rekeyTimer = sa.m.after(30*time.Second, func() {
		if sa.state == stateEstablished {
			sa.deleteIKE()
		}
	})
}

// rekeyedSA makes the IKE SA that replaces sa: weInit says whether we
// initiated the rekey (and so are the new SA's original initiator).
func (sa *ikeSA) rekeyedSA(weInit bool, spii, spir uint64, chosen *message.Proposal, suite *proposal.IKESuite, ni, nr, secret []byte) (*ikeSA, error) {
	defer clear(secret)
	m := sa.m
	skeyseed := ikecrypto.RekeySKEYSEED(sa.suite.PRF, sa.keys.D, ni, nr, secret)
	defer clear(skeyseed)
	keys, err := ikecrypto.DeriveIKEKeys(&suite.Suite, skeyseed, ni, nr, spii, spir)
	if err != nil {
		return nil, fmt.Errorf("deriving the new IKE SA's keys: %w", err)
	}
	ci, cr, err := ikecrypto.NewIKECiphers(&suite.Suite, keys)
	if err != nil {
		keys.Zero()
		return nil, err
	}
	m.serial++
	now := m.clock.Now()
	ns := &ikeSA{m: m, serial: m.serial, conn: sa.conn, initiator: weInit, spiI: spii, spiR: spir, state: stateEstablished,
		remote: sa.remote, natt: sa.natt, created: now, estab: now, chosen: chosen, suite: suite, ni: ni, nr: nr,
		natLocal: sa.natLocal, natRemote: sa.natRemote, keys: keys, localID: sa.localID, remoteID: sa.remoteID,
		waiters: map[*Child][]chan<- error{}, creating: map[*Child]int{}, lastRecv: now}
	ns.frag.local, ns.frag.peer = sa.frag.local, sa.frag.peer // negotiated once, kept by rekeys
	if weInit {
		ns.out, ns.in = ci, cr
	} else {
		ns.out, ns.in = cr, ci
	}
	m.sas[ns.ourSPI()] = ns
	ns.reportIKEKeys(skeyseed)
	m.obs.Rekeyed(RekeyIKE, weInit)
	sa.info("IKE SA rekeyed", zap.String("new", ns.name()), zap.String("new_spis", fmt.Sprintf("%016x_i %016x_r", spii, spir)),
		zap.String("proposal", proposal.Format(chosen)))
	ns.armDPD()
	ns.reauthAt = sa.reauthAt
	ns.armIKERekey()
	return ns, nil
}

// moveTo hands sa's Child SAs and waiting children over to ns.
func (sa *ikeSA) moveTo(ns *ikeSA) {
	sa.rekeyedTo = ns
	ns.children, ns.retired = sa.children, sa.retired
	sa.children, sa.retired = nil, nil
	for _, c := range ns.children {
		c.ike = ns
	}
	for _, c := range ns.retired {
		c.ike = ns
		if c.graceTimer == nil {
			// Its DELETE went on the old IKE SA: do not wait for it.
			ns.retire(c, true)
		}
	}
	ns.pendingChildren, sa.pendingChildren = sa.pendingChildren, nil
	for ch, ws := range sa.waiters {
		ns.waiters[ch] = ws
		delete(sa.waiters, ch)
	}
	if sa.rekeyTimer != nil {
		sa.rekeyTimer.Stop()
	}
	ns.startPending()
}

// RekeyIKE rekeys the IKE SAs of the named connection (or of the
// connection of the named child). It reports ErrNotFound for an unknown
// name and how many rekeys it started.
func (m *Manager) RekeyIKE(name string) (int, error) {
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
		if len(chs) > 0 && sa.conn == chs[0].conn && sa.rekeyIKE("requested") {
			n++
		}
	}
	return n, nil
}
