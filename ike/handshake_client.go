package ike

import (
	"errors"
	"fmt"
	"net/netip"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
)

// The initiator's side of IKE_SA_INIT and IKE_AUTH (RFC 7296 section 1.2),
// and of CREATE_CHILD_SA for further children (section 1.3.1).

// ErrTimeout reports a peer that did not answer a request in time.
var ErrTimeout = errors.New("ike: no response from the peer")

// maxInitRetries bounds the IKE_SA_INIT restarts for COOKIE and
// INVALID_KE_PAYLOAD.
const maxInitRetries = 3

// initiateLocked starts negotiating ch: on an established IKE SA of its
// connection through CREATE_CHILD_SA, behind one being set up, or on a new
// IKE SA. done, if not nil, receives the outcome.
func (m *Manager) initiateLocked(ch *Child, done chan<- error) (*ikeSA, error) {
	conn := ch.conn
	for _, sa := range m.sortedSAs() {
		if sa.conn != conn || sa.state == stateDead || sa.state == stateDeleting {
			continue
		}
		for _, c := range sa.children {
			if c.cfg == ch && c.state == childInstalled {
				m.log.Info("child is already established", zap.String("child", ch.FullName()), zap.String("ike_sa", sa.name()))
				if done != nil {
					done <- nil
				}
				return sa, nil
			}
		}
	}
	for _, sa := range m.sortedSAs() {
		if sa.conn != conn || sa.rekeyedTo != nil {
			continue
		}
		switch sa.state {
		case stateEstablished:
			sa.addWaiter(ch, done)
			if sa.creating[ch] == 0 {
				sa.createChild(ch)
			}
			return sa, nil
		case stateInitSent, stateAuthSent:
			if (sa.authChild == nil || sa.authChild.cfg != ch) && !containsChild(sa.pendingChildren, ch) {
				sa.pendingChildren = append(sa.pendingChildren, ch)
			}
			sa.addWaiter(ch, done)
			return sa, nil
		}
	}
	raddr, ok := conn.remoteAddr()
	if !ok {
		return nil, fmt.Errorf("ike: connection %s has no single IP address in remote_addrs to initiate to", conn.Name)
	}
	sa := m.newSA(true)
	sa.conn = conn
	port := conn.remotePort()
	sa.remote = netip.AddrPortFrom(raddr, port)
	sa.natt = !m.opts.PlainIKE || port != 500
	sa.offered = conn.Proposals
	sa.ni = randomBytes(nonceLen)
	sa.keMethod = kex.ID(proposal.KEMethod(&sa.offered[0]))
	sa.pendingChildren = []*Child{ch}
	sa.state = stateInitSent
	m.obs.HandshakeStarted(true)
	sa.info("initiating IKE SA", zap.String("child", ch.FullName()), zap.String("proposals", proposal.FormatList(sa.offered)))
	if err := sa.sendInit(true); err != nil {
		sa.destroy(err)
		return nil, err
	}
	sa.addWaiter(ch, done)
	return sa, nil
}

func containsChild(list []*Child, ch *Child) bool {
	for _, c := range list {
		if c == ch {
			return true
		}
	}
	return false
}

func (sa *ikeSA) addWaiter(ch *Child, done chan<- error) {
	if done != nil {
		sa.waiters[ch] = append(sa.waiters[ch], done)
	}
}

