package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
	"github.com/goipsec/goipsec/ike/ts"
	"github.com/goipsec/goipsec/sad"
)

// childState is the state of a Child SA.
type childState uint8

const (
	childInstalled childState = iota + 1
	childDeleting             // our DELETE is out
	childDead
)

// childSA is an installed Child SA pair.
type childSA struct {
	ike           *ikeSA // the IKE SA it belongs to (changes with an IKE SA rekey)
	cfg           *Child
	id            sad.ChildID
	state         childState
	spiIn, spiOut uint32
	mode          sad.Mode
	local, remote []ts.Selector
	proposal      string
	established   time.Time

	// Rekeying (RFC 7296 sections 1.3.3 and 2.8).
	rekeying   bool      // our CREATE_CHILD_SA with REKEY_SA is in flight
	successor  *childSA  // the SA that replaces this one
	pending    *ChildSA  // responder of a rekey: outbound not switched yet (own key copies)
	nonces     [2][]byte // Ni, Nr of the exchange that made the SA
	weInit     bool      // we initiated the exchange that made the SA
	rekeyTimer Timer     // rekey_time
	lifeTimer  Timer     // life_time
	rekeyAt    time.Time // when rekeyTimer fires (listings)
	expireAt   time.Time // when lifeTimer fires (listings)
	takenOver  bool      // replaced by a reauthentication, graceTimer the fallback
	graceTimer Timer     // removal of a replaced SA's inbound SA
	switchTmr  Timer     // fallback switch of a pending outbound SA
}

// childNeg is a Child SA negotiation we started.
type childNeg struct {
	cfg       *Child
	spiIn     uint32
	offered   []message.Proposal // as sent, with our SPI
	tsi, tsr  []ts.Selector
	transport bool
	ni        []byte       // CREATE_CHILD_SA: our nonce
	ke        kex.Exchange // CREATE_CHILD_SA with PFS
	retried   bool         // sent again after INVALID_KE_PAYLOAD
	rekey     *childSA     // the Child SA this negotiation rekeys
}

// ChildError is a Child SA negotiation refused by one side, with the
// notification that says why (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE, ...).
type ChildError struct {
	Notify message.NotifyType
	Data   []byte // notification data, e.g. the group of INVALID_KE_PAYLOAD
	Detail string
}

// Error names the notification and the reason.
func (e *ChildError) Error() string {
	if e.Detail == "" {
		return e.Notify.String()
	}
	return e.Notify.String() + ": " + e.Detail
}

// AuthError reports failed authentication of either side.
type AuthError struct {
	Detail string
	// Err, if set, is the cause (ErrCertExpired, ErrCertUntrusted,
	// ErrIdentityMismatch, ErrBadSignature, ...).
	Err error
}

// Error says that authentication failed, and why.
func (e *AuthError) Error() string { return "AUTHENTICATION_FAILED: " + e.Detail }

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// isChildError reports whether a notification refuses only the Child SA
// (RFC 7296 section 1.2: the IKE SA stands).
func isChildError(t message.NotifyType) bool {
	switch t {
	case message.NoProposalChosen, message.TSUnacceptable, message.SinglePairRequired,
		message.InternalAddressFailure, message.FailedCPRequired, message.InvalidSelectors,
		message.NoAdditionalSAs:
		return true
	}
	return false
}

// firstError returns the first error notification of msg (types below
// 16384), or nil.
func firstError(msg *message.Message) *message.Notify {
	for _, n := range msg.Notifies() {
		if n.NotifyType < 16384 {
			return n
		}
	}
	return nil
}

// allocSPI reserves a fresh inbound ESP SPI.
func (m *Manager) allocSPI() (uint32, error) {
	spi, err := m.inst.AllocateSPI(func(s uint32) bool { return m.reserved[s] })
	if err != nil {
		return 0, err
	}
	m.reserved[spi] = true
	return spi, nil
}

// selectors returns a child's configured selectors for this SA, with
// dynamic ones resolved to the IKE SA's addresses.
func (sa *ikeSA) selectors(ch *Child) (local, remote []ts.Selector, err error) {
	if local = ch.LocalTS; local == nil {
		a, ok := sa.localAddr()
		if !ok {
			return nil, nil, errors.New("local_ts is dynamic but our address towards the peer is unknown: set local_addrs")
		}
		local = []ts.Selector{ts.Host(a)}
	}
	if remote = ch.RemoteTS; remote == nil {
		remote = []ts.Selector{ts.Host(sa.remote.Addr())}
	}
	return local, remote, nil
}

