// Package proposal turns proposals written as strongSwan writes them
// ("aes128gcm16-prfsha256-x25519", "aes256-sha384-ecp384", ESP
// "aes128gcm16-x25519" with PFS, "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
// with an RFC 9370 additional key exchange) into SA payload proposals and
// back, negotiates them as strongSwan does, and resolves a negotiated
// proposal into the algorithms to run.
package proposal

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/message"
	"github.com/goipsec/goipsec/internal/xform"
)

// Parse reads one proposal for protocol proto (ProtoIKE, ProtoESP or
// ProtoAH): keywords joined by '-'. It applies strongSwan's rules: an IKE
// proposal without a PRF takes the one matching its integrity algorithm,
// AEAD proposals drop integrity algorithms, ESP and AH proposals without an
// ESN keyword get noesn. The result has number 0 and no SPI.
func Parse(proto message.ProtocolID, s string) (message.Proposal, error) {
	p := message.Proposal{Protocol: proto}
	if proto != message.ProtoIKE && proto != message.ProtoESP && proto != message.ProtoAH {
		return p, fmt.Errorf("proposal: protocol %v", proto)
	}
	if strings.TrimSpace(s) == "" {
		return p, errors.New("proposal: empty proposal")
	}
	for _, tok := range strings.Split(s, "-") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return p, fmt.Errorf("proposal: empty algorithm in %q", s)
		}
		t, err := parseToken(proto, tok)
		if err != nil {
			return p, err
		}
		if !slices.ContainsFunc(p.Transforms, func(o message.Transform) bool { return sameTransform(o, t) }) {
			p.Transforms = append(p.Transforms, t)
		}
	}
	if err := normalize(&p); err != nil {
		return p, fmt.Errorf("proposal %q: %w", s, err)
	}
	return p, nil
}

