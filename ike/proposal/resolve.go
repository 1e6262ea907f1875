package proposal

import (
	"fmt"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/internal/xform"
)

// IKESuite is what a negotiated IKE proposal resolves to.
type IKESuite struct {
	ikecrypto.Suite
	KE    kex.ID    // the key exchange of IKE_SA_INIT
	AddKE [7]kex.ID // RFC 9370 additional key exchanges 1-7; None when absent
}

// ChildSuite is what a negotiated ESP or AH proposal resolves to.
type ChildSuite struct {
	Protocol message.ProtocolID
	Enc      *xform.Enc   // nil for AH
	Integ    *xform.Integ // nil for ESP with a combined-mode cipher
	ESN      bool
	KE       kex.ID // PFS key exchange of CREATE_CHILD_SA; None when absent
	AddKE    [7]kex.ID
}

// one returns the single transform of type t; ok is false if there are
// none, err set if there are several.
func one(p *message.Proposal, t message.TransformType) (message.Transform, bool, error) {
	var found []message.Transform
	for _, x := range p.Transforms {
		if x.Type == t {
			found = append(found, x)
		}
	}
	switch len(found) {
	case 0:
		return message.Transform{}, false, nil
	case 1:
		return found[0], true, nil
	}
	return message.Transform{}, false, fmt.Errorf("proposal: %d %v transforms in a selected proposal", len(found), t)
}

func resolveKE(p *message.Proposal, ke *kex.ID, add *[7]kex.ID) error {
	for typ := message.TransformKE; typ <= message.TransformAddKE7; typ++ {
		if typ == message.TransformESN {
			continue
		}
		t, ok, err := one(p, typ)
		if err != nil {
			return err
		}
		if !ok || t.ID == 0 {
			continue
		}
		if _, err := kex.Lookup(kex.ID(t.ID)); err != nil {
			return err
		}
		if typ == message.TransformKE {
			*ke = kex.ID(t.ID)
		} else {
			add[typ-message.TransformAddKE1] = kex.ID(t.ID)
		}
	}
	return nil
}

func checkKnownTypes(p *message.Proposal, allowed ...message.TransformType) error {
	for _, t := range p.Transforms {
		ok := t.Type >= message.TransformAddKE1 && t.Type <= message.TransformAddKE7
		for _, a := range allowed {
			ok = ok || t.Type == a
		}
		if !ok {
			return fmt.Errorf("proposal: %v transform in a %v proposal", t.Type, p.Protocol)
		}
	}
	return nil
}

// ResolveIKE returns the algorithms of a selected IKE proposal (one
// transform per type).
func ResolveIKE(p *message.Proposal) (*IKESuite, error) {
	if p.Protocol != message.ProtoIKE {
		return nil, fmt.Errorf("proposal: %v proposal for an IKE SA", p.Protocol)
	}
	if err := checkKnownTypes(p, message.TransformEncr, message.TransformPRF, message.TransformInteg, message.TransformKE); err != nil {
		return nil, err
	}
	s := &IKESuite{}
	e, ok, err := one(p, message.TransformEncr)
	if err != nil || !ok {
		return nil, fmt.Errorf("proposal: IKE proposal needs one encryption algorithm (%v)", err)
	}
	if s.Encr, err = ikecrypto.LookupEncr(xform.EncID(e.ID), e.KeyLength); err != nil {
		return nil, err
	}
	pr, ok, err := one(p, message.TransformPRF)
	if err != nil || !ok {
		return nil, fmt.Errorf("proposal: IKE proposal needs one PRF (%v)", err)
	}
	if s.PRF, err = ikecrypto.LookupPRF(ikecrypto.PRFID(pr.ID)); err != nil {
		return nil, err
	}
	in, ok, err := one(p, message.TransformInteg)
	if err != nil {
		return nil, err
	}
	switch {
	case s.Encr.AEAD && ok && in.ID != 0:
		return nil, fmt.Errorf("proposal: %s with an integrity algorithm", s.Encr.Name)
	case !s.Encr.AEAD && !ok:
		return nil, fmt.Errorf("proposal: %s without an integrity algorithm", s.Encr.Name)
	case !s.Encr.AEAD:
		if s.Integ, err = ikecrypto.LookupInteg(xform.IntegID(in.ID)); err != nil {
			return nil, err
		}
	}
	if err := resolveKE(p, &s.KE, &s.AddKE); err != nil {
		return nil, err
	}
	if s.KE == kex.None {
		return nil, fmt.Errorf("proposal: IKE proposal without key exchange method")
	}
	return s, nil
}

// ResolveChild returns the algorithms of a selected ESP or AH proposal.
func ResolveChild(p *message.Proposal) (*ChildSuite, error) {
	s := &ChildSuite{Protocol: p.Protocol}
	switch p.Protocol {
	case message.ProtoESP:
		if err := checkKnownTypes(p, message.TransformEncr, message.TransformInteg, message.TransformKE, message.TransformESN); err != nil {
			return nil, err
		}
		e, ok, err := one(p, message.TransformEncr)
		if err != nil || !ok {
			return nil, fmt.Errorf("proposal: ESP proposal needs one encryption algorithm (%v)", err)
		}
		if s.Enc = lookupESPEnc(xform.EncID(e.ID), e.KeyLength); s.Enc == nil {
			return nil, fmt.Errorf("proposal: unsupported ESP encryption %s", keyword(p.Protocol, e))
		}
	case message.ProtoAH:
		if err := checkKnownTypes(p, message.TransformInteg, message.TransformKE, message.TransformESN); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("proposal: %v proposal for a Child SA", p.Protocol)
	}
	in, ok, err := one(p, message.TransformInteg)
	if err != nil {
		return nil, err
	}
	combined := s.Enc != nil && (s.Enc.Kind == xform.KindAEAD || s.Enc.Kind == xform.KindGMAC)
	switch {
	case ok && in.ID != 0 && combined:
		return nil, fmt.Errorf("proposal: %s with an integrity algorithm", s.Enc.Name)
	case ok && in.ID != 0:
		if s.Integ = lookupInteg(xform.IntegID(in.ID)); s.Integ == nil {
			return nil, fmt.Errorf("proposal: unsupported integrity algorithm %d", in.ID)
		}
		if s.Integ.GMAC && p.Protocol == message.ProtoESP {
			return nil, fmt.Errorf("proposal: %s is not an ESP integrity algorithm", s.Integ.Name)
		}
	case !combined:
		return nil, fmt.Errorf("proposal: %v proposal without an integrity algorithm", p.Protocol)
	}
	if esn, ok, err := one(p, message.TransformESN); err != nil {
		return nil, err
	} else if ok {
		switch esn.ID {
		case message.ESNNone:
		case message.ESNUsed:
			s.ESN = true
		default:
			return nil, fmt.Errorf("proposal: ESN transform %d", esn.ID)
		}
	}
	if err := resolveKE(p, &s.KE, &s.AddKE); err != nil {
		return nil, err
	}
	return s, nil
}
