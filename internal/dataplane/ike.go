package dataplane

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

// NegotiatedChild is a Child SA pair that a key manager (IKE) negotiated:
// the selectors of its outbound PROTECT policies, its two ESP SAs and, for
// transport mode, the inner addresses.
type NegotiatedChild struct {
	ID   sad.ChildID
	Mode sad.Mode
	// Selectors are the traffic the child protects, from the local
	// host's point of view; each becomes one outbound policy, and a
	// decrypted packet must match one of them.
	Selectors []spd.Selector
	// InnerLocal and InnerRemote are the hosts' addresses in transport
	// mode.
	InnerLocal, InnerRemote netip.Addr
	Peer                    netip.AddrPort // the peer's UDP (NAT-T) endpoint
	In, Out                 *esp.Config
	Lifetime                sad.Lifetime
	Priority                uint32
}

// ikePolicyBase keeps the policy IDs of negotiated and trapped children
// apart from those of static children (which use the child ID itself):
// child c's i-th policy has ID ikePolicyBase | c<<16 | i.
const ikePolicyBase = 1 << 56

func ikePolicyID(c sad.ChildID, i int) uint64 { return ikePolicyBase | uint64(c)<<16 | uint64(i) }

func isIKEPolicyOf(id uint64, c sad.ChildID) bool {
	return id&ikePolicyBase != 0 && sad.ChildID(id>>16) == c
}

// anySelector checks decrypted packets against a list of SPD selectors.
type anySelector []spd.Selector

func (s anySelector) addrOnly() bool {
	for i := range s {
		if !addrOnly(&s[i]) {
			return false
		}
	}
	return true
}

func (s anySelector) AllowsInbound(f packet.Flow) bool {
	for i := range s {
		if s[i].MatchInbound(&f) {
			return true
		}
	}
	return false
}

// setPolicies replaces the child's negotiated or trap policies with one
// PROTECT policy per selector, atomically for lookups.
func (e *Engine) setPolicies(id sad.ChildID, sels []spd.Selector, prio uint32) error {
	var b spd.Batch
	for _, p := range e.spd.Policies() {
		if isIKEPolicyOf(p.ID, id) {
			b.Remove(p.ID)
		}
	}
	for i, s := range sels {
		b.Add(spd.Policy{ID: ikePolicyID(id, i), Dir: spd.Outbound, Priority: prio, Selector: s, Action: spd.Protect, Ref: uint64(id)})
	}
	return e.spd.Apply(&b)
}

// InstallNegotiated installs or updates a negotiated child: its inbound SA
// first, then its outbound SA (replacing the child's previous one, so that
// a rekey switches atomically), then its policies. On error nothing of the
// new SAs stays installed.
func (e *Engine) InstallNegotiated(c *NegotiatedChild) error {
	if c.ID == 0 || len(c.Selectors) == 0 || len(c.Selectors) > 0xffff {
		return fmt.Errorf("child %d: want a child ID and 1 to 65535 selectors, got %d", c.ID, len(c.Selectors))
	}
	in, err := esp.NewSA(c.In)
	if err != nil {
		return fmt.Errorf("child %d inbound SA: %w", c.ID, err)
	}
	out, err := esp.NewSA(c.Out)
	if err != nil {
		in.Zero()
		return fmt.Errorf("child %d outbound SA: %w", c.ID, err)
	}
	ep := sad.NewEndpoint(c.Peer)
	e.SetChild(Child{ID: c.ID, Mode: c.Mode, Local: c.InnerLocal, Remote: c.InnerRemote})
	inSA, err := e.sad.Add(sad.Config{Proto: sad.ESP, Dir: sad.Inbound, Mode: c.Mode, Engine: in, Child: c.ID, Endpoint: ep,
		Selector: anySelector(c.Selectors), Lifetime: c.Lifetime})
	if err != nil {
		in.Zero()
		out.Zero()
		return fmt.Errorf("child %d inbound SA: %w", c.ID, err)
	}
	if _, _, err := e.sad.Replace(sad.Config{Proto: sad.ESP, Dir: sad.Outbound, Mode: c.Mode, Engine: out, Child: c.ID, Endpoint: ep, Lifetime: c.Lifetime}); err != nil {
		e.sad.Delete(inSA)
		out.Zero()
		return fmt.Errorf("child %d outbound SA: %w", c.ID, err)
	}
	if err := e.setPolicies(c.ID, c.Selectors, c.Priority); err != nil {
		e.sad.DeleteChild(c.ID)
		return fmt.Errorf("child %d policies: %w", c.ID, err)
	}
	return nil
}

// RemoveNegotiated deletes a negotiated child's SAs and policies.
func (e *Engine) RemoveNegotiated(id sad.ChildID) {
	e.sad.DeleteChild(id)
	e.setPolicies(id, nil, 0)
	e.RemoveChild(id)
	e.lastAcq.Delete(id)
}

