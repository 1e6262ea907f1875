package ike

import (
	"errors"
	"strings"

	"github.com/goipsec/goipsec/ike/message"
)

// Observer receives the Manager's events, for metrics. The Manager calls
// it with its lock held: an implementation must return quickly and must not
// call back into the Manager. Reasons are the Reason* constants.
type Observer interface {
	// HandshakeStarted: an IKE_SA_INIT request went out (initiator) or
	// came in from a peer and was answered (responder), or refused with
	// an error (then HandshakeFailed follows).
	HandshakeStarted(initiator bool)
	// HandshakeCompleted: an IKE SA was established by IKE_AUTH.
	HandshakeCompleted(initiator bool)
	// HandshakeFailed: an IKE SA was given up before it was established.
	HandshakeFailed(initiator bool, reason string)
	// HandshakeRetried: the initiator sent IKE_SA_INIT again because the
	// responder asked for another key exchange (ReasonInvalidKE) or a
	// cookie (ReasonCookie).
	HandshakeRetried(reason string)
	// ChildSAFailed: the negotiation of a Child SA (not a rekey) failed
	// on an IKE SA that stays.
	ChildSAFailed(initiator bool, reason string)
	// Rekeyed: an IKE SA (kind "ike") or Child SA ("child") was rekeyed,
	// on our initiative or the peer's.
	Rekeyed(kind string, initiator bool)
	// PeerDead: a peer stopped answering (dead peer detection or any
	// other request of an established IKE SA) and its SAs were deleted.
	PeerDead()
}

// Reasons for failed handshakes and Child SAs.
const (
	ReasonAuthFailed     = "authentication_failed" // AUTHENTICATION_FAILED, either way
	ReasonNoProposal     = "no_proposal_chosen"    // NO_PROPOSAL_CHOSEN, either way
	ReasonTSUnacceptable = "ts_unacceptable"       // TS_UNACCEPTABLE, either way
	ReasonInvalidKE      = "invalid_ke_payload"    // no acceptable key exchange
	ReasonCookie         = "cookie"                // the responder asked for a cookie (retries)
	ReasonInvalidSyntax  = "invalid_syntax"        // a malformed or incomplete message
	ReasonTimeout        = "timeout"               // no answer, or a half-open SA left
	ReasonAborted        = "aborted"               // deleted, reloaded away or shut down meanwhile
	ReasonPeerError      = "peer_error"            // another error notify from the peer
	ReasonOther          = "other"                 // anything else (a local problem)
)

// Kinds of rekeys for Observer.Rekeyed.
const (
	RekeyIKE   = "ike"
	RekeyChild = "child"
)

// NotifyError is a failure the peer reported with an error notify, or one
// we answered with it.
type NotifyError struct {
	Notify message.NotifyType
	Detail string
}

func (e *NotifyError) Error() string {
	if e.Detail == "" {
		return e.Notify.String()
	}
	return e.Notify.String() + ": " + e.Detail
}

// FailureReason maps the error that ended a negotiation to its Reason*.
func FailureReason(err error) string {
	var ae *AuthError
	var ne *NotifyError
	var ce *ChildError
	var me *message.Error
	switch {
	case err == nil:
		return ReasonOther
	case errors.As(err, &ae):
		return ReasonAuthFailed
	case errors.As(err, &ne):
		return notifyReason(ne.Notify)
	case errors.As(err, &ce):
		return notifyReason(ce.Notify)
	case errors.Is(err, ErrTimeout):
		return ReasonTimeout
	case errors.Is(err, errDeleted), errors.Is(err, errPeerDeleted), errors.Is(err, errClosed), errors.Is(err, errReconfigured):
		return ReasonAborted
	case errors.As(err, &me), strings.HasPrefix(err.Error(), "INVALID_SYNTAX"):
		return ReasonInvalidSyntax
	}
	return ReasonOther
}

// notifyReason maps an error notify to its Reason*.
func notifyReason(t message.NotifyType) string {
	switch t {
	case message.AuthenticationFailed:
		return ReasonAuthFailed
	case message.NoProposalChosen:
		return ReasonNoProposal
	case message.TSUnacceptable:
		return ReasonTSUnacceptable
	case message.InvalidKEPayload:
		return ReasonInvalidKE
	case message.InvalidSyntax:
		return ReasonInvalidSyntax
	}
	return ReasonPeerError
}

// nopObserver is the Observer of a Manager without one.
type nopObserver struct{}

func (nopObserver) HandshakeStarted(bool)        {}
func (nopObserver) HandshakeCompleted(bool)      {}
func (nopObserver) HandshakeFailed(bool, string) {}
func (nopObserver) HandshakeRetried(string)      {}
func (nopObserver) ChildSAFailed(bool, string)   {}
func (nopObserver) Rekeyed(string, bool)         {}
func (nopObserver) PeerDead()                    {}
