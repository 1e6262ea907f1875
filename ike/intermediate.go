package ike

import (
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
)

// Hybrid key exchange during IKE SA setup (RFC 9242 and RFC 9370): when
// both ends announce INTERMEDIATE_EXCHANGE_SUPPORTED in IKE_SA_INIT and the
// selected proposal has additional key exchanges (ADDKE1..7, e.g.
// ke1_mlkem768), the initiator runs one IKE_INTERMEDIATE exchange per
// additional key exchange before IKE_AUTH, each carrying a KE payload.
// After each, both ends update all keys: SKEYSEED(n) = prf(SK_d(n-1),
// SK(n) | Ni | Nr). The exchanges are bound into the AUTH payloads by
// IntAuth.

// intermediate is the IKE_INTERMEDIATE state of an IKE SA being set up.
type intermediate struct {
	pending  []kex.ID     // additional key exchanges still to run, in order
	ex       kex.Exchange // initiator: the exchange in flight
	intAuthI []byte       // IntAuth_i of the exchanges so far
	intAuthR []byte       // IntAuth_r
	done     int          // IKE_INTERMEDIATE exchanges completed
	next     *updatedKeys // responder: keys to use from the next request on
}

// updatedKeys are an IKE SA's keys after an additional key exchange.
type updatedKeys struct {
	keys     *ikecrypto.IKEKeys
	in, out  *ikecrypto.Cipher
	skeyseed []byte
}

func (u *updatedKeys) zero() {
	u.keys.Zero()
	u.in.Zero()
	u.out.Zero()
	clear(u.skeyseed)
}

// intAuth returns the IntAuth value for the AUTH payloads, nil when no
// IKE_INTERMEDIATE exchange took place.
func (sa *ikeSA) intAuth() []byte {
	if sa.inter == nil || sa.inter.done == 0 {
		return nil
	}
	return ikecrypto.IntAuth(sa.inter.intAuthI, sa.inter.intAuthR, sa.authMID)
}

// addKEHint explains a NO_PROPOSAL_CHOSEN to our proposals when each of
// them has additional key exchange transforms (even ke1_none), which a
// peer without RFC 9370 refuses as unknown transform types.
func addKEHint(offered []message.Proposal) string {
	for _, p := range offered {
		if !slices.ContainsFunc(p.Transforms, func(t message.Transform) bool {
			return t.Type >= message.TransformAddKE1 && t.Type <= message.TransformAddKE7
		}) {
			return ""
		}
	}
	if len(offered) == 0 {
		return ""
	}
	return "; every proposal has additional key exchanges (ke1_...), which a peer without RFC 9370 refuses: add a classic proposal of its own after the hybrid one to fall back"
}

// afterInit continues the initiator's setup after IKE_SA_INIT: the
// additional key exchanges if any were selected, then IKE_AUTH.
func (sa *ikeSA) afterInit(resp *message.Message) {
	adds := proposal.AddKEs(sa.suite.AddKE)
	if len(adds) == 0 {
		if proposal.HasAddKE(sa.offered) {
			sa.info("the responder chose a proposal without an additional key exchange (no post-quantum key exchange)",
				zap.String("proposal", proposal.Format(sa.chosen)),
				zap.Bool("peer_supports_intermediate", resp.Notify(message.IntermediateExchangeSupported) != nil))
		}
		sa.sendAuth()
		return
	}
	if resp.Notify(message.IntermediateExchangeSupported) == nil {
		sa.fail(errors.New("the responder selected additional key exchanges without announcing IKE_INTERMEDIATE support (INTERMEDIATE_EXCHANGE_SUPPORTED)"))
		return
	}
	sa.inter = &intermediate{pending: adds}
	sa.sendIntermediate()
}

