package ike

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/ike/proposal"
)

// Additional key exchanges in CREATE_CHILD_SA (RFC 9370 section 2.2.4):
// the responder answers a CREATE_CHILD_SA whose selected proposal has
// ADDKE transforms with an ADDITIONAL_KEY_EXCHANGE notification carrying
// link data; the initiator then runs one IKE_FOLLOWUP_KE exchange per
// additional key exchange, each with the link data of the previous
// response and a KE payload. The Child SA (or the new IKE SA) is made only
// after the last one, from all shared secrets in order:
// KEYMAT = prf+(SK_d, SK(0) | SK(1) | ... | Ni | Nr), and SKEYSEED =
// prf(SK_d, SK(0) | SK(1) | ... | Ni | Nr) for an IKE SA rekey.

// followupTimeout bounds how long the responder keeps the state of a
// CREATE_CHILD_SA waiting for the initiator's IKE_FOLLOWUP_KE.
const followupTimeout = 30 * time.Second

// followup is an IKE_FOLLOWUP_KE sequence the responder awaits.
type followup struct {
	pending []kex.ID // additional key exchanges still to run
	secrets []byte   // SK(0) | SK(1) | ... so far
	finish  func(secrets []byte) error
	abort   func()
	timer   Timer
}

// awaitFollowup records the responder's state after answering a
// CREATE_CHILD_SA with additional key exchanges: finish runs with all
// shared secrets after the last IKE_FOLLOWUP_KE, abort if the sequence
// fails. secret is SK(0), the CREATE_CHILD_SA's own shared secret (nil
// without one); it is taken over. The returned notification goes into the
// response.
func (sa *ikeSA) awaitFollowup(adds []kex.ID, secret []byte, finish func([]byte) error, abort func()) *message.Notify {
	if sa.followups == nil {
		sa.followups = map[string]*followup{}
	}
	f := &followup{pending: adds, secrets: secret, finish: finish, abort: abort}
	return sa.linkFollowup(f)
}

// linkFollowup files f under fresh link data and returns the
// ADDITIONAL_KEY_EXCHANGE notification carrying it.
func (sa *ikeSA) linkFollowup(f *followup) *message.Notify {
	link := randomBytes(8)
	sa.followups[string(link)] = f
	if f.timer != nil {
		f.timer.Stop()
	}
	f.timer = sa.m.after(followupTimeout, func() {
		if sa.followups[string(link)] == f {
			sa.warn("the initiator did not continue with IKE_FOLLOWUP_KE: dropping the negotiation")
			delete(sa.followups, string(link))
			f.drop()
		}
	})
	return message.NewNotify(message.AdditionalKeyExchange, link)
}

// drop forgets a followup's secrets and reservations.
func (f *followup) drop() {
	if f.timer != nil {
		f.timer.Stop()
	}
	clear(f.secrets)
	if f.abort != nil {
		f.abort()
	}
}

// dropFollowups abandons all awaited IKE_FOLLOWUP_KE sequences.
func (sa *ikeSA) dropFollowups() {
	for k, f := range sa.followups {
		delete(sa.followups, k)
		f.drop()
	}
}

// handleFollowupRequest is the responder's IKE_FOLLOWUP_KE.
func (sa *ikeSA) handleFollowupRequest(msg *message.Message) {
	refuse := func(t message.NotifyType, why string) {
		sa.warn("IKE_FOLLOWUP_KE refused: answering with "+t.String(), zap.String("reason", why))
		sa.respond(message.IKEFollowupKE, msg.MessageID, []message.Payload{message.NewNotify(t, nil)})
	}
	n := msg.Notify(message.AdditionalKeyExchange)
	if n == nil {
		refuse(message.InvalidSyntax, "no ADDITIONAL_KEY_EXCHANGE notification")
		return
	}
	f := sa.followups[string(n.Data)]
	if f == nil {
		refuse(message.StateNotFound, "unknown link data")
		return
	}
	delete(sa.followups, string(n.Data))
	id := f.pending[0]
	kep, _ := msg.Get(message.PayloadKE).(*message.KE)
	if kep == nil || kex.ID(kep.Method) != id {
		f.drop()
		refuse(message.InvalidSyntax, "the request lacks the KE payload of the selected "+keName(uint16(id)))
		return
	}
	pub, secret, err := kex.Respond(id, kep.Data)
	if err != nil {
		f.drop()
		refuse(message.InvalidSyntax, err.Error())
		return
	}
	f.secrets = append(f.secrets, secret...)
	clear(secret)
	f.pending = f.pending[1:]
	ps := []message.Payload{&message.KE{Method: uint16(id), Data: pub}}
	if len(f.pending) > 0 {
		ps = append(ps, sa.linkFollowup(f))
		sa.respond(message.IKEFollowupKE, msg.MessageID, ps)
		return
	}
	f.timer.Stop()
	err = f.finish(f.secrets)
	clear(f.secrets)
	if err != nil {
		if f.abort != nil {
			f.abort()
		}
		var ce *ChildError
		t := message.NoAdditionalSAs
		if errors.As(err, &ce) {
			t = ce.Notify
		}
		refuse(t, err.Error())
		return
	}
	sa.respond(message.IKEFollowupKE, msg.MessageID, ps)
}

