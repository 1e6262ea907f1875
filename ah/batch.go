package ah

import "fmt"

// Packet is one element of a batch: a buffer with the IP packet's bounds
// and, after the call, the result for that packet.
type Packet struct {
	Buf        []byte // the whole buffer, with headroom before Off and tailroom after End
	Off, End   int    // the packet's bounds within Buf, updated by the call
	NextHeader uint8  // Open: the protocol AH protected; Seal: AH's next header
	Seq        uint64 // the sequence number used or received
	Err        error  // nil, or why this packet was not processed
}

// SealBatch protects every packet of pkts in mode (see EncapTunnel, whose
// outer header template outer is used for every packet, and
// EncapTransport), reserving their sequence numbers with one atomic
// operation. Results are written back into pkts.
func (sa *SA) SealBatch(pkts []Packet, mode Mode, outer []byte) {
	if len(pkts) == 0 {
		return
	}
	first, err := sa.nextSeq(len(pkts))
	if err == nil && mode != Tunnel && mode != Transport {
		err = fmt.Errorf("ah: %v: %w", mode, ErrNotSupported)
	}
	for i := range pkts {
		p := &pkts[i]
		if err != nil {
			p.Err = err
			continue
		}
		p.Seq = first + uint64(i)
		var start, end int
		var nh uint8
		if mode == Tunnel {
			start, end, nh, p.Err = sa.encapTunnelSeq(p.Buf, p.Off, p.End, outer, p.Seq)
		} else {
			start, end, nh, p.Err = sa.encapTransport(p.Buf, p.Off, p.End, p.Seq, true)
		}
		if p.Err == nil {
			p.Off, p.End, p.NextHeader = start, end, nh
		}
	}
}

// OpenBatch opens every packet of pkts in mode (see DecapTunnel and
// DecapTransport). Results are written back into pkts; a packet that fails
// keeps its bounds and gets Err set.
func (sa *SA) OpenBatch(pkts []Packet, mode Mode) {
	for i := range pkts {
		p := &pkts[i]
		var o Opened
		o, p.Err = sa.Open(p.Buf, p.Off, p.End)
		if p.Err != nil {
			continue
		}
		p.NextHeader, p.Seq = o.NextHeader, o.Seq
		var start, end int
		switch mode {
		case Tunnel:
			start, end, p.Err = sa.decapTunnel(p.Buf, o)
		case Transport:
			start, end = sa.decapTransport(p.Buf, p.Off, o)
		default:
			p.Err = fmt.Errorf("ah: %v: %w", mode, ErrNotSupported)
		}
		if p.Err == nil {
			p.Off, p.End = start, end
		}
	}
}
