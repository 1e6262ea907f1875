package esp

// Packet is one element of a batch: a buffer with the packet's bounds and,
// after the call, the result for that packet.
type Packet struct {
	Buf        []byte // the whole buffer, with headroom before Off and tailroom after End
	Off, End   int    // the packet's bounds within Buf, updated by the call
	NextHeader uint8  // Seal: the payload's protocol; Open: the decrypted next header
	Seq        uint64 // the sequence number used or received
	Err        error  // nil, or why this packet was not processed
}

// SealBatch seals every packet of pkts (see Seal), reserving their sequence
// numbers with one atomic operation. Results are written back into pkts.
func (sa *SA) SealBatch(pkts []Packet) {
	if len(pkts) == 0 {
		return
	}
	first, err := sa.nextSeq(len(pkts))
	for i := range pkts {
		p := &pkts[i]
		if err != nil {
			p.Err = err
			continue
		}
		p.Seq = first + uint64(i)
		p.Off, p.End, p.Err = sa.seal(p.Buf, p.Off, p.End, p.NextHeader, p.Seq)
	}
}

// OpenBatch opens every packet of pkts (see Open). Results are written back
// into pkts; a packet that fails keeps its bounds and gets Err set.
func (sa *SA) OpenBatch(pkts []Packet) {
	for i := range pkts {
		p := &pkts[i]
		start, end, nh, seq, err := sa.Open(p.Buf, p.Off, p.End)
		p.Err = err
		if err == nil {
			p.Off, p.End, p.NextHeader, p.Seq = start, end, nh, seq
		}
	}
}
