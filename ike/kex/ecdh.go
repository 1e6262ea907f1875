package kex

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
)

// ecdhExchange is ECDH over a NIST curve (public value x || y, RFC 5903
// section 7; shared secret the x coordinate) or over Curve25519 (RFC 8031).
type ecdhExchange struct {
	m    *Method
	priv *ecdh.PrivateKey
	nist bool
}

func curveOf(id ID) ecdh.Curve {
	switch id {
	case ECP256:
		return ecdh.P256()
	case ECP384:
		return ecdh.P384()
	case ECP521:
		return ecdh.P521()
	}
	return ecdh.X25519()
}

func newECP(m *Method, _ bool) (Exchange, error) { return newECDH(m, nil) }

func newX25519(m *Method, _ bool) (Exchange, error) { return newECDH(m, nil) }

// newECDH builds the exchange with a random key, or the given private key
// (for known-answer tests).
func newECDH(m *Method, key []byte) (*ecdhExchange, error) {
	c := curveOf(m.ID)
	var (
		priv *ecdh.PrivateKey
		err  error
	)
	if key == nil {
		priv, err = c.GenerateKey(rand.Reader)
	} else {
		priv, err = c.NewPrivateKey(key)
	}
	if err != nil {
		return nil, fmt.Errorf("kex: %s key: %w", m.Name, err)
	}
	return &ecdhExchange{m: m, priv: priv, nist: m.ID != Curve25519}, nil
}

func (e *ecdhExchange) Method() *Method { return e.m }

func (e *ecdhExchange) PublicValue() []byte {
	pub := e.priv.PublicKey().Bytes()
	if e.nist {
		return pub[1:] // drop the 0x04 of the SEC 1 uncompressed form
	}
	return pub
}

func (e *ecdhExchange) SharedSecret(peer []byte) ([]byte, error) {
	if len(peer) != e.m.PublicLen {
		return nil, fmt.Errorf("%w: %s public value of %d octets, want %d", ErrPublicValue, e.m.Name, len(peer), e.m.PublicLen)
	}
	enc := peer
	if e.nist {
		enc = append([]byte{4}, peer...)
	}
	pub, err := e.priv.Curve().NewPublicKey(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrPublicValue, e.m.Name, err)
	}
	s, err := e.priv.ECDH(pub)
	if err != nil {
		// X25519 with a low-order point: an all-zero result (RFC 8031 2.3).
		return nil, fmt.Errorf("%w: %s: %v", ErrPublicValue, e.m.Name, err)
	}
	return s, nil
}
