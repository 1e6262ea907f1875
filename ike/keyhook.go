package ike

import (
	"github.com/goipsec/goipsec/ike/ikecrypto"
	"github.com/goipsec/goipsec/ike/proposal"
)

// KeyMaterial is what Options.KeyHook receives, for tests only: the keys
// of a new IKE SA (IKE set) or of a new Child SA (ChildKeys set), as copies
// the hook may keep. It lets tests compare goipsec's derivation with a peer
// we did not write (strongSwan logs its keys at ike=4/chd=4) and hand keys
// to tshark. Nothing else ever sees or logs them.
type KeyMaterial struct {
	// Connection and Child name the configuration: Child is "" for IKE
	// SA keys, and so is Connection for a responder's IKE SA keys (its
	// connection is known only after IKE_AUTH).
	Connection, Child string
	// SPIi and SPIr are the IKE SA's SPIs.
	SPIi, SPIr uint64
	// Initiator is whether we initiated the exchange that made the SA.
	Initiator bool
	// Proposal is the negotiated IKE proposal (IKE SA keys only).
	Proposal string
	// SKEYSEED and IKE are the IKE SA's keys.
	SKEYSEED []byte
	IKE      *ikecrypto.IKEKeys
	// ChildKeys are the Child SA's keys (RFC 7296 2.17 order: the
	// initiator-to-responder SA first); SPIIn and SPIOut are our inbound
	// and outbound SPIs.
	ChildKeys     *ikecrypto.ChildKeys
	SPIIn, SPIOut uint32
}

func cloneIKEKeys(k *ikecrypto.IKEKeys) *ikecrypto.IKEKeys {
	return &ikecrypto.IKEKeys{D: clone(k.D), Ai: clone(k.Ai), Ar: clone(k.Ar), Ei: clone(k.Ei), Er: clone(k.Er), Pi: clone(k.Pi), Pr: clone(k.Pr)}
}

// reportIKEKeys hands sa's current IKE SA keys and skeyseed to the key
// hook, if there is one.
func (sa *ikeSA) reportIKEKeys(skeyseed []byte) {
	h := sa.m.opts.KeyHook
	if h == nil {
		return
	}
	name := ""
	if sa.conn != nil {
		name = sa.conn.Name
	}
	h(KeyMaterial{Connection: name, SPIi: sa.spiI, SPIr: sa.spiR, Initiator: sa.initiator,
		Proposal: proposal.Format(sa.chosen), SKEYSEED: clone(skeyseed), IKE: cloneIKEKeys(sa.keys)})
}
