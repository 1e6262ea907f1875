package ike

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
)

// The responder's side of IKE_SA_INIT and IKE_AUTH (RFC 7296 section 1.2),
// and of CREATE_CHILD_SA for further children (section 1.3.1).

// respondInitError answers an IKE_SA_INIT request with an unprotected error
// notification, keeping no state.
func (m *Manager) respondInitError(h *message.Header, from netip.AddrPort, natt bool, n *message.Notify) {
	if n.NotifyType.IsError() && n.NotifyType != message.InvalidKEPayload {
		// A refused handshake; the peer retries after INVALID_KE_PAYLOAD
		// (or COOKIE, a status) and is counted then.
		m.obs.HandshakeStarted(false)
		m.obs.HandshakeFailed(false, notifyReason(n.NotifyType))
	}
	msg := &message.Message{SPIi: h.SPIi, Exchange: message.IKESAInit, Flags: message.FlagResponse, Payloads: []message.Payload{n}}
	wire, err := msg.Marshal()
	if err != nil {
		m.log.Error("encoding an IKE_SA_INIT error response failed", zap.Error(err))
		return
	}
	m.queue(wire, from, natt)
}

// cookieFor computes the COOKIE for an initiator (RFC 7296 section 2.6):
// a version octet, then SHA-256 of its nonce, address, SPI and our secret.
func (m *Manager) cookieFor(ni []byte, from netip.AddrPort, spii uint64) []byte {
	h := sha256.New()
	h.Write(ni)
	a := from.Addr().As16()
	h.Write(a[:])
	var b [8]byte
	for i := range 8 {
		b[i] = byte(spii >> (56 - 8*i))
	}
	h.Write(b[:])
	h.Write(m.cookie[:])
	return h.Sum([]byte{0})
}

// candidates returns the connections that accept a peer at addr, the most
// specific first (then in configuration order).
func (m *Manager) candidates(addr netip.Addr) []*Connection {
	type scored struct {
		c     *Connection
		score int
	}
	var list []scored
	for _, c := range m.cfg.Connections {
		if s := c.acceptsPeer(addr); s > 0 {
			list = append(list, scored{c, s})
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].score > list[j].score })
	out := make([]*Connection, len(list))
	for i, s := range list {
		out[i] = s.c
	}
	return out
}

// onlyKE returns copies of the proposals that offer key exchange method
// id, with that method as their only one.
func onlyKE(ps []message.Proposal, id uint16) []message.Proposal {
	var out []message.Proposal
	for _, p := range ps {
		if !proposal.HasKEMethod([]message.Proposal{p}, id) {
			continue
		}
		c := p.Clone()
		c.Transforms = slices.DeleteFunc(c.Transforms, func(t message.Transform) bool {
			return t.Type == message.TransformKE && t.ID != id
		})
		out = append(out, c)
	}
	return out
}

