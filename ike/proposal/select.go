package proposal

import (
	"errors"
	"fmt"
	"slices"

	"github.com/goipsec/goipsec/ike/message"
)

// ErrNoProposalChosen reports that no proposal is acceptable: answer
// NO_PROPOSAL_CHOSEN.
var ErrNoProposalChosen = errors.New("proposal: no acceptable proposal")

// Options change how proposals are matched.
type Options struct {
	// SkipKE ignores key exchange transforms, as for the Child SA of
	// IKE_AUTH, whose keys come from the IKE SA.
	SkipKE bool
}

// Select is the responder's choice, strongSwan's default: the first of our
// proposals (in order) that one of the offered proposals matches, trying
// the offered ones in their order. Within a transform type our preference
// order wins. The result has one transform per type, the number and SPI of
// the matching offered proposal.
func Select(ours, offered []message.Proposal, opt Options) (*message.Proposal, error) {
	for i := range ours {
		for j := range offered {
			if ours[i].Protocol != offered[j].Protocol {
				continue
			}
			if sel, ok := selectAlgos(&ours[i], &offered[j], opt); ok {
				sel.Number = offered[j].Number
				if len(offered[j].SPI) > 0 {
					sel.SPI = append([]byte(nil), offered[j].SPI...)
				}
				return sel, nil
			}
		}
	}
	return nil, ErrNoProposalChosen
}

// CheckSelection is the initiator's check of the responder's choice: it must
// carry the number and protocol of one of our offered proposals, exactly one
// transform of each type, and be what matching that proposal against it
// gives.
func CheckSelection(offered []message.Proposal, chosen *message.Proposal, opt Options) error {
	seen := map[message.TransformType]bool{}
	for _, t := range chosen.Transforms {
		if seen[t.Type] {
			return fmt.Errorf("proposal: selected proposal has more than one %v transform", t.Type)
		}
		seen[t.Type] = true
	}
	for i := range offered {
		o := &offered[i]
		if o.Number != chosen.Number || o.Protocol != chosen.Protocol {
			continue
		}
		sel, ok := selectAlgos(o, chosen, opt)
		if !ok {
			break
		}
		want := slices.Clone(chosen.Transforms)
		if opt.SkipKE {
			want = slices.DeleteFunc(want, func(t message.Transform) bool { return t.Type.IsKE() })
		}
		want = slices.DeleteFunc(want, func(t message.Transform) bool { return t.Type.IsKE() && t.ID == 0 })
		sortTransforms(want)
		if slices.EqualFunc(sel.Transforms, want, sameTransform) {
			return nil
		}
		break
	}
	return fmt.Errorf("proposal: selected proposal %v was not offered", chosen)
}

// selectAlgos matches our proposal against a peer's, type by type.
func selectAlgos(own, peer *message.Proposal, opt Options) (*message.Proposal, bool) {
	// A transform with an attribute we do not understand is ignored (RFC
	// 7296 section 3.3.6); an unknown transform type fails the match below.
	peerTs := slices.DeleteFunc(slices.Clone(peer.Transforms), func(t message.Transform) bool { return len(t.Attrs) > 0 })
	var types []message.TransformType
	for _, t := range append(slices.Clone(own.Transforms), peerTs...) {
		if !slices.Contains(types, t.Type) {
			types = append(types, t.Type)
		}
	}
	slices.SortFunc(types, func(a, b message.TransformType) int { return typeOrder(a) - typeOrder(b) })

	sel := &message.Proposal{Protocol: own.Protocol}
	usedKE := map[uint16]bool{}
	skipInteg := false
	for _, typ := range types {
		if (typ == message.TransformInteg && skipInteg) || (typ.IsKE() && opt.SkipKE) {
			continue
		}
		var mine, theirs []message.Transform
		for _, t := range own.Transforms {
			if t.Type == typ {
				mine = append(mine, t)
			}
		}
		for _, t := range peerTs {
			if t.Type == typ {
				theirs = append(theirs, t)
			}
		}
		// Key exchanges are optional for Child SAs, and additional ones for
		// IKE SAs: NONE in a list means "may be omitted".
		optional := typ.IsKE() && (own.Protocol != message.ProtoIKE || typ != message.TransformKE)
		t, ok := selectAlgo(mine, theirs, optional, typ.IsKE(), usedKE)
		if !ok {
			return nil, false
		}
		if t.ID == 0 && typ != message.TransformESN {
			continue // NONE
		}
		sel.Transforms = append(sel.Transforms, message.Transform{Type: typ, ID: t.ID, KeyLength: t.KeyLength})
		if typ.IsKE() {
			usedKE[t.ID] = true
		}
		if typ == message.TransformEncr && IsAEAD(t.ID) {
			skipInteg = true
		}
	}
	return sel, true
}

// selectAlgo picks our first algorithm of one type that the peer offers.
func selectAlgo(mine, theirs []message.Transform, optional, ke bool, usedKE map[uint16]bool) (message.Transform, bool) {
	hasNone := func(ts []message.Transform) bool {
		return slices.ContainsFunc(ts, func(t message.Transform) bool { return t.ID == 0 })
	}
	switch {
	case len(mine) == 0 && len(theirs) == 0:
		return message.Transform{}, true
	case len(mine) == 0:
		return message.Transform{}, optional && hasNone(theirs)
	case len(theirs) == 0:
		return message.Transform{}, optional && hasNone(mine)
	}
	for _, a := range mine {
		if ke && usedKE[a.ID] {
			continue // a method serves only one of the key exchanges
		}
		for _, b := range theirs {
			if a.ID == b.ID && a.KeyLength == b.KeyLength {
				return a, true
			}
		}
	}
	return message.Transform{}, false
}
