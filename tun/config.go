package tun

import (
	"errors"
	"net/netip"
)

// DefaultTxQueueLen is the transmit queue length a TUN device read by the
// daemon is given, up from the kernel's 500: a sender on the host can
// queue packets faster than the daemon reads them one per system call
// while it waits for a CPU, and every packet beyond the queue is dropped.
// On two busy CPUs, 64-byte UDP at full speed lost 41% of its packets at a
// 500-packet queue and 2% at 4096. TCP is not affected: its senders keep
// only a few (super-)packets queued (TCP small queues).
const DefaultTxQueueLen = 4096

// Undo reverts one configuration step. A step that is already gone (for
// example with its link) counts as undone.
type Undo func() error

// Config is what Configure sets up on a link. Zero fields are left alone.
type Config struct {
	// MTU is the link MTU.
	MTU int
	// TxQueueLen is the link's transmit queue length in packets
	// (DefaultTxQueueLen suits a TUN device read by a daemon).
	TxQueueLen int
	// Addresses are the link's own addresses with their on-link prefix
	// (10.1.0.1/24).
	Addresses []netip.Prefix
	// Routes are remote prefixes routed through the link (main table).
	Routes []netip.Prefix
	// Policy, if set, routes prefixes through the link by policy routing
	// (with fail-closed routes of its own, see Link.AddFailClosed).
	Policy *PolicyRouting
	// FailClosed are prefixes given an unreachable route of the lowest
	// preference in the main table, so that their traffic cannot leave
	// in clear through another route once the link is gone.
	FailClosed []netip.Prefix
}

// PolicyRouting routes Prefixes through a link for every packet that does
// not carry the firewall mark Mark, as wg-quick does: so that traffic to the
// peer's own underlay address is protected while the daemon's own packets
// (its UDP socket is marked) still leave through the normal route.
//
// It adds, per address family present in Prefixes: a route for each prefix
// through the link in table Table, the rule "not fwmark Mark lookup Table",
// and, when a prefix is a default route (/0), the rule "lookup main
// suppress_prefixlength 0" ahead of it so that the main table's more
// specific routes keep working. Without a default route that rule is not
// added: it would let main's connected routes (the peer's own subnet) win.
//
// Strict reverse-path filtering (rp_filter=1) drops the peer's replies,
// which arrive unmarked on the underlay interface; use loose mode (2) or 0.
type PolicyRouting struct {
	// Mark is the firewall mark of the daemon's socket; must not be 0.
	Mark uint32
	// Table is the routing table for the prefixes; must not be 0, 253
	// (default), 254 (main) or 255 (local).
	Table uint32
	// Prefixes are the destinations routed through the link.
	Prefixes []netip.Prefix
	// Priority is the fwmark rule's priority (the suppress rule gets
	// Priority-1); 0 lets the kernel choose, just ahead of existing rules.
	Priority uint32
}

func (p *PolicyRouting) validate() error {
	switch {
	case p.Mark == 0:
		return errors.New("tun: policy routing needs a non-zero firewall mark")
	case p.Table == 0 || p.Table >= 253 && p.Table <= 255:
		return errors.New("tun: policy routing needs a table other than 0, default, main and local")
	case p.Priority == 1:
		return errors.New("tun: policy routing priority must not be 1")
	}
	for _, pfx := range p.Prefixes {
		if !pfx.IsValid() {
			return errors.New("tun: invalid prefix for policy routing")
		}
	}
	return nil
}

// undoAll runs undo steps in reverse order and joins their errors.
func undoAll(steps []Undo) error {
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
