// Package kex implements the IKEv2 key exchange methods behind one
// interface: finite-field Diffie-Hellman over the RFC 3526 MODP groups 14, 15
// and 16, ECDH over NIST P-256/384/521 (groups 19, 20, 21; RFC 5903) and
// Curve25519 (group 31; RFC 8031), and the ML-KEM key encapsulation
// mechanisms (FIPS 203; transform IDs 36 and 37) used as RFC 9370 additional
// key exchanges.
package kex

import (
	"errors"
	"fmt"
)

// ID is a key exchange method number (IANA "Transform Type 4", formerly the
// Diffie-Hellman group number).
type ID uint16

// Key exchange methods.
const (
	None       ID = 0
	MODP2048   ID = 14
	MODP3072   ID = 15
	MODP4096   ID = 16
	ECP256     ID = 19
	ECP384     ID = 20
	ECP521     ID = 21
	Curve25519 ID = 31
	MLKEM512   ID = 35 // not implemented: crypto/mlkem lacks ML-KEM-512
	MLKEM768   ID = 36
	MLKEM1024  ID = 37
)

// Method describes a key exchange method.
type Method struct {
	ID       ID
	Name     string // strongSwan proposal keyword
	KEM      bool   // key encapsulation: the responder's value is a ciphertext
	Insecure bool   // below 128-bit strength or legacy: never in defaults
	// PublicLen is the length of the initiator's public value; RespLen the
	// length of the responder's (differs for KEMs).
	PublicLen, RespLen int
	newEx              func(m *Method, responder bool) (Exchange, error)
}

// String returns the strongSwan keyword.
func (m *Method) String() string { return m.Name }

var methods = []*Method{
	{ID: Curve25519, Name: "x25519", PublicLen: 32, RespLen: 32, newEx: newX25519},
	{ID: ECP256, Name: "ecp256", PublicLen: 64, RespLen: 64, newEx: newECP},
	{ID: ECP384, Name: "ecp384", PublicLen: 96, RespLen: 96, newEx: newECP},
	{ID: ECP521, Name: "ecp521", PublicLen: 132, RespLen: 132, newEx: newECP},
	{ID: MODP2048, Name: "modp2048", PublicLen: 256, RespLen: 256, newEx: newMODP},
	{ID: MODP3072, Name: "modp3072", PublicLen: 384, RespLen: 384, newEx: newMODP},
	{ID: MODP4096, Name: "modp4096", PublicLen: 512, RespLen: 512, newEx: newMODP},
	{ID: MLKEM768, Name: "mlkem768", KEM: true, PublicLen: 1184, RespLen: 1088, newEx: newMLKEM},
	{ID: MLKEM1024, Name: "mlkem1024", KEM: true, PublicLen: 1568, RespLen: 1568, newEx: newMLKEM},
}

// Methods lists the implemented key exchange methods.
func Methods() []*Method { return append([]*Method(nil), methods...) }

// Lookup finds an implemented method by ID.
func Lookup(id ID) (*Method, error) {
	for _, m := range methods {
		if m.ID == id {
			return m, nil
		}
	}
	return nil, fmt.Errorf("kex: unsupported key exchange method %d", id)
}

// ErrPublicValue reports a peer's public value (or ciphertext) of the wrong
// length or outside the group: RFC 7296 answers INVALID_SYNTAX.
var ErrPublicValue = errors.New("kex: invalid public value")

// Exchange is one side of a key exchange in progress.
//
// As initiator: send PublicValue in KEi, then pass KEr's data to
// SharedSecret. As responder: pass KEi's data to SharedSecret first, then
// send PublicValue in KEr; for a KEM that is the encapsulation's ciphertext,
// which only exists after SharedSecret.
type Exchange interface {
	// Method returns the key exchange method.
	Method() *Method
	// PublicValue returns this side's KE payload data.
	PublicValue() []byte
	// SharedSecret returns the shared secret from the peer's KE payload data.
	SharedSecret(peer []byte) ([]byte, error)
}

// NewInitiator starts a key exchange as the initiator.
func NewInitiator(id ID) (Exchange, error) {
	m, err := Lookup(id)
	if err != nil {
		return nil, err
	}
	return m.newEx(m, false)
}

// NewResponder starts a key exchange as the responder.
func NewResponder(id ID) (Exchange, error) {
	m, err := Lookup(id)
	if err != nil {
		return nil, err
	}
	return m.newEx(m, true)
}

// Respond runs the responder's side in one step: the public value to send
// and the shared secret, from the initiator's public value.
func Respond(id ID, peer []byte) (public, secret []byte, err error) {
	ex, err := NewResponder(id)
	if err != nil {
		return nil, nil, err
	}
	if secret, err = ex.SharedSecret(peer); err != nil {
		return nil, nil, err
	}
	return ex.PublicValue(), secret, nil
}
