package kex

import (
	"crypto/mlkem"
	"errors"
	"fmt"
)

// mlkemExchange is ML-KEM as an IKEv2 key exchange (RFC 9370 additional key
// exchange): the initiator sends its encapsulation key, the responder
// encapsulates to it and sends the ciphertext, the initiator decapsulates.
type mlkemExchange struct {
	m         *Method
	responder bool
	dk768     *mlkem.DecapsulationKey768
	dk1024    *mlkem.DecapsulationKey1024
	ct        []byte // responder: the ciphertext to send
	// encap768 and encap1024, when set, replace the randomized
	// encapsulation (deterministic known-answer tests).
	encap768  func(*mlkem.EncapsulationKey768) (key, ct []byte)
	encap1024 func(*mlkem.EncapsulationKey1024) (key, ct []byte)
}

func newMLKEM(m *Method, responder bool) (Exchange, error) {
	e := &mlkemExchange{m: m, responder: responder}
	if responder {
		return e, nil
	}
	var err error
	switch m.ID {
	case MLKEM768:
		e.dk768, err = mlkem.GenerateKey768()
	case MLKEM1024:
		e.dk1024, err = mlkem.GenerateKey1024()
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (e *mlkemExchange) Method() *Method { return e.m }

// PublicValue returns the encapsulation key (initiator) or the ciphertext
// (responder, after SharedSecret; nil before).
func (e *mlkemExchange) PublicValue() []byte {
	switch {
	case e.responder:
		return append([]byte(nil), e.ct...)
	case e.dk768 != nil:
		return e.dk768.EncapsulationKey().Bytes()
	default:
		return e.dk1024.EncapsulationKey().Bytes()
	}
}

// SharedSecret decapsulates the responder's ciphertext (initiator) or
// encapsulates to the initiator's key (responder).
func (e *mlkemExchange) SharedSecret(peer []byte) ([]byte, error) {
	if !e.responder {
		if len(peer) != e.m.RespLen {
			return nil, fmt.Errorf("%w: %s ciphertext of %d octets, want %d", ErrPublicValue, e.m.Name, len(peer), e.m.RespLen)
		}
		var (
			k   []byte
			err error
		)
		if e.dk768 != nil {
			k, err = e.dk768.Decapsulate(peer)
		} else {
			k, err = e.dk1024.Decapsulate(peer)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrPublicValue, e.m.Name, err)
		}
		return k, nil
	}
	if e.ct != nil {
		return nil, errors.New("kex: ML-KEM responder already encapsulated")
	}
	var k []byte
	switch e.m.ID {
	case MLKEM768:
		ek, err := mlkem.NewEncapsulationKey768(peer)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrPublicValue, e.m.Name, err)
		}
		if e.encap768 != nil {
			k, e.ct = e.encap768(ek)
		} else {
			k, e.ct = ek.Encapsulate()
		}
	default:
		ek, err := mlkem.NewEncapsulationKey1024(peer)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrPublicValue, e.m.Name, err)
		}
		if e.encap1024 != nil {
			k, e.ct = e.encap1024(ek)
		} else {
			k, e.ct = ek.Encapsulate()
		}
	}
	return k, nil
}