// sendInit sends the IKE_SA_INIT request (again, after a COOKIE or
// INVALID_KE_PAYLOAD), with a new key exchange if newKE.
func (sa *ikeSA) sendInit(newKE bool) error {
	if newKE || sa.ke == nil {
		ke, err := kex.NewInitiator(sa.keMethod)
		if err != nil {
			return fmt.Errorf("ike: key exchange %d: %w", sa.keMethod, err)
		}
		sa.ke = ke
	}
	var ps []message.Payload
	if sa.cookie != nil {
		ps = append(ps, message.NewNotify(message.Cookie, sa.cookie))
	}
	ps = append(ps, &message.SA{Proposals: sa.offered},
		&message.KE{Method: uint16(sa.keMethod), Data: sa.ke.PublicValue()},
		&message.Nonce{Data: sa.ni})
	ps = append(ps, natdPayloads(sa.spiI, 0, sa.remote)...)
	ps = append(ps, sigHashNotify())
	if proposal.HasAddKE(sa.offered) {
		ps = append(ps, message.NewNotify(message.IntermediateExchangeSupported, nil))
	}
	if sa.frag.local = announceFragmentation(sa.conn); sa.frag.local {
		ps = append(ps, message.NewNotify(message.IKEv2FragmentationSupported, nil))
	}
	msg := &message.Message{SPIi: sa.spiI, Exchange: message.IKESAInit, Flags: message.FlagInitiator, Payloads: ps}
	wire, err := msg.Marshal()
	if err != nil {
		return fmt.Errorf("ike: encoding IKE_SA_INIT: %w", err)
	}
	sa.initReq = wire
	sa.enqueue(&request{exchange: message.IKESAInit,
		build:      func(uint32) ([][]byte, error) { return [][]byte{wire}, nil },
		onResponse: sa.handleInitResponse,
		onTimeout:  func() { sa.fail(fmt.Errorf("IKE_SA_INIT: %w", ErrTimeout)) }})
	return nil
}

// fail ends an IKE SA that could not be set up (or lost its peer).
func (sa *ikeSA) fail(err error) {
	if sa.state == stateDead {
		return
	}
	sa.errorf("IKE SA failed", zap.Error(err))
	sa.destroy(err)
}

func (sa *ikeSA) handleInitResponse(msg *message.Message, raw []byte) {
	if sa.state != stateInitSent {
		return
	}
	if n := msg.Notify(message.Cookie); n != nil {
		data, err := n.CookieData()
		if err != nil || sa.retries >= maxInitRetries {
			sa.fail(fmt.Errorf("the responder keeps asking for a cookie (%v)", err))
			return
		}
		sa.retries++
		sa.m.obs.HandshakeRetried(ReasonCookie)
		sa.cookie = clone(data)
		sa.info("responder asks for a cookie (it is under load): retrying IKE_SA_INIT with it")
		if err := sa.sendInit(false); err != nil {
			sa.fail(err)
		}
		return
	}
	if n := msg.Notify(message.InvalidKEPayload); n != nil {
		method, err := n.InvalidKEMethod()
		switch {
		case err != nil:
			sa.fail(fmt.Errorf("malformed INVALID_KE_PAYLOAD: %w", err))
		case !proposal.HasKEMethod(sa.offered, method):
			sa.fail(&NotifyError{Notify: message.InvalidKEPayload, Detail: fmt.Sprintf("the responder wants key exchange method %s, which none of our proposals offers: add it to the proposals", keName(method))})
		case kex.ID(method) == sa.keMethod || sa.retries >= maxInitRetries:
			sa.fail(&NotifyError{Notify: message.InvalidKEPayload, Detail: fmt.Sprintf("the responder keeps refusing our key exchange (%s)", keName(method))})
		default:
			sa.retries++
			sa.m.obs.HandshakeRetried(ReasonInvalidKE)
			sa.info("responder prefers another key exchange method: retrying IKE_SA_INIT (INVALID_KE_PAYLOAD)",
				zap.String("sent", keName(uint16(sa.keMethod))), zap.String("wanted", keName(method)))
			sa.keMethod = kex.ID(method)
			sa.cookie = nil
			if err := sa.sendInit(true); err != nil {
				sa.fail(err)
			}
		}
		return
	}
	if n := firstError(msg); n != nil {
		if n.NotifyType == message.NoProposalChosen {
			sa.fail(&NotifyError{Notify: message.NoProposalChosen, Detail: fmt.Sprintf("the peer accepts none of our IKE proposals (%s): make the proposals of both ends overlap%s",
				proposal.FormatList(sa.offered), addKEHint(sa.offered))})
			return
		}
		sa.fail(fmt.Errorf("the peer answered IKE_SA_INIT with %w", &NotifyError{Notify: n.NotifyType}))
		return
	}
	sap, _ := msg.Get(message.PayloadSA).(*message.SA)
	kep, _ := msg.Get(message.PayloadKE).(*message.KE)
	nonce, _ := msg.Get(message.PayloadNonce).(*message.Nonce)
	if sap == nil || kep == nil || nonce == nil || msg.SPIr == 0 {
		sa.fail(errors.New("INVALID_SYNTAX: the IKE_SA_INIT response lacks SA, KE, Nonce or the responder's SPI"))
		return
	}
	if len(sap.Proposals) != 1 {
		sa.fail(fmt.Errorf("INVALID_SYNTAX: the IKE_SA_INIT response carries %d proposals, want 1", len(sap.Proposals)))
		return
	}
	chosen := sap.Proposals[0].Clone()
	if err := proposal.CheckSelection(sa.offered, &chosen, proposal.Options{}); err != nil {
		sa.fail(fmt.Errorf("the responder chose an IKE proposal we did not offer: %w", err))
		return
	}
	suite, err := proposal.ResolveIKE(&chosen)
	if err != nil {
		sa.fail(err)
		return
	}
	if suite.KE != sa.keMethod || kex.ID(kep.Method) != sa.keMethod {
		sa.fail(fmt.Errorf("the responder's key exchange (%s, proposal %s) is not the one we sent (%s)",
			keName(kep.Method), keName(uint16(suite.KE)), keName(uint16(sa.keMethod))))
		return
	}
	sa.spiR = msg.SPIr
	sa.frag.peer = msg.Notify(message.IKEv2FragmentationSupported) != nil
	sa.chosen, sa.suite = &chosen, suite
	sa.nr = clone(nonce.Data)
	sa.initResp = clone(raw)
	secret, err := sa.ke.SharedSecret(kep.Data)
	if err != nil {
		sa.fail(fmt.Errorf("the responder's KE payload: %w", err))
		return
	}
	if err := sa.deriveKeys(secret); err != nil {
		sa.fail(err)
		return
	}
	sa.checkNAT(msg, sa.remote, sa.natt)
	sa.readSigHashes(msg)
	if !sa.natt {
		// Float to the NAT-T port (RFC 7296 section 2.23); goipsec always
		// wants ESP in UDP, so it always floats.
		port := sa.remote.Port()
		if port == 500 {
			port = 4500
		}
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), port)
		sa.natt = true
		sa.m.log.Debug("switching to the NAT-T port", sa.logFields()...)
	}
	sa.nextReqID = 1
	sa.afterInit(msg)
}

