package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
)

// StaticChild is a child with static keys (manual keying): the policy, the
// two SAs and, for transport mode, the inner addresses.
type StaticChild struct {
	ID   sad.ChildID
	Mode sad.Mode
	// Local and Remote are the traffic selectors, from the local host's
	// point of view.
	Local, Remote []netip.Prefix
	// InnerLocal and InnerRemote are the hosts' addresses in transport mode.
	InnerLocal, InnerRemote netip.Addr
	Peer                    netip.AddrPort // the peer's UDP endpoint
	In, Out                 *esp.Config
	Priority                uint32
}

// selector checks decrypted packets against an SPD selector.
type selector struct{ s spd.Selector }

func (s *selector) AllowsInbound(f packet.Flow) bool { return s.s.MatchInbound(&f) }

func (s *selector) addrOnly() bool { return addrOnly(&s.s) }

// addrSelector is a sad.Selector that can tell whether its verdict
// depends on a packet's addresses only, so that Decrypt may reuse it for
// every packet between the same two addresses.
type addrSelector interface {
	addrOnly() bool
}

// addrOnly reports whether s selects by addresses alone: any protocol, so
// any ports.
func addrOnly(s *spd.Selector) bool {
	return s.Proto == 0 && s.LocalPorts.IsAny() && s.RemotePorts.IsAny()
}

// selectsByAddr reports whether sel's verdict depends on the addresses
// alone.
func selectsByAddr(sel sad.Selector) bool {
	a, ok := sel.(addrSelector)
	return ok && a.addrOnly()
}

func ranges(ps []netip.Prefix) []spd.AddrRange {
	out := make([]spd.AddrRange, len(ps))
	for i, p := range ps {
		out[i] = spd.PrefixRange(p)
	}
	return out
}

// InstallStatic installs a static child: its outbound PROTECT policy, its
// inbound and outbound ESP SAs and what the engine needs of it.
func (e *Engine) InstallStatic(c *StaticChild) error {
	in, err := esp.NewSA(c.In)
	if err != nil {
		return fmt.Errorf("child %d inbound SA: %w", c.ID, err)
	}
	out, err := esp.NewSA(c.Out)
	if err != nil {
		return fmt.Errorf("child %d outbound SA: %w", c.ID, err)
	}
	sel := spd.Selector{Local: ranges(c.Local), Remote: ranges(c.Remote)}
	ep := sad.NewEndpoint(c.Peer)
	e.SetChild(Child{ID: c.ID, Mode: c.Mode, Local: c.InnerLocal, Remote: c.InnerRemote})
	if _, err := e.sad.Add(sad.Config{Proto: sad.ESP, Dir: sad.Inbound, Mode: c.Mode, Engine: in, Child: c.ID, Endpoint: ep, Selector: &selector{sel}}); err != nil {
		return fmt.Errorf("child %d inbound SA: %w", c.ID, err)
	}
	if _, err := e.sad.Add(sad.Config{Proto: sad.ESP, Dir: sad.Outbound, Mode: c.Mode, Engine: out, Child: c.ID, Endpoint: ep}); err != nil {
		return fmt.Errorf("child %d outbound SA: %w", c.ID, err)
	}
	pol := spd.Policy{ID: uint64(c.ID), Dir: spd.Outbound, Priority: c.Priority, Selector: sel, Action: spd.Protect, Ref: uint64(c.ID)}
	if err := e.spd.Add(pol); err != nil {
		return fmt.Errorf("child %d policy: %w", c.ID, err)
	}
	return nil
}
