package ike

import (
	"crypto/subtle"
	"net/netip"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/ike/message"
)

// natdPayloads returns the NAT detection notifications (RFC 7296 section
// 2.23) for a message to dst.
//
// The source hash is deliberately one that cannot match: the peer then sees
// us behind a NAT and encapsulates ESP in UDP, the only ESP goipsec's
// dataplane carries. strongSwan's encap=yes (and libipsec) and Android's
// IKE library force encapsulation the same way.
func natdPayloads(spii, spir uint64, dst netip.AddrPort) []message.Payload {
	return []message.Payload{
		message.NewNotify(message.NATDetectionSourceIP, randomBytes(20)),
		message.NewNotify(message.NATDetectionDestinationIP, message.NATDetectionHash(spii, spir, dst.Addr(), dst.Port())),
	}
}

// checkNAT looks at the peer's NAT detection notifications in an
// IKE_SA_INIT message that arrived from `from`: the peer is behind a NAT if
// none of its source hashes matches from, we are if its destination hash
// matches none of our addresses. goipsec encapsulates ESP in UDP either
// way, so the result only goes to the log.
func (sa *ikeSA) checkNAT(msg *message.Message, from netip.AddrPort, natt bool) {
	var src, dst [][]byte
	for _, n := range msg.Notifies() {
		switch n.NotifyType {
		case message.NATDetectionSourceIP:
			src = append(src, n.Data)
		case message.NATDetectionDestinationIP:
			dst = append(dst, n.Data)
		}
	}
	if len(src) == 0 || len(dst) == 0 {
		sa.info("peer sent no NAT detection: encapsulating ESP in UDP anyway")
		return
	}
	want := message.NATDetectionHash(sa.spiI, sa.spiR, from.Addr(), from.Port())
	sa.natRemote = true
	for _, h := range src {
		if subtle.ConstantTimeCompare(h, want) == 1 {
			sa.natRemote = false
		}
	}
	port := uint16(500)
	if natt || !sa.m.opts.PlainIKE {
		port = sa.m.opts.NATTPort
	}
	sa.natLocal = true
	for _, a := range sa.localCandidates() {
		mine := message.NATDetectionHash(sa.spiI, sa.spiR, a, port)
		for _, h := range dst {
			if subtle.ConstantTimeCompare(h, mine) == 1 {
				sa.natLocal = false
			}
		}
	}
	sa.m.log.Debug("NAT detection", sa.logFields(zap.Bool("peer_behind_nat", sa.natRemote), zap.Bool("local_behind_nat", sa.natLocal))...)
}

// localCandidates are the addresses we may be known by.
func (sa *ikeSA) localCandidates() []netip.Addr {
	var out []netip.Addr
	if sa.conn != nil {
		out = append(out, sa.conn.LocalAddrs...)
	}
	if a, ok := sa.localAddr(); ok {
		out = append(out, a)
	}
	return out
}

// localAddr is our address towards the peer: the connection's first local
// address, else what the system would use.
func (sa *ikeSA) localAddr() (netip.Addr, bool) {
	if sa.conn != nil {
		if a, ok := sa.conn.firstLocal(); ok {
			return a, true
		}
	}
	if sa.m.opts.LocalAddr != nil && sa.remote.IsValid() {
		return sa.m.opts.LocalAddr(sa.remote.Addr())
	}
	return netip.Addr{}, false
}