// keName names a key exchange method.
func keName(id uint16) string {
	if m, err := kex.Lookup(kex.ID(id)); err == nil {
		return m.Name
	}
	return fmt.Sprintf("KE(%d)", id)
}

// deriveKeys computes SKEYSEED and the IKE SA's keys and ciphers from the
// IKE_SA_INIT shared secret, and zeroes the secret.
func (sa *ikeSA) deriveKeys(secret []byte) error {
	defer clear(secret)
	s := &sa.suite.Suite
	skeyseed := ikecrypto.SKEYSEED(s.PRF, sa.ni, sa.nr, secret)
	defer clear(skeyseed)
	keys, err := ikecrypto.DeriveIKEKeys(s, skeyseed, sa.ni, sa.nr, sa.spiI, sa.spiR)
	if err != nil {
		return fmt.Errorf("deriving IKE SA keys: %w", err)
	}
	ci, cr, err := ikecrypto.NewIKECiphers(s, keys)
	if err != nil {
		keys.Zero()
		return fmt.Errorf("IKE SA ciphers: %w", err)
	}
	sa.keys = keys
	if sa.initiator {
		sa.out, sa.in = ci, cr
	} else {
		sa.out, sa.in = cr, ci
	}
	sa.ke = nil
	sa.reportIKEKeys(skeyseed)
	return nil
}