// ParseList reads a list of proposals and numbers them from 1. The keyword
// "default" stands for the default proposals.
func ParseList(proto message.ProtocolID, list []string) ([]message.Proposal, error) {
	var out []message.Proposal
	for _, s := range list {
		if strings.TrimSpace(s) == "default" {
			out = append(out, Default(proto)...)
			continue
		}
		p, err := Parse(proto, s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("proposal: no proposals")
	}
	for i := range out {
		out[i].Number = uint8(i + 1)
	}
	return out, nil
}

// MustParseList is ParseList for built-in lists; it panics on error.
func MustParseList(proto message.ProtocolID, list ...string) []message.Proposal {
	ps, err := ParseList(proto, list)
	if err != nil {
		panic(err)
	}
	return ps
}

// Default proposals: AEADs first (AES-GCM, ChaCha20-Poly1305), then AES-CBC
// with HMAC-SHA2; PRFs HMAC-SHA2; key exchanges Curve25519, the NIST curves
// and MODP 3072/4096, then MODP 2048 (RFC 8247's mandatory group). Nothing
// legacy: no 3DES, SHA-1, MD5 or groups below 2048 bits.
var (
	defaultIKE = []string{
		"aes128gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048",
		"aes128-aes256-sha256-sha384-sha512-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048",
	}
	defaultESP = []string{
		"aes128gcm16-aes256gcm16-chacha20poly1305-noesn",
		"aes128-aes256-sha256-sha384-sha512-noesn",
	}
	defaultAH = []string{"sha256-sha384-sha512-noesn"}
)

// Default returns the default proposals for proto, numbered from 1.
func Default(proto message.ProtocolID) []message.Proposal {
	var list []string
	switch proto {
	case message.ProtoIKE:
		list = defaultIKE
	case message.ProtoESP:
		list = defaultESP
	case message.ProtoAH:
		list = defaultAH
	}
	out := make([]message.Proposal, 0, len(list))
	for i, s := range list {
		p, err := Parse(proto, s)
		if err != nil {
			panic(err)
		}
		p.Number = uint8(i + 1)
		out = append(out, p)
	}
	return out
}

// normalize applies strongSwan's proposal checks and completions.
func normalize(p *message.Proposal) error {
	has := func(t message.TransformType) bool {
		return slices.ContainsFunc(p.Transforms, func(x message.Transform) bool { return x.Type == t })
	}
	drop := func(keep func(message.Transform) bool) {
		p.Transforms = slices.DeleteFunc(p.Transforms, func(x message.Transform) bool { return !keep(x) })
	}
	switch p.Protocol {
	case message.ProtoIKE:
		if has(message.TransformESN) {
			return errors.New("ESN is not negotiated for IKE SAs")
		}
		if !has(message.TransformPRF) {
			for _, t := range slices.Clone(p.Transforms) {
				if id, ok := integToPRF[xform.IntegID(t.ID)]; ok && t.Type == message.TransformInteg {
					p.Transforms = append(p.Transforms, message.Transform{Type: message.TransformPRF, ID: uint16(id)})
				}
			}
		}
		if !has(message.TransformPRF) {
			return errors.New("a PRF algorithm is mandatory in IKE proposals")
		}
		drop(func(t message.Transform) bool { return t.Type != message.TransformKE || t.ID != 0 })
		if !has(message.TransformKE) {
			return errors.New("a key exchange method is mandatory in IKE proposals")
		}
	case message.ProtoESP, message.ProtoAH:
		drop(func(t message.Transform) bool { return t.Type != message.TransformPRF })
		if !has(message.TransformESN) {
			p.Transforms = append(p.Transforms, message.Transform{Type: message.TransformESN, ID: message.ESNNone})
		}
	}
	if p.Protocol == message.ProtoAH {
		if !has(message.TransformInteg) {
			return errors.New("an integrity algorithm is mandatory in AH proposals")
		}
	} else {
		aead, classic := 0, 0
		for _, t := range p.Transforms {
			if t.Type == message.TransformEncr {
				if IsAEAD(t.ID) {
					aead++
				} else {
					classic++
				}
			}
		}
		switch {
		case aead == 0 && classic == 0:
			return fmt.Errorf("an encryption algorithm is mandatory in %v proposals", p.Protocol)
		case aead > 0 && classic > 0:
			return errors.New("classic and combined-mode (AEAD) encryption algorithms cannot share a proposal")
		case aead > 0:
			drop(func(t message.Transform) bool { return t.Type != message.TransformInteg })
		case !has(message.TransformInteg):
			return errors.New("an integrity algorithm is mandatory with classic encryption")
		}
	}
	sortTransforms(p.Transforms)
	return nil
}

// typeOrder is strongSwan's order of transform types: integrity before PRF.
func typeOrder(t message.TransformType) int {
	switch t {
	case message.TransformInteg:
		return int(message.TransformPRF)
	case message.TransformPRF:
		return int(message.TransformInteg)
	}
	return int(t)
}

// sortTransforms orders transforms by type (strongSwan's order), keeping the
// preference order within a type.
func sortTransforms(ts []message.Transform) {
	slices.SortStableFunc(ts, func(a, b message.Transform) int { return typeOrder(a.Type) - typeOrder(b.Type) })
}

func sameTransform(a, b message.Transform) bool {
	return a.Type == b.Type && a.ID == b.ID && a.KeyLength == b.KeyLength && len(a.Attrs) == 0 && len(b.Attrs) == 0
}

// Format writes a proposal as strongSwan keywords joined by '-', in
// strongSwan's type order. Parse(Format(p)) reproduces p's transforms.
func Format(p *message.Proposal) string {
	ts := slices.Clone(p.Transforms)
	sortTransforms(ts)
	words := make([]string, len(ts))
	for i, t := range ts {
		words[i] = keyword(p.Protocol, t)
	}
	return strings.Join(words, "-")
}

// FormatList formats several proposals separated by ", ".
func FormatList(ps []message.Proposal) string {
	s := make([]string, len(ps))
	for i := range ps {
		s[i] = Format(&ps[i])
	}
	return strings.Join(s, ", ")
}

// IsAEAD reports whether an encryption transform ID is a combined mode
// (AES-CCM, AES-GCM, AES-GMAC, Camellia-CCM, ChaCha20-Poly1305), which takes
// no integrity transform.
func IsAEAD(id uint16) bool {
	switch id {
	case 14, 15, 16, // AES-CCM
		uint16(ikecrypto.EncrAESGCM8), uint16(ikecrypto.EncrAESGCM12), uint16(xform.EncrAESGCM16),
		uint16(xform.EncrNullAuthAESGMAC),
		25, 26, 27, // Camellia-CCM
		uint16(xform.EncrChaCha20Poly1305):
		return true
	}
	return false
}

// StripKE returns copies of the proposals without key exchange transforms:
// the Child SA proposals of IKE_AUTH, whose keys come from the IKE SA's key
// exchange.
func StripKE(ps []message.Proposal) []message.Proposal {
	out := make([]message.Proposal, len(ps))
	for i := range ps {
		out[i] = ps[i].Clone()
		out[i].Transforms = slices.DeleteFunc(out[i].Transforms, func(t message.Transform) bool { return t.Type.IsKE() })
	}
	return out
}

// KEMethod returns the first key exchange method of the proposal (the one
// an initiator sends in KE), or 0.
func KEMethod(p *message.Proposal) uint16 {
	for _, t := range p.Transforms {
		if t.Type == message.TransformKE && t.ID != 0 {
			return t.ID
		}
	}
	return 0
}

// HasKEMethod reports whether any of the proposals offers key exchange
// method id: the check behind INVALID_KE_PAYLOAD.
func HasKEMethod(ps []message.Proposal, id uint16) bool {
	for _, p := range ps {
		for _, t := range p.Transforms {
			if t.Type == message.TransformKE && t.ID == id {
				return true
			}
		}
	}
	return false
}
