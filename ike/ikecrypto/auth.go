package ikecrypto

import (
	"crypto/subtle"

	"github.com/goipsec/goipsec/ike/message"
)

// keyPad is the constant of RFC 7296 section 2.15, without a terminator.
var keyPad = []byte("Key Pad for IKEv2")

// SignedOctets returns the octets an AUTH payload covers (RFC 7296 section
// 2.15): the sender's first message as sent (IKE_SA_INIT request or
// response), the peer's nonce data, and prf(SK_p, RestOfIDPayload) of the
// sender's identity; intAuth, the RFC 9242 IntAuth value, is appended when
// IKE_INTERMEDIATE exchanges took place. skp is SK_pi for the initiator's
// octets and SK_pr for the responder's.
func SignedOctets(prf *PRF, skp, firstMessage, peerNonce []byte, id *message.Identity, intAuth []byte) []byte {
	maced := prf.Sum(skp, id.Body())
	out := make([]byte, 0, len(firstMessage)+len(peerNonce)+len(maced)+len(intAuth))
	out = append(out, firstMessage...)
	out = append(out, peerNonce...)
	out = append(out, maced...)
	return append(out, intAuth...)
}

// SharedKeyAuth returns the AUTH data for Shared Key Message Integrity Code
// authentication: prf(prf(secret, "Key Pad for IKEv2"), signedOctets). The
// secret is the pre-shared key, or the EAP MSK.
func SharedKeyAuth(prf *PRF, secret, signedOctets []byte) []byte {
	k := prf.Sum(secret, keyPad)
	defer clear(k)
	return prf.Sum(k, signedOctets)
}

// VerifySharedKeyAuth reports, in constant time, whether auth is the
// Shared Key AUTH data for signedOctets.
func VerifySharedKeyAuth(prf *PRF, secret, signedOctets, auth []byte) bool {
	want := SharedKeyAuth(prf, secret, signedOctets)
	return subtle.ConstantTimeCompare(want, auth) == 1
}