// sendAuth sends the IKE_AUTH request with the first pending child.
func (sa *ikeSA) sendAuth() {
	m, conn := sa.m, sa.conn
	sa.localID = conn.localID.id
	peer := conn.remoteID.id
	prf := sa.suite.PRF
	sa.authMID = sa.nextReqID
	octets := ikecrypto.SignedOctets(prf, sa.keys.Pi, sa.initReq, sa.nr, &sa.localID, sa.intAuth())
	auth, err := sa.localAuth(octets, &peer)
	if err != nil {
		sa.fail(err)
		return
	}
	ps := []message.Payload{&message.IDi{Identity: sa.localID}}
	if !m.hasOtherSA(sa) {
		ps = append(ps, message.NewNotify(message.InitialContact, nil))
	}
	if cr := conn.certReq(); cr != nil {
		ps = append(ps, cr)
	}
	if !conn.remoteID.any && !conn.remoteID.wildcard() {
		ps = append(ps, &message.IDr{Identity: conn.remoteID.id})
	}
	ps = append(ps, auth...)
	for len(sa.pendingChildren) > 0 && sa.authChild == nil {
		ch := sa.pendingChildren[0]
		sa.pendingChildren = sa.pendingChildren[1:]
		neg, cps, err := sa.newChildNeg(ch, false)
		if err != nil {
			sa.errorf("cannot propose the child", zap.String("child", ch.FullName()), zap.Error(err))
			sa.notifyWaiters(ch, err)
			continue
		}
		sa.authChild = neg
		ps = append(ps, cps...)
	}
	if sa.authChild == nil {
		sa.fail(errors.New("no child to negotiate"))
		return
	}
	sa.state = stateAuthSent
	sa.sendRequest(message.IKEAuth, ps, func(msg *message.Message, _ []byte) { sa.handleAuthResponse(msg) },
		func() { sa.fail(fmt.Errorf("IKE_AUTH: %w", ErrTimeout)) })
}

// hasOtherSA reports whether another IKE SA of sa's connection is up with
// the same peer (if not, IKE_AUTH carries INITIAL_CONTACT).
func (m *Manager) hasOtherSA(sa *ikeSA) bool {
	for _, o := range m.sas {
		if o != sa && o.conn == sa.conn && o.state == stateEstablished && o.remote.Addr() == sa.remote.Addr() {
			return true
		}
	}
	return false
}

func (sa *ikeSA) handleAuthResponse(msg *message.Message) {
	if sa.state != stateAuthSent {
		return
	}
	neg := sa.authChild
	sa.authChild = nil
	if n := firstError(msg); n != nil && !isChildError(n.NotifyType) {
		neg.release(sa.m)
		if n.NotifyType == message.AuthenticationFailed {
			sa.m.stats.AuthFailed++
			hint := "check that both ends use the same pre-shared key"
			if pubkey(sa.conn.LocalAuth) {
				hint = "check that the peer trusts the CA of our certificate and expects a certificate"
			}
			sa.fail(&AuthError{Detail: fmt.Sprintf("the peer refused our authentication: %s, and that the peer expects our identity %s", hint, idString(&sa.localID))})
			return
		}
		sa.fail(fmt.Errorf("the peer answered IKE_AUTH with %w", &NotifyError{Notify: n.NotifyType}))
		return
	}
	idr, _ := msg.Get(message.PayloadIDr).(*message.IDr)
	auth, _ := msg.Get(message.PayloadAUTH).(*message.Auth)
	if idr == nil || auth == nil {
		neg.release(sa.m)
		sa.fail(errors.New("INVALID_SYNTAX: the IKE_AUTH response lacks IDr or AUTH"))
		return
	}
	if err := sa.verifyPeerAuth(msg, &idr.Identity, auth, sa.initResp, sa.ni, sa.keys.Pr); err != nil {
		neg.release(sa.m)
		sa.errorf("authentication of the peer failed: telling it and deleting the IKE SA", zap.Error(err))
		sa.m.stats.AuthFailed++
		// RFC 7296 section 2.21.2: tell the responder, then forget it.
		sa.sendRequest(message.Informational, []message.Payload{message.NewNotify(message.AuthenticationFailed, nil)}, nil, nil)
		sa.destroy(err)
		return
	}
	sa.remoteID = idr.Identity
	sa.established()

	ch := neg.cfg
	if n := firstError(msg); n != nil {
		neg.release(sa.m)
		err := &ChildError{Notify: n.NotifyType, Detail: "refused by the peer"}
		sa.errorf("CHILD_SA failed: the peer refused it", zap.String("child", ch.FullName()), zap.Stringer("notify", n.NotifyType),
			zap.String("hint", childHint(n.NotifyType)))
		sa.notifyWaiters(ch, err)
	} else if _, err := sa.completeChild(neg, msg, sa.ni, sa.nr, nil, false); err != nil {
		neg.release(sa.m)
		sa.errorf("CHILD_SA failed: the peer's answer is not acceptable", zap.String("child", ch.FullName()), zap.Error(err))
		sa.deleteUnwanted(neg, msg)
		sa.notifyWaiters(ch, err)
	} else {
		sa.notifyWaiters(ch, nil)
	}
	if len(sa.children) == 0 && len(sa.pendingChildren) == 0 {
		sa.info("no Child SA came up: deleting the IKE SA")
		sa.deleteIKE()
		return
	}
	sa.startPending()
}