// handleInitRequest is the responder's IKE_SA_INIT.
func (m *Manager) handleInitRequest(b []byte, h *message.Header, from netip.AddrPort, natt bool) {
	if !h.IsInitiator() || h.SPIr != 0 || h.MessageID != 0 || h.SPIi == 0 {
		m.drop(from, "IKE_SA_INIT request with bad header fields", fmt.Errorf("flags %#x SPIr %x msgid %d", h.Flags, h.SPIr, h.MessageID))
		return
	}
	key := initKey{from, h.SPIi}
	hash := sha256.Sum256(b)
	if sa := m.halfOpen[key]; sa != nil {
		if subtle.ConstantTimeCompare(hash[:], sa.initHashSum[:]) == 1 {
			m.log.Debug("retransmitted IKE_SA_INIT: resending our response", sa.logFields()...)
			m.queue(sa.initResp, from, natt)
		} else {
			m.drop(from, "a different IKE_SA_INIT with the SPI of a known one", nil)
		}
		return
	}
	msg, err := message.ParseMessage(b)
	if err != nil {
		var perr *message.Error
		if errors.As(err, &perr) {
			t, data := perr.Notify()
			m.log.Info("malformed IKE_SA_INIT: answering with an error", zap.Stringer("from", from), zap.Stringer("notify", t), zap.Error(err))
			m.respondInitError(h, from, natt, message.NewNotify(t, data))
		} else {
			m.drop(from, "malformed IKE_SA_INIT", err)
		}
		return
	}
	sap, _ := msg.Get(message.PayloadSA).(*message.SA)
	kep, _ := msg.Get(message.PayloadKE).(*message.KE)
	nonce, _ := msg.Get(message.PayloadNonce).(*message.Nonce)
	if sap == nil || kep == nil || nonce == nil {
		m.log.Info("IKE_SA_INIT without SA, KE or Nonce: answering INVALID_SYNTAX", zap.Stringer("from", from))
		m.respondInitError(h, from, natt, message.NewNotify(message.InvalidSyntax, nil))
		return
	}
	if m.opts.CookieThreshold > 0 && m.nHalf >= m.opts.CookieThreshold {
		want := m.cookieFor(nonce.Data, from, h.SPIi)
		n, _ := msg.Payloads[0].(*message.Notify)
		if n == nil || n.NotifyType != message.Cookie || subtle.ConstantTimeCompare(n.Data, want) != 1 {
			m.log.Debug("many half-open IKE SAs: asking for a cookie", zap.Stringer("from", from), zap.Int("half_open", m.nHalf))
			m.respondInitError(h, from, natt, message.NewNotify(message.Cookie, want))
			return
		}
	}
	cands := m.candidates(from.Addr())
	if len(cands) == 0 {
		m.log.Warn("IKE_SA_INIT from a peer no connection is configured for: answering NO_PROPOSAL_CHOSEN",
			zap.Stringer("from", from), zap.String("hint", "add its address to remote_addrs of a connection"))
		m.respondInitError(h, from, natt, message.NewNotify(message.NoProposalChosen, nil))
		return
	}
	var ours []message.Proposal
	for _, c := range cands {
		ours = append(ours, c.Proposals...)
	}
	// Additional key exchanges need IKE_INTERMEDIATE: without the
	// initiator's INTERMEDIATE_EXCHANGE_SUPPORTED only its proposals that
	// can do without them count (RFC 9370 section 2.2.2).
	ies := msg.Notify(message.IntermediateExchangeSupported) != nil
	offered := sap.Proposals
	if !ies {
		offered = proposal.WithoutAddKE(offered)
	}
	chosen, err := proposal.Select(ours, offered, proposal.Options{})
	if err != nil {
		m.log.Warn("IKE_SA_INIT: no acceptable IKE proposal: answering NO_PROPOSAL_CHOSEN", zap.Stringer("from", from),
			zap.String("offered", proposal.FormatList(sap.Proposals)), zap.String("configured", proposal.FormatList(ours)),
			zap.String("hint", "make the proposals of both ends overlap"))
		m.respondInitError(h, from, natt, message.NewNotify(message.NoProposalChosen, nil))
		return
	}
	if proposal.KEMethod(chosen) != kep.Method {
		// Prefer a selection with the initiator's key exchange, which
		// saves a round trip; else ask for ours (INVALID_KE_PAYLOAD).
		if alt, err := proposal.Select(onlyKE(ours, kep.Method), onlyKE(offered, kep.Method), proposal.Options{}); err == nil {
			chosen = alt
		} else {
			want := proposal.KEMethod(chosen)
			m.log.Info("IKE_SA_INIT: the initiator's key exchange is not acceptable: answering INVALID_KE_PAYLOAD",
				zap.Stringer("from", from), zap.String("received", keName(kep.Method)), zap.String("requested", keName(want)))
			m.respondInitError(h, from, natt, message.NewInvalidKE(want))
			return
		}
	}
	suite, err := proposal.ResolveIKE(chosen)
	if err != nil {
		m.log.Warn("IKE_SA_INIT: selected proposal unusable: answering NO_PROPOSAL_CHOSEN", zap.Stringer("from", from), zap.Error(err))
		m.respondInitError(h, from, natt, message.NewNotify(message.NoProposalChosen, nil))
		return
	}
	pub, secret, err := kex.Respond(suite.KE, kep.Data)
	if err != nil {
		m.log.Info("IKE_SA_INIT: bad key exchange data: answering INVALID_SYNTAX", zap.Stringer("from", from), zap.Error(err))
		m.respondInitError(h, from, natt, message.NewNotify(message.InvalidSyntax, nil))
		return
	}

	sa := m.newSA(false)
	sa.spiI = h.SPIi
	sa.cands = cands
	sa.remote, sa.natt = from, natt
	sa.initKey, sa.initHashSum = key, hash
	sa.chosen, sa.suite = chosen, suite
	sa.ni, sa.nr = clone(nonce.Data), randomBytes(nonceLen)
	if err := sa.deriveKeys(secret); err != nil {
		m.log.Error("IKE_SA_INIT: key derivation failed", zap.Error(err))
		sa.destroy(err)
		m.respondInitError(h, from, natt, message.NewNotify(message.NoProposalChosen, nil))
		return
	}
	resp := []message.Payload{&message.SA{Proposals: []message.Proposal{*chosen}},
		&message.KE{Method: uint16(suite.KE), Data: pub}, &message.Nonce{Data: sa.nr}}
	resp = append(resp, natdPayloads(sa.spiI, sa.spiR, from)...)
	if msg.Notify(message.SignatureHashAlgorithms) != nil {
		resp = append(resp, sigHashNotify())
	}
	if cr := candidateCertReq(cands); cr != nil {
		resp = append(resp, cr)
	}
	sa.readSigHashes(msg)
	// Fragmentation is announced back only to an initiator that announced
	// it (RFC 7383 section 2.3).
	sa.frag.peer = msg.Notify(message.IKEv2FragmentationSupported) != nil
	if sa.frag.local = sa.frag.peer && announceFragmentation(cands...); sa.frag.local {
		resp = append(resp, message.NewNotify(message.IKEv2FragmentationSupported, nil))
	}
	if ies {
		resp = append(resp, message.NewNotify(message.IntermediateExchangeSupported, nil))
		sa.inter = &intermediate{pending: proposal.AddKEs(suite.AddKE)}
	}
	out := &message.Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: message.IKESAInit, Flags: message.FlagResponse, Payloads: resp}
	wire, err := out.Marshal()
	if err != nil {
		m.log.Error("encoding the IKE_SA_INIT response failed", zap.Error(err))
		sa.destroy(err)
		return
	}
	sa.initReq, sa.initResp = clone(b), wire
	sa.state = stateInitDone
	m.obs.HandshakeStarted(false)
	m.nHalf++
	m.halfOpen[key] = sa
	sa.nextPeerID = 1
	sa.checkNAT(msg, from, natt)
	sa.halfTimer = m.after(m.opts.HalfOpenTimeout, func() {
		if sa.state == stateInitDone {
			sa.warn("half-open IKE SA timed out: the initiator never completed IKE_AUTH")
			sa.destroy(fmt.Errorf("half-open IKE SA: %w", ErrTimeout))
		}
	})
	sa.info("IKE_SA_INIT answered", zap.String("proposal", proposal.Format(chosen)))
	m.queue(wire, from, natt)
}