// sendIntermediate sends the IKE_INTERMEDIATE request of the next
// additional key exchange.
func (sa *ikeSA) sendIntermediate() {
	in := sa.inter
	id := in.pending[0]
	ex, err := kex.NewInitiator(id)
	if err != nil {
		sa.fail(fmt.Errorf("additional key exchange %s: %w", keName(uint16(id)), err))
		return
	}
	in.ex = ex
	ps := []message.Payload{&message.KE{Method: uint16(id), Data: ex.PublicValue()}}
	// Nothing else is sent before IKE_AUTH: the request goes out now,
	// with the next message ID.
	if sa.pending != nil || len(sa.queued) > 0 {
		sa.fail(errors.New("IKE_INTERMEDIATE: another request is in flight"))
		return
	}
	oct, err := sa.intAuthSent(message.IKEIntermediate, sa.nextReqID, false, ps)
	if err != nil {
		sa.fail(err)
		return
	}
	in.intAuthI = ikecrypto.NextIntAuth(sa.suite.PRF, sa.keys.Pi, in.intAuthI, oct)
	sa.m.log.Debug("IKE_INTERMEDIATE: additional key exchange", sa.logFields(zap.String("method", keName(uint16(id))), zap.Int("round", in.done+1))...)
	sa.sendRequest(message.IKEIntermediate, ps, sa.handleIntermediateResponse,
		func() { sa.fail(fmt.Errorf("IKE_INTERMEDIATE: %w", ErrTimeout)) })
}

// intAuthSent returns the IntAuth octets of a message we send.
func (sa *ikeSA) intAuthSent(ex message.ExchangeType, mid uint32, response bool, ps []message.Payload) ([]byte, error) {
	oct, err := ikecrypto.IntAuthOfMessage(&message.Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: ex, Flags: sa.flags(response), MessageID: mid, Payloads: ps})
	if err != nil {
		return nil, fmt.Errorf("IntAuth of our %v message: %w", ex, err)
	}
	return oct, nil
}

// intAuthReceived returns the IntAuth octets of a message the peer sent:
// from the datagram as received when one carried it whole, else (raw nil,
// or a fragment: reassembled) from its payloads.
func (sa *ikeSA) intAuthReceived(msg *message.Message, raw []byte) ([]byte, error) {
	if h, err := message.ParseHeader(raw); err == nil && h.NextPayload == message.PayloadSK {
		return ikecrypto.IntAuthFromWire(raw, sa.in)
	}
	return ikecrypto.IntAuthOfMessage(msg)
}

// handleIntermediateResponse completes one additional key exchange.
func (sa *ikeSA) handleIntermediateResponse(msg *message.Message, raw []byte) {
	in := sa.inter
	if sa.state != stateInitSent || in == nil || in.ex == nil {
		return
	}
	if n := firstError(msg); n != nil {
		sa.fail(fmt.Errorf("the peer answered IKE_INTERMEDIATE with %v", n.NotifyType))
		return
	}
	id := in.pending[0]
	kep, _ := msg.Get(message.PayloadKE).(*message.KE)
	if kep == nil || kex.ID(kep.Method) != id {
		sa.fail(fmt.Errorf("INVALID_SYNTAX: the IKE_INTERMEDIATE response lacks the KE payload of %s", keName(uint16(id))))
		return
	}
	secret, err := in.ex.SharedSecret(kep.Data)
	in.ex = nil
	if err != nil {
		sa.fail(fmt.Errorf("the responder's %s KE payload: %w", keName(uint16(id)), err))
		return
	}
	oct, err := sa.intAuthReceived(msg, raw)
	if err != nil {
		clear(secret)
		sa.fail(fmt.Errorf("IntAuth of the IKE_INTERMEDIATE response: %w", err))
		return
	}
	in.intAuthR = ikecrypto.NextIntAuth(sa.suite.PRF, sa.keys.Pr, in.intAuthR, oct)
	in.done++
	in.pending = in.pending[1:]
	if err := sa.updateKeys(secret); err != nil {
		sa.fail(err)
		return
	}
	if len(in.pending) > 0 {
		sa.sendIntermediate()
		return
	}
	sa.sendAuth()
}