// newChildNeg starts negotiating ch: it reserves our SPI and returns the
// payloads of the request (the Child SA part of IKE_AUTH, or of
// CREATE_CHILD_SA with pfs allowing a key exchange).
func (sa *ikeSA) newChildNeg(ch *Child, createChild bool) (*childNeg, []message.Payload, error) {
	local, remote, err := sa.selectors(ch)
	if err != nil {
		return nil, nil, err
	}
	spi, err := sa.m.allocSPI()
	if err != nil {
		return nil, nil, err
	}
	n := &childNeg{cfg: ch, spiIn: spi, tsi: local, tsr: remote, transport: ch.Mode == sad.Transport}
	props := ch.Proposals
	if !createChild {
		props = proposal.StripKE(props)
	}
	for _, p := range props {
		c := p.Clone()
		c.SPI = binary.BigEndian.AppendUint32(nil, spi)
		n.offered = append(n.offered, c)
	}
	var ps []message.Payload
	if n.transport {
		ps = append(ps, message.NewNotify(message.UseTransportMode, nil))
	}
	ps = append(ps, &message.SA{Proposals: n.offered})
	if createChild {
		n.ni = randomBytes(nonceLen)
		ps = append(ps, &message.Nonce{Data: n.ni})
		if ke := proposal.KEMethod(&n.offered[0]); ke != 0 {
			if n.ke, err = kex.NewInitiator(kex.ID(ke)); err != nil {
				delete(sa.m.reserved, spi)
				return nil, nil, err
			}
			ps = append(ps, &message.KE{Method: ke, Data: n.ke.PublicValue()})
		}
	}
	ps = append(ps, &message.TSi{Selectors: n.tsi}, &message.TSr{Selectors: n.tsr})
	return n, ps, nil
}

// release gives up a negotiation's reserved SPI.
func (n *childNeg) release(m *Manager) { delete(m.reserved, n.spiIn) }

// childPayloads are the Child SA payloads of a request or response.
type childPayloads struct {
	sa        *message.SA
	tsi, tsr  []ts.Selector
	transport bool
	nonce     []byte
	ke        *message.KE
}

func getChildPayloads(msg *message.Message) (childPayloads, bool) {
	var c childPayloads
	s, _ := msg.Get(message.PayloadSA).(*message.SA)
	tsi, _ := msg.Get(message.PayloadTSi).(*message.TSi)
	tsr, _ := msg.Get(message.PayloadTSr).(*message.TSr)
	if s == nil || tsi == nil || tsr == nil {
		return c, false
	}
	c.sa, c.tsi, c.tsr = s, tsi.Selectors, tsr.Selectors
	c.transport = msg.Notify(message.UseTransportMode) != nil
	if n, ok := msg.Get(message.PayloadNonce).(*message.Nonce); ok {
		c.nonce = n.Data
	}
	c.ke, _ = msg.Get(message.PayloadKE).(*message.KE)
	return c, true
}