// authFailed answers IKE_AUTH with AUTHENTICATION_FAILED and forgets the SA.
func (sa *ikeSA) authFailed(id uint32, err error) {
	sa.errorf("authentication of the initiator failed: answering AUTHENTICATION_FAILED", zap.Error(err))
	sa.m.stats.AuthFailed++
	sa.respond(message.IKEAuth, id, []message.Payload{message.NewNotify(message.AuthenticationFailed, nil)})
	sa.destroy(err)
}

// handleAuthRequest is the responder's IKE_AUTH.
func (sa *ikeSA) handleAuthRequest(msg *message.Message) {
	m := sa.m
	idi, _ := msg.Get(message.PayloadIDi).(*message.IDi)
	auth, _ := msg.Get(message.PayloadAUTH).(*message.Auth)
	if idi == nil || auth == nil {
		sa.warn("IKE_AUTH without IDi or AUTH (EAP is not supported): answering INVALID_SYNTAX")
		sa.respond(message.IKEAuth, msg.MessageID, []message.Payload{message.NewNotify(message.InvalidSyntax, nil)})
		sa.destroy(errors.New("IKE_AUTH without IDi or AUTH"))
		return
	}
	if sa.inter != nil && len(sa.inter.pending) > 0 {
		sa.warn("IKE_AUTH before the additional key exchanges: answering INVALID_SYNTAX", zap.Int("missing", len(sa.inter.pending)))
		sa.respond(message.IKEAuth, msg.MessageID, []message.Payload{message.NewNotify(message.InvalidSyntax, nil)})
		sa.destroy(errors.New("IKE_AUTH before the additional key exchanges"))
		return
	}
	sa.authMID = msg.MessageID
	idr, _ := msg.Get(message.PayloadIDr).(*message.IDr)
	// Pick the connection: its remote id must accept IDi and it must allow
	// the IKE proposal; one whose local id is the IDr asked for wins.
	var conn *Connection
	for pass := 0; pass < 2 && conn == nil; pass++ {
		for _, c := range sa.cands {
			if !c.remoteID.matches(&idi.Identity) {
				continue
			}
			if _, err := proposal.Select(c.Proposals, []message.Proposal{*sa.chosen}, proposal.Options{}); err != nil {
				continue
			}
			if pass == 0 && idr != nil && !c.localID.matches(&idr.Identity) {
				continue
			}
			conn = c
			break
		}
	}
	if conn == nil {
		ids := make([]string, len(sa.cands))
		for i, c := range sa.cands {
			ids[i] = c.Name + ": " + c.remoteID.String()
		}
		sa.authFailed(msg.MessageID, &AuthError{Detail: fmt.Sprintf("no connection accepts the peer's identity %s (%v); configured remote ids: %v",
			idi.Identity.String(), idi.IDType, ids)})
		return
	}
	sa.conn = conn
	sa.localID = conn.localID.id
	if err := sa.verifyPeerAuth(msg, &idi.Identity, auth, sa.initReq, sa.nr, sa.keys.Pi); err != nil {
		sa.authFailed(msg.MessageID, err)
		return
	}
	sa.remoteID = idi.Identity
	prf := sa.suite.PRF
	octets := ikecrypto.SignedOctets(prf, sa.keys.Pr, sa.initResp, sa.ni, &sa.localID, sa.intAuth())
	ours, err := sa.localAuth(octets, &sa.remoteID)
	if err != nil {
		sa.authFailed(msg.MessageID, fmt.Errorf("authenticating ourselves: %w", err))
		return
	}
	ps := append([]message.Payload{&message.IDr{Identity: sa.localID}}, ours...)
	sa.established()
	if cp, ok := getChildPayloads(msg); ok {
		cps, _, cerr := sa.acceptChild(msg, cp, sa.ni, sa.nr, false, nil)
		if cerr != nil {
			sa.warn("CHILD_SA refused: answering with "+cerr.Notify.String(), zap.String("reason", cerr.Detail),
				zap.String("hint", childHint(cerr.Notify)))
			ps = append(ps, message.NewNotify(cerr.Notify, cerr.Data))
			m.obs.ChildSAFailed(false, notifyReason(cerr.Notify))
		} else {
			ps = append(ps, cps...)
		}
	} else {
		sa.info("IKE_AUTH without a Child SA (childless)")
	}
	sa.respond(message.IKEAuth, msg.MessageID, ps)
	if msg.Notify(message.InitialContact) != nil {
		m.initialContact(sa)
	}
	if len(sa.children) == 0 && msg.Get(message.PayloadSA) != nil {
		// The initiator wanted a Child SA and got none: an IKE SA
		// without it would only linger (a childless IKE_AUTH, RFC 6023,
		// is another matter).
		sa.info("the Child SA of IKE_AUTH was refused: deleting the IKE SA")
		sa.deleteIKE()
	}
}