// handleIntermediateRequest is the responder's IKE_INTERMEDIATE: it
// answers the initiator's KE payload of the next additional key exchange
// and updates the keys once the answer is out.
func (sa *ikeSA) handleIntermediateRequest(msg *message.Message, raw []byte) {
	in := sa.inter
	bad := func(why string) {
		sa.warn("IKE_INTERMEDIATE request refused: answering INVALID_SYNTAX", zap.String("reason", why))
		sa.respond(message.IKEIntermediate, msg.MessageID, []message.Payload{message.NewNotify(message.InvalidSyntax, nil)})
		sa.destroy(errors.New("IKE_INTERMEDIATE: " + why))
	}
	if in == nil {
		bad("IKE_INTERMEDIATE was not negotiated (no INTERMEDIATE_EXCHANGE_SUPPORTED)")
		return
	}
	oct, err := sa.intAuthReceived(msg, raw)
	if err != nil {
		bad("IntAuth: " + err.Error())
		return
	}
	kep, _ := msg.Get(message.PayloadKE).(*message.KE)
	var (
		ps     []message.Payload
		secret []byte
	)
	switch {
	case len(in.pending) > 0:
		id := in.pending[0]
		if kep == nil || kex.ID(kep.Method) != id {
			bad("the request lacks the KE payload of the selected " + keName(uint16(id)))
			return
		}
		pub, s, err := kex.Respond(id, kep.Data)
		if err != nil {
			bad(err.Error())
			return
		}
		secret = s
		ps = []message.Payload{&message.KE{Method: uint16(id), Data: pub}}
	case kep != nil:
		bad("a KE payload after all selected key exchanges")
		return
	}
	octR, err := sa.intAuthSent(message.IKEIntermediate, msg.MessageID, true, ps)
	if err != nil {
		clear(secret)
		bad(err.Error())
		return
	}
	in.intAuthI = ikecrypto.NextIntAuth(sa.suite.PRF, sa.keys.Pi, in.intAuthI, oct)
	in.intAuthR = ikecrypto.NextIntAuth(sa.suite.PRF, sa.keys.Pr, in.intAuthR, octR)
	sa.respond(message.IKEIntermediate, msg.MessageID, ps)
	in.done++
	if secret != nil {
		// The new keys apply from the initiator's next request on: until
		// then a retransmission of this one (or of its fragments) still
		// authenticates with the old keys.
		in.pending = in.pending[1:]
		u, err := sa.deriveUpdate(secret)
		if err != nil {
			sa.errorf("IKE_INTERMEDIATE key update failed", zap.Error(err))
			sa.destroy(err)
			return
		}
		in.next = u
	}
}

// applyKeyUpdate switches the responder to the keys of the last additional
// key exchange, if not done yet: called for each new request.
func (sa *ikeSA) applyKeyUpdate() {
	if sa.inter == nil || sa.inter.next == nil {
		return
	}
	u := sa.inter.next
	sa.inter.next = nil
	sa.useKeys(u)
}

// dropIntermediate forgets the IKE_INTERMEDIATE state and zeroes keys not
// applied yet.
func (sa *ikeSA) dropIntermediate() {
	if sa.inter != nil && sa.inter.next != nil {
		sa.inter.next.zero()
	}
	sa.inter = nil
}

// updateKeys replaces the IKE SA's keys after an additional key exchange
// with the shared secret (zeroed here), and zeroes the old keys.
func (sa *ikeSA) updateKeys(secret []byte) error {
	u, err := sa.deriveUpdate(secret)
	if err != nil {
		return err
	}
	sa.useKeys(u)
	return nil
}

// deriveUpdate computes the keys after an additional key exchange with the
// shared secret (zeroed here).
func (sa *ikeSA) deriveUpdate(secret []byte) (*updatedKeys, error) {
	defer clear(secret)
	s := &sa.suite.Suite
	keys, skeyseed, err := ikecrypto.UpdateIKEKeys(s, sa.keys, secret, sa.ni, sa.nr, sa.spiI, sa.spiR)
	if err != nil {
		return nil, fmt.Errorf("updating the IKE SA keys: %w", err)
	}
	ci, cr, err := ikecrypto.NewIKECiphers(s, keys)
	if err != nil {
		keys.Zero()
		clear(skeyseed)
		return nil, fmt.Errorf("IKE SA ciphers: %w", err)
	}
	u := &updatedKeys{keys: keys, skeyseed: skeyseed, out: ci, in: cr}
	if !sa.initiator {
		u.out, u.in = cr, ci
	}
	return u, nil
}

// useKeys makes u the IKE SA's keys and zeroes the old ones.
func (sa *ikeSA) useKeys(u *updatedKeys) {
	defer clear(u.skeyseed)
	sa.keys.Zero()
	sa.in.Zero()
	sa.out.Zero()
	sa.keys, sa.in, sa.out = u.keys, u.in, u.out
	sa.m.log.Debug("IKE SA keys updated after an additional key exchange", sa.logFields(zap.Int("round", sa.inter.done))...)
	sa.reportIKEKeys(u.skeyseed)
}