// completeChild finishes a negotiation we started from the peer's response:
// it checks the responder's choices against what we offered and installs
// the Child SA. ni and nr are the nonces of the exchange, secret the PFS
// shared secret (or nil).
func (sa *ikeSA) completeChild(n *childNeg, resp *message.Message, ni, nr, secret []byte, createChild bool) (*childSA, error) {
	cp, ok := getChildPayloads(resp)
	if !ok {
		return nil, &ChildError{Notify: message.InvalidSyntax, Detail: "response lacks SA, TSi or TSr"}
	}
	if len(cp.sa.Proposals) != 1 {
		return nil, &ChildError{Notify: message.InvalidSyntax, Detail: fmt.Sprintf("response carries %d proposals, want 1", len(cp.sa.Proposals))}
	}
	chosen := &cp.sa.Proposals[0]
	if err := proposal.CheckSelection(n.offered, chosen, proposal.Options{SkipKE: !createChild}); err != nil {
		return nil, &ChildError{Notify: message.NoProposalChosen, Detail: "the peer chose a proposal we did not offer: " + err.Error()}
	}
	suite, err := proposal.ResolveChild(chosen)
	if err != nil {
		return nil, &ChildError{Notify: message.NoProposalChosen, Detail: err.Error()}
	}
	spiOut, ok := chosen.SPI32()
	if !ok || spiOut < 256 {
		return nil, &ChildError{Notify: message.InvalidSyntax, Detail: "the peer's SPI is missing or reserved"}
	}
	if !ts.Subset(cp.tsi, n.tsi) || !ts.Subset(cp.tsr, n.tsr) || len(cp.tsi) == 0 || len(cp.tsr) == 0 {
		return nil, &ChildError{Notify: message.TSUnacceptable, Detail: fmt.Sprintf("the peer narrowed to %v === %v, outside what we proposed (%v === %v)", cp.tsi, cp.tsr, n.tsi, n.tsr)}
	}
	mode := sad.Tunnel
	if n.transport {
		if !cp.transport {
			return nil, &ChildError{Notify: message.NoProposalChosen, Detail: "we asked for transport mode and the peer answered with tunnel mode"}
		}
		mode = sad.Transport
	}
	if err := checkTransport(mode, cp.tsi, cp.tsr); err != nil {
		return nil, &ChildError{Notify: message.TSUnacceptable, Detail: err.Error()}
	}
	c, err := sa.installChild(n.cfg, n.spiIn, spiOut, chosen, suite, mode, cp.tsi, cp.tsr, ni, nr, secret, true, n.rekey)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkTransport checks that transport mode protects host to host.
func checkTransport(mode sad.Mode, local, remote []ts.Selector) error {
	if mode != sad.Transport {
		return nil
	}
	if len(local) != 1 || len(remote) != 1 || local[0].Start != local[0].End || remote[0].Start != remote[0].End {
		return errors.New("transport mode protects one host to one host: the selectors must be single addresses")
	}
	return nil
}

// installChild derives the keys of a negotiated Child SA and installs it.
// weInitiated says whether we started the exchange that made it; the
// selectors are as in the exchange (TSi, TSr).
func (sa *ikeSA) installChild(cfg *Child, spiIn, spiOut uint32, chosen *message.Proposal, suite *proposal.ChildSuite,
	mode sad.Mode, tsi, tsr []ts.Selector, ni, nr, secret []byte, weInitiated bool, old *childSA) (*childSA, error) {
	m := sa.m
	delete(m.reserved, spiIn)
	var secrets [][]byte
	if secret != nil {
		secrets = append(secrets, secret)
	}
	keys, err := ikecrypto.DeriveChildKeys(sa.suite.PRF, sa.keys.D, suite.Enc, suite.Integ, ni, nr, secrets...)
	if err != nil {
		return nil, fmt.Errorf("deriving Child SA keys: %w", err)
	}
	defer keys.Zero()
	local, remote := tsi, tsr
	inEnc, inInteg, outEnc, outInteg := keys.EncR, keys.IntegR, keys.EncI, keys.IntegI
	if !weInitiated {
		local, remote = tsr, tsi
		inEnc, inInteg, outEnc, outInteg = keys.EncI, keys.IntegI, keys.EncR, keys.IntegR
	}
	if old == nil && weInitiated && sa.reauthOf != nil {
		old = sa.reauthOf.reauthChild(cfg)
	}
	var id sad.ChildID
	if old != nil {
		id = old.id
	} else {
		id = m.childIDFor(cfg)
	}
	c := &childSA{ike: sa, cfg: cfg, id: id, state: childInstalled, spiIn: spiIn, spiOut: spiOut, mode: mode,
		local: local, remote: remote, proposal: proposal.Format(chosen), established: m.clock.Now(),
		nonces: [2][]byte{clone(ni), clone(nr)}, weInit: weInitiated}
	window := cfg.ReplayWindow
	cs := &ChildSA{ID: id, Connection: cfg.conn.Name, Child: cfg.Name, Mode: mode, Local: local, Remote: remote, Peer: sa.espPeer(), Lifetime: cfg.saLifetime(),
		In:  esp.Config{SPI: spiIn, Enc: suite.Enc, EncKey: inEnc, Integ: suite.Integ, IntegKey: inInteg, ESN: suite.ESN, ReplayWindow: window},
		Out: esp.Config{SPI: spiOut, Enc: suite.Enc, EncKey: outEnc, Integ: suite.Integ, IntegKey: outInteg, ESN: suite.ESN}}
	if m.opts.KeyHook != nil {
		m.opts.KeyHook(KeyMaterial{Connection: cfg.conn.Name, Child: cfg.Name, SPIi: sa.spiI, SPIr: sa.spiR, Initiator: weInitiated,
			ChildKeys: &ikecrypto.ChildKeys{EncI: clone(keys.EncI), IntegI: clone(keys.IntegI), EncR: clone(keys.EncR), IntegR: clone(keys.IntegR)},
			SPIIn:     spiIn, SPIOut: spiOut})
	}
	switch {
	case old == nil:
		if err := m.inst.Install(cs); err != nil {
			m.releaseChildID(cfg, id)
			return nil, fmt.Errorf("installing the Child SA: %w", err)
		}
	case weInitiated && collision(old) != nil && lostCollision(ni, nr, collision(old)):
		// The peer rekeyed it too and its SA wins (RFC 7296 section
		// 2.8.1): ours is deleted at once, we never send on it.
		if err := m.inst.InstallInbound(cs); err != nil {
			return nil, fmt.Errorf("installing the rekeyed Child SA: %w", err)
		}
	case weInitiated:
		// The responder accepts the new SA already: inbound and
		// outbound switch at once.
		if err := m.inst.Install(cs); err != nil {
			return nil, fmt.Errorf("installing the rekeyed Child SA: %w", err)
		}
		m.children[id] = c
	default:
		// Make-before-break: accept the new SA now, send on it once the
		// initiator deletes the old one.
		if err := m.inst.InstallInbound(cs); err != nil {
			return nil, fmt.Errorf("installing the rekeyed Child SA: %w", err)
		}
		p := *cs
		p.In = esp.Config{}
		p.Out.EncKey, p.Out.IntegKey = clone(cs.Out.EncKey), clone(cs.Out.IntegKey)
		c.pending = &p
	}
	if old == nil {
		m.children[id] = c
	}
	sa.children = append(sa.children, c)
	sa.armRekey(c)
	if old != nil && old.ike != sa {
		sa.tookOver(old, c)
	}
	what := "CHILD_SA established"
	if old != nil {
		what = "CHILD_SA rekeyed"
		m.obs.Rekeyed(RekeyChild, weInitiated)
	}
	sa.info(what, zap.String("child", cfg.FullName()), zap.Uint32("child_id", uint32(id)),
		zap.String("spi_in", fmt.Sprintf("%08x", spiIn)), zap.String("spi_out", fmt.Sprintf("%08x", spiOut)),
		zap.Stringer("mode", mode), zap.String("proposal", c.proposal),
		zap.Stringers("local_ts", local), zap.Stringers("remote_ts", remote), zap.Stringer("esp_peer", cs.Peer))
	return c, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// childIDFor returns the ID a new Child SA of cfg is installed under: the
// trap's, taking over its policies, or a fresh one.
func (m *Manager) childIDFor(cfg *Child) sad.ChildID {
	if id, ok := m.traps[cfg]; ok {
		delete(m.traps, cfg)
		return id
	}
	return m.allocChildID()
}

// releaseChildID undoes childIDFor after a failed installation.
func (m *Manager) releaseChildID(cfg *Child, id sad.ChildID) {
	delete(m.children, id)
	if cfg.StartAction == StartTrap {
		m.installTrapID(cfg, id)
	}
}

// removeChild removes a Child SA from the dataplane; a trapped child gets
// its trap policies back.
func (sa *ikeSA) removeChild(c *childSA) {
	if c.state == childDead {
		sa.unlist(c)
		return
	}
	m := sa.m
	c.state = childDead
	c.stopTimers()
	if cur, _ := m.children[c.id].(*childSA); cur != c {
		// Not the SA the child ID stands for (a rekey replaced it, or
		// it lost a collision): only its inbound SA goes.
		m.inst.RemoveInbound(c.id, c.spiIn)
		sa.unlist(c)
		return
	}
	for _, o := range append(sa.children, sa.retired...) {
		if o != c && o.id == c.id {
			o.state = childDead
			o.stopTimers()
			sa.unlist(o)
		}
	}
	m.inst.Remove(c.id)
	delete(m.children, c.id)
	if c.cfg.StartAction == StartTrap && !m.childUp(c.cfg) {
		if _, ok := m.traps[c.cfg]; !ok {
			m.installTrapID(c.cfg, c.id)
		}
	}
	sa.unlist(c)
}

// installTrapID installs a child's trap policies under a given ID.
func (m *Manager) installTrapID(ch *Child, id sad.ChildID) {
	local, remote, err := m.trapSelectors(ch)
	if err == nil {
		err = m.inst.Trap(id, ch.FullName(), local, remote)
	}
	if err != nil {
		m.log.Error("reinstalling trap policy failed", zap.String("child", ch.FullName()), zap.Error(err))
		return
	}
	m.traps[ch] = id
	m.children[id] = trapMarker{ch}
}

// acceptChild is the responder's side of a Child SA negotiation: it picks
// the child of the connection whose selectors fit the initiator's, narrows
// them, selects a proposal and installs the Child SA. It returns the
// payloads of the response, or the error notification to send instead.
func (sa *ikeSA) acceptChild(req *message.Message, cp childPayloads, ni, nr []byte, createChild bool, old *childSA) ([]message.Payload, *childSA, *ChildError) {
	var (
		cfg      *Child
		tsi, tsr []ts.Selector
		reason   error
	)
	for _, ch := range sa.conn.Children {
		if old != nil && ch != old.cfg {
			continue
		}
		local, remote, err := sa.selectors(ch)
		if err != nil {
			reason = err
			continue
		}
		if tsi, tsr, err = ts.NarrowResponder(cp.tsi, cp.tsr, remote, local); err == nil {
			cfg = ch
			break
		}
	}
	if cfg == nil {
		detail := fmt.Sprintf("no child of %s covers TSi %v, TSr %v", sa.conn.Name, cp.tsi, cp.tsr)
		if reason != nil {
			detail += " (" + reason.Error() + ")"
		}
		return nil, nil, &ChildError{Notify: message.TSUnacceptable, Detail: detail}
	}
	ours := cfg.Proposals
	if !createChild {
		ours = proposal.StripKE(ours)
	}
	chosen, err := proposal.Select(ours, cp.sa.Proposals, proposal.Options{SkipKE: !createChild})
	if err == nil && createChild && cp.ke != nil && proposal.KEMethod(chosen) != cp.ke.Method {
		// Take the initiator's key exchange if we accept it too.
		if alt, err := proposal.Select(onlyKE(ours, cp.ke.Method), onlyKE(cp.sa.Proposals, cp.ke.Method), proposal.Options{}); err == nil {
			chosen = alt
		}
	}
	if err != nil {
		return nil, nil, &ChildError{Notify: message.NoProposalChosen, Detail: fmt.Sprintf("child %s: the peer offered %s, we accept %s",
			cfg.FullName(), proposal.FormatList(cp.sa.Proposals), proposal.FormatList(ours))}
	}
	suite, err := proposal.ResolveChild(chosen)
	if err != nil {
		return nil, nil, &ChildError{Notify: message.NoProposalChosen, Detail: err.Error()}
	}
	spiOut, ok := chosen.SPI32()
	if !ok || spiOut < 256 {
		return nil, nil, &ChildError{Notify: message.InvalidSyntax, Detail: "the peer's SPI is missing or reserved"}
	}
	mode := sad.Tunnel
	if cp.transport && cfg.Mode == sad.Transport {
		mode = sad.Transport
	} else if cfg.Mode == sad.Transport {
		sa.warn("child is configured for transport mode, but the initiator asked for tunnel mode: using tunnel mode", zap.String("child", cfg.FullName()))
	}
	if err := checkTransport(mode, tsi, tsr); err != nil {
		return nil, nil, &ChildError{Notify: message.TSUnacceptable, Detail: err.Error()}
	}
	var secret []byte
	var kePayload *message.KE
	if createChild {
		if suite.KE != kex.None {
			if cp.ke == nil || kex.ID(cp.ke.Method) != suite.KE {
				return nil, nil, &ChildError{Notify: message.InvalidKEPayload, Data: message.NewInvalidKE(uint16(suite.KE)).Data,
					Detail: "the initiator's key exchange is not the selected " + keName(uint16(suite.KE))}
			}
			pub, s, err := kex.Respond(suite.KE, cp.ke.Data)
			if err != nil {
				return nil, nil, &ChildError{Notify: message.InvalidSyntax, Detail: err.Error()}
			}
			secret, kePayload = s, &message.KE{Method: uint16(suite.KE), Data: pub}
			defer clear(secret)
		}
	}
	spiIn, err := sa.m.allocSPI()
	if err != nil {
		return nil, nil, &ChildError{Notify: message.NoAdditionalSAs, Detail: err.Error()}
	}
	resp := chosen.Clone()
	resp.SPI = binary.BigEndian.AppendUint32(nil, spiIn)
	c, err := sa.installChild(cfg, spiIn, spiOut, chosen, suite, mode, tsi, tsr, ni, nr, secret, false, old)
	if err != nil {
		sa.errorf("installing the Child SA failed", zap.String("child", cfg.FullName()), zap.Error(err))
		return nil, nil, &ChildError{Notify: message.NoAdditionalSAs, Detail: err.Error()}
	}
	var ps []message.Payload
	if mode == sad.Transport {
		ps = append(ps, message.NewNotify(message.UseTransportMode, nil))
	}
	ps = append(ps, &message.SA{Proposals: []message.Proposal{resp}})
	if createChild {
		ps = append(ps, &message.Nonce{Data: nr})
		if kePayload != nil {
			ps = append(ps, kePayload)
		}
	}
	ps = append(ps, &message.TSi{Selectors: tsi}, &message.TSr{Selectors: tsr})
	return ps, c, nil
}