// DeleteInbound deletes the inbound SA with the given SPI of a negotiated
// child, leaving the rest of the child alone.
func (e *Engine) DeleteInbound(spi uint32) bool {
	return e.sad.Delete(e.sad.Inbound(sad.ESP, spi))
}

// InstallTrap installs PROTECT policies for a child that has no SAs yet:
// traffic they cover is dropped and raises acquire events (RFC 4301
// "acquire") until the key manager installs the child's SAs under the same
// ID. It replaces the child's policies if it has any.
func (e *Engine) InstallTrap(id sad.ChildID, sels []spd.Selector, prio uint32) error {
	if id == 0 || len(sels) == 0 || len(sels) > 0xffff {
		return fmt.Errorf("trap %d: want a child ID and 1 to 65535 selectors, got %d", id, len(sels))
	}
	e.sad.DeleteChild(id)
	e.RemoveChild(id)
	if err := e.setPolicies(id, sels, prio); err != nil {
		return fmt.Errorf("trap %d: %w", id, err)
	}
	e.lastAcq.Delete(id)
	return nil
}

// ErrNoSPI reports that no free inbound SPI was found.
var ErrNoSPI = errors.New("dataplane: no free inbound SPI")

// AllocateSPI returns a random ESP SPI (at least 256) that no inbound SA
// uses and that is not in taken.
func (e *Engine) AllocateSPI(taken func(uint32) bool) (uint32, error) {
	var b [4]byte
	for range 64 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint32(b[:]) | 0xc0000000 // strongSwan's range
		if e.sad.Inbound(sad.ESP, spi) == nil && (taken == nil || !taken(spi)) {
			return spi, nil
		}
	}
	return 0, ErrNoSPI
}

// InboundPackets returns how many packets the child's inbound SAs have
// accepted: dead peer detection watches it for traffic from the peer.
func (e *Engine) InboundPackets(id sad.ChildID) uint64 {
	var n uint64
	e.sad.Range(func(sa *sad.SA) bool {
		if sa.Child() == id && sa.Dir() == sad.Inbound {
			n += sa.Packets()
		}
		return true
	})
	return n
}

// UpdatePeer moves the child's SAs to the peer's new UDP endpoint.
func (e *Engine) UpdatePeer(id sad.ChildID, ap netip.AddrPort) {
	e.sad.Range(func(sa *sad.SA) bool {
		if sa.Child() == id {
			sa.UpdatePeer(ap)
		}
		return true
	})
}

// InstallNegotiatedInbound adds an inbound SA to a negotiated child whose
// other SAs are installed: the responder of a rekey accepts traffic on the
// new SA before the peer switches to it (make-before-break). c.Out is not
// used.
func (e *Engine) InstallNegotiatedInbound(c *NegotiatedChild) error {
	if c.ID == 0 {
		return errors.New("inbound SA without a child ID")
	}
	in, err := esp.NewSA(c.In)
	if err != nil {
		return fmt.Errorf("child %d inbound SA: %w", c.ID, err)
	}
	if _, err := e.sad.Add(sad.Config{Proto: sad.ESP, Dir: sad.Inbound, Mode: c.Mode, Engine: in, Child: c.ID,
		Endpoint: sad.NewEndpoint(c.Peer), Selector: anySelector(c.Selectors), Lifetime: c.Lifetime}); err != nil {
		in.Zero()
		return fmt.Errorf("child %d inbound SA: %w", c.ID, err)
	}
	return nil
}

// SwitchNegotiatedOutbound replaces a negotiated child's outbound SA with
// c.Out, atomically for the packets being sent. c.In is not used.
func (e *Engine) SwitchNegotiatedOutbound(c *NegotiatedChild) error {
	if c.ID == 0 {
		return errors.New("outbound SA without a child ID")
	}
	out, err := esp.NewSA(c.Out)
	if err != nil {
		return fmt.Errorf("child %d outbound SA: %w", c.ID, err)
	}
	if _, _, err := e.sad.Replace(sad.Config{Proto: sad.ESP, Dir: sad.Outbound, Mode: c.Mode, Engine: out, Child: c.ID,
		Endpoint: sad.NewEndpoint(c.Peer), Lifetime: c.Lifetime}); err != nil {
		out.Zero()
		return fmt.Errorf("child %d outbound SA: %w", c.ID, err)
	}
	return nil
}

// RemoveNegotiatedInbound deletes one inbound SA of a negotiated child (one
// a rekey replaced), if it still belongs to that child.
func (e *Engine) RemoveNegotiatedInbound(id sad.ChildID, spi uint32) bool {
	sa := e.sad.Inbound(sad.ESP, spi)
	if sa == nil || sa.Child() != id {
		return false
	}
	return e.sad.Delete(sa)
}