// handleCreateChildRequest is the responder's CREATE_CHILD_SA.
func (sa *ikeSA) handleCreateChildRequest(msg *message.Message) {
	refuse := func(t message.NotifyType, data []byte, why string) {
		sa.warn("CREATE_CHILD_SA refused: answering with "+t.String(), zap.String("reason", why))
		sa.respond(message.CreateChildSA, msg.MessageID, []message.Payload{message.NewNotify(t, data)})
	}
	if s, _ := msg.Get(message.PayloadSA).(*message.SA); s != nil && len(s.Proposals) > 0 && s.Proposals[0].Protocol == message.ProtoIKE {
		sa.handleIKERekeyRequest(msg, s)
		return
	}
	var old *childSA
	if n := msg.Notify(message.RekeySA); n != nil {
		spi, err := n.ChildSPI()
		if err != nil {
			refuse(message.InvalidSyntax, nil, "REKEY_SA without an SPI")
			return
		}
		if old = sa.childByOutSPI(spi); old == nil {
			if r := sa.retiredByOutSPI(spi); r != nil {
				// Already replaced: our own rekey of it won the race
				// (RFC 7296 section 2.8.1).
				refuse(message.TemporaryFailure, nil, fmt.Sprintf("CHILD_SA %08x is already rekeyed", spi))
				return
			}
			sa.warn("CREATE_CHILD_SA refused: answering with CHILD_SA_NOT_FOUND", zap.String("spi", fmt.Sprintf("%08x", spi)))
			sa.respond(message.CreateChildSA, msg.MessageID, []message.Payload{message.NewChildNotify(message.ChildSANotFound, message.ProtoESP, spi, nil)})
			return
		}
		if old.successor != nil || old.state != childInstalled {
			refuse(message.TemporaryFailure, nil, fmt.Sprintf("CHILD_SA %08x is already rekeyed or being deleted", spi))
			return
		}
	}
	cp, ok := getChildPayloads(msg)
	if !ok || cp.nonce == nil {
		refuse(message.InvalidSyntax, nil, "CREATE_CHILD_SA without SA, Nonce, TSi or TSr")
		return
	}
	nr := randomBytes(nonceLen)
	ps, c, cerr := sa.acceptChild(msg, cp, cp.nonce, nr, true, old)
	if cerr != nil {
		refuse(cerr.Notify, cerr.Data, cerr.Detail)
		return
	}
	if old != nil && c != nil {
		sa.rekeyedByPeer(old, c)
	}
	sa.respond(message.CreateChildSA, msg.MessageID, ps)
}
