package proposal

import (
	"slices"

	"github.com/goipsec/goipsec/ike/kex"
	"github.com/goipsec/goipsec/ike/message"
)

// isAddKE reports whether t is one of the RFC 9370 additional key exchange
// transform types (ADDKE1..ADDKE7).
func isAddKE(t message.TransformType) bool {
	return t >= message.TransformAddKE1 && t <= message.TransformAddKE7
}

// HasAddKE reports whether any of the proposals offers an additional key
// exchange (an ADDKE transform other than NONE): the initiator then sends
// INTERMEDIATE_EXCHANGE_SUPPORTED.
func HasAddKE(ps []message.Proposal) bool {
	for _, p := range ps {
		for _, t := range p.Transforms {
			if isAddKE(t.Type) && t.ID != 0 {
				return true
			}
		}
	}
	return false
}

// WithoutAddKE returns copies of the proposals that can do without
// additional key exchanges (each ADDKE type absent or offering NONE), with
// their ADDKE transforms removed: what can be negotiated with a peer that
// does not support IKE_INTERMEDIATE (RFC 9370 section 2.2.2).
func WithoutAddKE(ps []message.Proposal) []message.Proposal {
	var out []message.Proposal
	for _, p := range ps {
		ok := true
		for typ := message.TransformAddKE1; typ <= message.TransformAddKE7; typ++ {
			var n, none int
			for _, t := range p.Transforms {
				if t.Type == typ {
					n++
					if t.ID == 0 {
						none++
					}
				}
			}
			if n > 0 && none == 0 {
				ok = false
			}
		}
		if !ok {
			continue
		}
		c := p.Clone()
		c.Transforms = slices.DeleteFunc(c.Transforms, func(t message.Transform) bool { return isAddKE(t.Type) })
		out = append(out, c)
	}
	return out
}

// AddKEs returns the additional key exchanges of a resolved suite in the
// order they run (ADDKE1 first), without the absent ones.
func AddKEs(add [7]kex.ID) []kex.ID {
	var out []kex.ID
	for _, id := range add {
		if id != kex.None {
			out = append(out, id)
		}
	}
	return out
}