// followupNeg is an IKE_FOLLOWUP_KE sequence we run as initiator.
type followupNeg struct {
	pending []kex.ID
	link    []byte
	secrets []byte
	done    func(secrets []byte)
	fail    func(error)
}

// runFollowups runs the additional key exchanges of a CREATE_CHILD_SA we
// initiated: resp is the peer's response, secret SK(0) (taken over, may be
// nil). done gets all shared secrets (zeroed after it returns).
func (sa *ikeSA) runFollowups(adds []kex.ID, resp *message.Message, secret []byte, done func([]byte), fail func(error)) {
	n := resp.Notify(message.AdditionalKeyExchange)
	if n == nil || len(n.Data) == 0 {
		clear(secret)
		fail(&ChildError{Notify: message.InvalidSyntax, Detail: "additional key exchanges selected, but no ADDITIONAL_KEY_EXCHANGE notification"})
		return
	}
	sa.sendFollowup(&followupNeg{pending: adds, link: clone(n.Data), secrets: secret, done: done, fail: fail})
}

func (sa *ikeSA) sendFollowup(f *followupNeg) {
	id := f.pending[0]
	ex, err := kex.NewInitiator(id)
	if err != nil {
		clear(f.secrets)
		f.fail(err)
		return
	}
	sa.m.log.Debug("IKE_FOLLOWUP_KE: additional key exchange", sa.logFields(zap.String("method", keName(uint16(id))))...)
	ps := []message.Payload{message.NewNotify(message.AdditionalKeyExchange, f.link), &message.KE{Method: uint16(id), Data: ex.PublicValue()}}
	sa.sendRequest(message.IKEFollowupKE, ps, func(msg *message.Message, _ []byte) {
		if e := firstError(msg); e != nil {
			clear(f.secrets)
			f.fail(&ChildError{Notify: e.NotifyType, Detail: "the peer refused IKE_FOLLOWUP_KE"})
			return
		}
		kep, _ := msg.Get(message.PayloadKE).(*message.KE)
		if kep == nil || kex.ID(kep.Method) != id {
			clear(f.secrets)
			f.fail(&ChildError{Notify: message.InvalidSyntax, Detail: "IKE_FOLLOWUP_KE response without the KE payload of " + keName(uint16(id))})
			return
		}
		s, err := ex.SharedSecret(kep.Data)
		if err != nil {
			clear(f.secrets)
			f.fail(&ChildError{Notify: message.InvalidSyntax, Detail: err.Error()})
			return
		}
		f.secrets = append(f.secrets, s...)
		clear(s)
		f.pending = f.pending[1:]
		if len(f.pending) > 0 {
			n := msg.Notify(message.AdditionalKeyExchange)
			if n == nil || len(n.Data) == 0 {
				clear(f.secrets)
				f.fail(&ChildError{Notify: message.InvalidSyntax, Detail: "IKE_FOLLOWUP_KE response without ADDITIONAL_KEY_EXCHANGE"})
				return
			}
			f.link = clone(n.Data)
			sa.sendFollowup(f)
			return
		}
		f.done(f.secrets)
		clear(f.secrets)
	}, func() {
		clear(f.secrets)
		err := fmt.Errorf("IKE_FOLLOWUP_KE: %w", ErrTimeout)
		f.fail(err)
		sa.peerDead(err)
	})
}

// childAddKEs returns the additional key exchanges the responder selected
// in a CREATE_CHILD_SA response for a Child SA, after checking the
// selection against what we offered.
func childAddKEs(offered []message.Proposal, resp *message.Message) ([]kex.ID, error) {
	s, _ := resp.Get(message.PayloadSA).(*message.SA)
	if s == nil || len(s.Proposals) != 1 {
		return nil, nil // completeChild reports it
	}
	chosen := &s.Proposals[0]
	if err := proposal.CheckSelection(offered, chosen, proposal.Options{}); err != nil {
		return nil, &ChildError{Notify: message.NoProposalChosen, Detail: "the peer chose a proposal we did not offer: " + err.Error()}
	}
	suite, err := proposal.ResolveChild(chosen)
	if err != nil {
		return nil, &ChildError{Notify: message.NoProposalChosen, Detail: err.Error()}
	}
	return proposal.AddKEs(suite.AddKE), nil
}

// deferChild is the responder's CREATE_CHILD_SA with additional key
// exchanges: install makes the Child SA from all shared secrets after the
// last IKE_FOLLOWUP_KE. It returns the ADDITIONAL_KEY_EXCHANGE
// notification for the response.
func (sa *ikeSA) deferChild(adds []kex.ID, secret []byte, install func([]byte) (*childSA, error), spiIn uint32, old *childSA) []message.Payload {
	n := sa.awaitFollowup(adds, secret, func(all []byte) error {
		c, err := install(all)
		if err != nil {
			return err
		}
		if old != nil {
			sa.rekeyedByPeer(old, c)
		}
		return nil
	}, func() { delete(sa.m.reserved, spiIn) })
	return []message.Payload{n}
}