// childHint tells an operator what to check for a refused Child SA.
func childHint(t message.NotifyType) string {
	switch t {
	case message.NoProposalChosen:
		return "the ESP proposals (esp_proposals) of both ends share no algorithm set, or the modes differ"
	case message.TSUnacceptable:
		return "the traffic selectors (local_ts/remote_ts) of both ends do not overlap"
	case message.SinglePairRequired:
		return "the peer wants one selector pair per Child SA"
	}
	return ""
}

// deleteUnwanted deletes a Child SA that the responder installed and we do
// not accept: the peer knows it by the SPI it sends to, our proposed
// inbound SPI (RFC 7296 section 3.11).
func (sa *ikeSA) deleteUnwanted(neg *childNeg, resp *message.Message) {
	if s, _ := resp.Get(message.PayloadSA).(*message.SA); s == nil {
		return
	}
	sa.sendRequest(message.Informational, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPIs: []uint32{neg.spiIn}}}, nil, nil)
}

// verifyPeerAuth checks the peer's identity and AUTH payload (and the
// certificates msg carries).
func (sa *ikeSA) verifyPeerAuth(msg *message.Message, id *message.Identity, auth *message.Auth, firstMsg, ourNonce, skp []byte) error {
	conn := sa.conn
	if !conn.remoteID.matches(id) {
		return &AuthError{Detail: fmt.Sprintf("the peer's identity %s (%v) is not the configured remote id %s", idString(id), id.IDType, conn.remoteID)}
	}
	// The octets the peer signed or MACed, for either method.
	octets := ikecrypto.SignedOctets(sa.suite.PRF, skp, firstMsg, ourNonce, id, sa.intAuth())
	if pubkey(conn.RemoteAuth) {
		return sa.verifyPeerSignature(msg, id, auth, octets)
	}
	psk, ok := sa.m.cfg.lookupPSK(&sa.localID, id)
	if !ok {
		return &AuthError{Detail: fmt.Sprintf("no pre-shared key for %s - %s: add a secret for these identities", sa.localID.String(), id.String())}
	}
	if auth.Method != message.AuthSharedKey {
		return &AuthError{Detail: fmt.Sprintf("the peer %s authenticates with method %d, we are configured for a pre-shared key (method 2)", id.String(), auth.Method)}
	}
	if !ikecrypto.VerifySharedKeyAuth(sa.suite.PRF, psk, octets, auth.Data) {
		return &AuthError{Detail: fmt.Sprintf("the AUTH payload of %s does not verify: the pre-shared keys of both ends differ", id.String())}
	}
	return nil
}

// established marks the IKE SA up and starts its liveness checks.
func (sa *ikeSA) established() {
	m := sa.m
	if sa.state == stateInitDone {
		m.nHalf--
		if sa.halfTimer != nil {
			sa.halfTimer.Stop()
		}
	}
	sa.state = stateEstablished
	sa.estab = m.clock.Now()
	sa.lastRecv = sa.estab
	m.stats.Established++
	m.obs.HandshakeCompleted(sa.initiator)
	role := "responder"
	if sa.initiator {
		role = "initiator"
	}
	sa.info("IKE SA established", zap.String("role", role), zap.String("local_id", sa.localID.String()),
		zap.String("remote_id", sa.remoteID.String()), zap.String("proposal", proposal.Format(sa.chosen)))
	sa.armDPD()
	sa.armIKERekey()
	sa.m.after(0, sa.checkDuplicate)
}

// startPending negotiates the children waiting for the IKE SA.
func (sa *ikeSA) startPending() {
	for len(sa.pendingChildren) > 0 {
		ch := sa.pendingChildren[0]
		sa.pendingChildren = sa.pendingChildren[1:]
		sa.createChild(ch)
	}
}

// createChild negotiates a further Child SA with CREATE_CHILD_SA.
func (sa *ikeSA) createChild(ch *Child) {
	neg, ps, err := sa.newChildNeg(ch, true)
	if err != nil {
		sa.errorf("cannot propose the child", zap.String("child", ch.FullName()), zap.Error(err))
		sa.notifyWaiters(ch, err)
		return
	}
	sa.info("creating CHILD_SA", zap.String("child", ch.FullName()))
	sa.sendCreateChild(neg, ps)
}

