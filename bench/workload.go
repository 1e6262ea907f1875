package bench

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/goipsec/goipsec/internal/dataplane"
	"github.com/goipsec/goipsec/internal/packet"
)

// Buffer layout of a ring slot: the dataplane's own, headroom before the
// packet and tailroom after the largest packet of the ring.
const (
	headroom = dataplane.Headroom
	tailroom = dataplane.Tailroom
)

// Ring lengths: at least minRing packets and at most maxRing, in at most
// maxSlab bytes of slots.
const (
	minRing = 64
	maxRing = 8192
	maxSlab = 4 << 20
)

// ring is one goroutine's packets, each in its own slot of one slab: the
// inner IP packet at offset headroom of the slot.
type ring struct {
	slab   []byte
	stride int
	sizes  []int // inner packet length per slot
	start  []int // sealed packet bounds per slot (open workloads)
	end    []int
}

// ringLen is the number of packets of a ring holding about bytes of
// packets of size s, a whole number of size patterns.
func ringLen(s Size, bytes int) int {
	n := int(float64(bytes) / s.Mean())
	n = max(minRing, min(maxRing, maxSlab/slotSize(s), n))
	p := len(s.Pattern)
	return max(p, n/p*p)
}

// newRing builds a ring of n packets cycling through s's lengths: IPv4/UDP
// packets from src to dst with pseudo-random payloads.
func newRing(n int, s Size, src, dst [4]byte, seed uint64) *ring {
	stride := slotSize(s)
	r := &ring{slab: make([]byte, n*stride), stride: stride, sizes: make([]int, n), start: make([]int, n), end: make([]int, n)}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := range n {
		l := s.Pattern[i%len(s.Pattern)]
		r.sizes[i] = l
		buf := r.buf(i)
		pkt := buf[headroom : headroom+l]
		for j := 28; j < l; j += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rng.Uint64())
			copy(pkt[j:], w[:])
		}
		writeHeaders(pkt, src, dst, uint16(i))
	}
	return r
}

// slotSize is the length of a ring slot for packets of size s: headroom,
// the largest packet and tailroom, rounded up to a cache line.
func slotSize(s Size) int { return (headroom + s.Max() + tailroom + 63) &^ 63 }

// buf returns slot i, its capacity limited to the slot.
func (r *ring) buf(i int) []byte {
	s := i * r.stride
	return r.slab[s : s+r.stride : s+r.stride]
}

// len is the number of packets.
func (r *ring) len() int { return len(r.sizes) }

// writeHeaders writes an IPv4 and a UDP header for the packet pkt.
func writeHeaders(pkt []byte, src, dst [4]byte, id uint16) {
	ip := packet.IPv4(pkt)
	pkt[0] = 0x45
	ip.SetTOS(0)
	ip.SetTotalLength(uint16(len(pkt)))
	ip.SetID(id)
	ip.SetFlagsFragmentOffset(packet.IPv4FlagDontFragment, 0)
	ip.SetTTL(64)
	ip.SetProtocol(packet.ProtoUDP)
	copy(pkt[12:16], src[:])
	copy(pkt[16:20], dst[:])
	ip.ComputeChecksum()
	u := pkt[packet.IPv4MinHeaderLen:]
	binary.BigEndian.PutUint16(u[0:2], 40000+id%1000)
	binary.BigEndian.PutUint16(u[2:4], 5201)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	u[6], u[7] = 0, 0 // no UDP checksum: nobody checks it here
}