// sendCreateChild sends a CREATE_CHILD_SA request for neg.
func (sa *ikeSA) sendCreateChild(neg *childNeg, ps []message.Payload) {
	sa.creating[neg.cfg]++
	sa.sendRequest(message.CreateChildSA, ps,
		func(msg *message.Message, _ []byte) {
			sa.creating[neg.cfg]--
			sa.handleCreateChildResponse(neg, msg)
		},
		func() {
			sa.creating[neg.cfg]--
			neg.release(sa.m)
			sa.peerDead(fmt.Errorf("CREATE_CHILD_SA: %w", ErrTimeout))
		})
}

func (sa *ikeSA) handleCreateChildResponse(neg *childNeg, msg *message.Message) {
	ch := neg.cfg
	fail := func(err error) {
		neg.release(sa.m)
		if neg.rekey != nil {
			sa.rekeyFailed(neg.rekey, err)
			return
		}
		sa.errorf("CHILD_SA failed", zap.String("child", ch.FullName()), zap.Error(err))
		sa.notifyWaiters(ch, err)
	}
	if n := firstError(msg); n != nil {
		if n.NotifyType == message.InvalidKEPayload {
			if method, err := n.InvalidKEMethod(); err == nil && neg.ke != nil && !neg.retried && kex.ID(method) != neg.ke.Method().ID &&
				proposal.HasKEMethod(ch.Proposals, method) {
				neg.release(sa.m)
				sa.info("peer prefers another key exchange for the CHILD_SA: retrying", zap.String("wanted", keName(method)))
				if neg.rekey != nil {
					sa.sendRekey(neg.rekey, method)
				} else {
					sa.createChildKE(ch, method)
				}
				return
			}
		}
		fail(&ChildError{Notify: n.NotifyType, Detail: "refused by the peer; " + childHint(n.NotifyType)})
		return
	}
	nonce, _ := msg.Get(message.PayloadNonce).(*message.Nonce)
	if nonce == nil {
		fail(&ChildError{Notify: message.InvalidSyntax, Detail: "CREATE_CHILD_SA response without a nonce"})
		return
	}
	var secret []byte
	if neg.ke != nil {
		kep, _ := msg.Get(message.PayloadKE).(*message.KE)
		if kep == nil || kex.ID(kep.Method) != neg.ke.Method().ID {
			fail(&ChildError{Notify: message.InvalidSyntax, Detail: "CREATE_CHILD_SA response without our key exchange"})
			return
		}
		s, err := neg.ke.SharedSecret(kep.Data)
		if err != nil {
			fail(&ChildError{Notify: message.InvalidSyntax, Detail: err.Error()})
			return
		}
		secret = s
	}
	adds, err := childAddKEs(neg.offered, msg)
	if err != nil {
		clear(secret)
		fail(err)
		return
	}
	finish := func(secret []byte) {
		c, err := sa.completeChild(neg, msg, neg.ni, nonce.Data, secret, true)
		if err != nil {
			fail(err)
			return
		}
		if neg.rekey != nil {
			sa.rekeyedByUs(neg.rekey, c)
			return
		}
		sa.notifyWaiters(ch, nil)
	}
	if len(adds) > 0 {
		sa.runFollowups(adds, msg, secret, finish, fail)
		return
	}
	finish(secret)
	clear(secret)
}

// createChildKE retries CREATE_CHILD_SA with the key exchange the peer asked
// for first.
func (sa *ikeSA) createChildKE(ch *Child, method uint16) {
	neg, ps, err := sa.newChildNeg(ch, true)
	if err != nil {
		sa.notifyWaiters(ch, err)
		return
	}
	neg.retried = true
	if neg.ke, err = kex.NewInitiator(kex.ID(method)); err != nil {
		neg.release(sa.m)
		sa.notifyWaiters(ch, err)
		return
	}
	for i, p := range ps {
		if _, ok := p.(*message.KE); ok {
			ps[i] = &message.KE{Method: method, Data: neg.ke.PublicValue()}
		}
	}
	sa.sendCreateChild(neg, ps)
}
