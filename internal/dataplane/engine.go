// Package dataplane wires the cleartext side (a TUN device or a userspace
// stack), the SPD, the SAD, the ESP engine and the UDP socket together: the
// packet's way of the design, outbound and inbound, in batches.
package dataplane

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/packet"
	"github.com/goipsec/goipsec/internal/udp"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
	"github.com/goipsec/goipsec/tun"
)

// Buffer layout: every packet buffer has Headroom bytes before the packet
// (room for the ESP header, or for rebuilding an IP header in transport
// mode) and Tailroom bytes after its largest packet (ESP trailer, ICV and
// scratch).
const (
	Headroom = 128
	Tailroom = 128
	// MaxPacket is the largest packet a buffer holds.
	MaxPacket = 65535
	// BufferSize is the size of one packet buffer.
	BufferSize = Headroom + MaxPacket + Tailroom
)

// Datagram is one UDP payload, Buf[Off:End], with its remote endpoint. Buf
// is the whole packet buffer, so that the engine can use the room around
// the payload.
type Datagram = udp.Message

// Child is what the dataplane knows of a child beyond its SAs: for
// transport mode, the inner addresses with which a received transport
// payload is given its IP header back.
type Child struct {
	ID   sad.ChildID
	Mode sad.Mode
	// Local and Remote are the hosts' inner addresses (transport mode).
	Local, Remote netip.Addr
}

// Acquire asks the key manager for SAs: traffic hit a PROTECT policy whose
// child has no outbound SA (RFC 4301 "acquire").
type Acquire struct {
	Child sad.ChildID
	Flow  packet.Flow
}

// Counters are the dataplane's own drop and traffic counters, by reason
// (per-SA counters live in the SAD).
type Counters struct {
	TunPackets, TunBytes   atomic.Uint64 // read from the cleartext side
	SentPackets, SentBytes atomic.Uint64 // ESP datagrams sent
	RecvPackets, RecvBytes atomic.Uint64 // datagrams received
	Delivered              atomic.Uint64 // decrypted packets written to the cleartext side
	Bypassed               atomic.Uint64 // outbound packets under a BYPASS policy (dropped: no clear path)
	Discarded              atomic.Uint64 // outbound packets under a DISCARD policy or the default
	NoSA                   atomic.Uint64 // PROTECT without an outbound SA (fail closed)
	BadPacket              atomic.Uint64 // cleartext packets that do not parse
	SealErrors             atomic.Uint64 // sealing failed (sequence numbers exhausted, no room)
	UnknownSPI             atomic.Uint64 // ESP with an SPI we have no SA for
	Invalid                atomic.Uint64 // UDP payloads that are neither ESP, IKE nor keepalive
	Keepalives             atomic.Uint64 // NAT keepalives received
	KeepalivesSent         atomic.Uint64 // NAT keepalives sent
	IKE                    atomic.Uint64 // IKE messages handed to the key manager
	InboundDrops           atomic.Uint64 // ESP packets dropped by their SA (see SAD counters)
	Dummy                  atomic.Uint64 // dummy packets (next header 59) dropped
	SendErrors             atomic.Uint64 // datagrams the socket did not send
	ReceiveErrors          atomic.Uint64 // receive calls that failed
}

// Engine moves packets between the cleartext side and the UDP socket.
type Engine struct {
	spd *spd.DB
	sad *sad.DB
	log *zap.Logger

	children atomic.Pointer[map[sad.ChildID]*Child]
	childMu  sync.Mutex

	acquire    chan Acquire
	lastAcq    sync.Map // sad.ChildID -> *atomic.Int64 (unix nanos)
	ikeHandler atomic.Pointer[func(msg []byte, from netip.AddrPort)]

	// Stats are the engine's counters.
	Stats Counters
}

// New returns an engine over the given SPD and SAD.
func New(policies *spd.DB, sas *sad.DB, log *zap.Logger) *Engine {
	if log == nil {
		log = zap.NewNop()
	}
	e := &Engine{spd: policies, sad: sas, log: log, acquire: make(chan Acquire, 64)}
	m := map[sad.ChildID]*Child{}
	e.children.Store(&m)
	return e
}

// SetChild adds or replaces what the engine knows of a child.
func (e *Engine) SetChild(c Child) {
	e.childMu.Lock()
	defer e.childMu.Unlock()
	old := *e.children.Load()
	m := make(map[sad.ChildID]*Child, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[c.ID] = &c
	e.children.Store(&m)
}

// RemoveChild forgets a child.
func (e *Engine) RemoveChild(id sad.ChildID) {
	e.childMu.Lock()
	defer e.childMu.Unlock()
	old := *e.children.Load()
	m := make(map[sad.ChildID]*Child, len(old))
	for k, v := range old {
		if k != id {
			m[k] = v
		}
	}
	e.children.Store(&m)
}

// Acquires returns the channel of acquire events for the key manager.
func (e *Engine) Acquires() <-chan Acquire { return e.acquire }

// SetIKEHandler sets the function that receives IKE messages arriving on
// the NAT-T port (without their non-ESP marker). The message is only valid
// during the call.
func (e *Engine) SetIKEHandler(f func(msg []byte, from netip.AddrPort)) {
	e.ikeHandler.Store(&f)
}

// raiseAcquire tells the key manager, at most once a second per child.
func (e *Engine) raiseAcquire(child sad.ChildID, f *packet.Flow) {
	now := time.Now().UnixNano()
	v, _ := e.lastAcq.Load(child)
	if v == nil {
		v, _ = e.lastAcq.LoadOrStore(child, new(atomic.Int64))
	}
	last := v.(*atomic.Int64)
	prev := last.Load()
	if now-prev < int64(time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	select {
	case e.acquire <- Acquire{Child: child, Flow: *f}:
	default:
	}
}

// Encrypt runs the outbound half of the packet's way on a batch read from
// the cleartext side: bufs[i][offset:offset+sizes[i]] are IP packets, each
// buffer with Tailroom capacity beyond it. Packets a PROTECT policy covers
// are sealed in place with their child's outbound SA and appended to out as
// datagrams for the peer; everything else is counted and dropped (there is
// no clear path: the UDP socket is the only way out). It returns the
// extended out.
//
// Consecutive packets of one flow (a TCP super-packet cut up by the TUN,
// say), or of one address pair while no outbound policy names a protocol
// or ports, share one SPD lookup and one SAD lookup. Consecutive packets
// of one SA share one update of its lifetime counters (sad.SA.CountRun,
// exact against the limits) and one reservation of sequence numbers, and
// are sealed in sequence order; the batch's counters are added once at
// the end. The SPD is read once per batch: policy changes apply from the
// next batch on.
func (e *Engine) Encrypt(bufs [][]byte, sizes []int, offset int, out []Datagram) []Datagram {
	out, _ = e.EncryptTo(bufs, sizes, offset, out, nil)
	return out
}

// EncryptTo is Encrypt writing tunnel-mode ESP packets back to back into
// arena (appended after len(arena), while its capacity lasts, each taking
// up to its packet's length plus Tailroom) rather than in place: a run of
// them then goes to the kernel as one piece of memory, one iovec for a
// whole UDP GSO send. It returns the extended out and arena; a nil arena
// seals everything in place.
func (e *Engine) EncryptTo(bufs [][]byte, sizes []int, offset int, out []Datagram, arena []byte) ([]Datagram, []byte) {
	snap := e.spd.Snapshot()
	// While no outbound policy of a family names a protocol or ports, the
	// verdict depends on the addresses only: it is reused for every packet
	// between the same pair, and an optionless IPv4 packet between the
	// pair of the last lookup is not even parsed.
	addrOnly4 := snap.AddrOnly(spd.Outbound, true)
	addrOnly6 := snap.AddrOnly(spd.Outbound, false)
	var (
		f, prev    packet.Flow
		d          spd.Decision
		sa         *sad.SA
		haveLookup bool
		fast4      bool   // the last verdict holds for IPv4 packets between raw4's addresses
		raw4       uint64 // source and destination as on the wire
		bytes      uint64
		run        sealRun
	)
	for i, size := range sizes {
		buf := bufs[i]
		bytes += uint64(size)
		if offset+size > len(buf) || size < 0 {
			e.Stats.BadPacket.Add(1)
			continue
		}
		pkt := buf[offset : offset+size]
		// ParseFlow could not fail on an optionless IPv4 header whose total
		// length fits: the addresses are all the verdict needs.
		if !(fast4 && size >= packet.IPv4MinHeaderLen && pkt[0] == 0x45 &&
			binary.LittleEndian.Uint64(pkt[12:20]) == raw4 &&
			int(binary.BigEndian.Uint16(pkt[2:4])) >= packet.IPv4MinHeaderLen &&
			int(binary.BigEndian.Uint16(pkt[2:4])) <= size) {
			if err := packet.ParseFlow(pkt, &f); err != nil {
				e.Stats.BadPacket.Add(1)
				continue
			}
			same := haveLookup && (f == prev ||
				f.Src == prev.Src && f.Dst == prev.Dst && (f.Src.Is4() && addrOnly4 || f.Src.Is6() && addrOnly6))
			if !same {
				d = snap.Lookup(spd.Outbound, &f)
				sa = nil
				if d.Action == spd.Protect {
					sa = e.sad.Outbound(sad.ChildID(d.Ref))
				}
				prev, haveLookup = f, true
				// The shortcut skips the flow an acquire needs: not for a
				// PROTECT verdict without an SA.
				fast4 = addrOnly4 && pkt[0] == 0x45 && (sa != nil || d.Action != spd.Protect)
				if fast4 {
					raw4 = binary.LittleEndian.Uint64(pkt[12:20])
				}
			}
		}
		switch d.Action {
		case spd.Protect:
		case spd.Bypass:
			e.Stats.Bypassed.Add(1)
			continue
		default:
			e.Stats.Discarded.Add(1)
			continue
		}
		if sa == nil {
			e.Stats.NoSA.Add(1)
			e.raiseAcquire(sad.ChildID(d.Ref), &f)
			continue
		}
		if sa.ESP() == nil {
			e.Stats.NoSA.Add(1)
			continue
		}
		if run.sa != sa || run.n == len(run.idx) {
			out, arena = e.sealRun(&run, bufs, sizes, offset, out, arena)
			run.sa = sa
		}
		run.idx[run.n] = i
		run.sizes[run.n] = size
		run.n++
	}
	out, arena = e.sealRun(&run, bufs, sizes, offset, out, arena)
	e.Stats.TunPackets.Add(uint64(len(sizes)))
	e.Stats.TunBytes.Add(bytes)
	return out, arena
}

// sealRun is a run of outbound packets of one SA waiting to be counted
// against its lifetime and sealed: bufs[idx[k]] of the batch.
type sealRun struct {
	sa    *sad.SA
	n     int
	idx   [64]int
	sizes [64]int
}

// countAndReserve counts a run of packets of the given sizes on sa
// (sad.SA.CountRun, exact against the lifetime limits: the packets past a
// limit are dropped, as NoSA) and reserves sequence numbers for those
// accepted with one atomic operation. It returns the first and how many
// packets, from the start of the run, are to be sealed.
func (e *Engine) countAndReserve(sa *sad.SA, engine *esp.SA, sizes []int) (seq uint64, got int) {
	ok := sa.CountRun(sizes)
	if ok < len(sizes) {
		e.Stats.NoSA.Add(uint64(len(sizes) - ok))
	}
	if ok == 0 {
		return 0, 0
	}
	seq, got, err := engine.ReserveSeq(ok)
	if got < ok {
		e.Stats.SealErrors.Add(uint64(ok - got))
		if errors.Is(err, esp.ErrSeqOverflow) {
			e.log.Warn("outbound SA exhausted its sequence numbers", zap.Uint32("spi", sa.SPI()))
		}
	}
	return seq, got
}

// sealRun counts the run's packets on their SA (sad.SA.CountRun, exact
// against the lifetime limits), reserves their sequence numbers at once
// and seals them in order, as EncryptTo does a packet.
func (e *Engine) sealRun(r *sealRun, bufs [][]byte, sizes []int, offset int, out []Datagram, arena []byte) ([]Datagram, []byte) {
	if r.n == 0 {
		return out, arena
	}
	sa, n := r.sa, r.n
	r.n = 0
	engine := sa.ESP()
	seq, got := e.countAndReserve(sa, engine, r.sizes[:n])
	if got == 0 {
		return out, arena
	}
	peer := sa.Peer()
	transport := sa.Mode() == sad.Transport
	for k := range got {
		i := r.idx[k]
		buf, size := bufs[i], sizes[i]
		pkt := buf[offset : offset+size]
		var start, end int
		var err error
		if transport {
			// The socket writes the outer IP header: ESP carries only the
			// transport payload (and what follows the insertion point).
			nhOff, ins, ierr := packet.TransportInsertion(pkt)
			if ierr != nil {
				e.Stats.BadPacket.Add(1)
				seq++
				continue
			}
			start, end, err = engine.SealAt(buf, offset+ins, offset+size, pkt[nhOff], seq)
		} else if a := len(arena); arena != nil && cap(arena)-a >= size+Tailroom {
			var m int
			m, err = engine.EncapTunnelToAt(arena[a:a+size+Tailroom], buf, offset, offset+size, seq)
			if err == nil {
				out = append(out, Datagram{Buf: arena[:cap(arena)], Off: a, End: a + m, Addr: peer})
				arena = arena[:a+m]
				seq++
				continue
			}
		} else {
			start, end, err = engine.EncapTunnelAt(buf, offset, offset+size, seq)
		}
		seq++
		if err != nil {
			e.Stats.SealErrors.Add(1)
			continue
		}
		out = append(out, Datagram{Buf: buf[:cap(buf)], Off: start, End: end, Addr: peer})
	}
	return out, arena
}

// encryptSuper seals the segments of a TCP or UDP super-packet read from
// the cleartext side straight into arena (appended after len(arena)), in
// tunnel mode, and the super-packet takes one SPD and one SAD lookup (its
// segments share their flow). With AES-GCM or ChaCha20-Poly1305 each
// segment's packet is made in the super-packet's own buffer (headers over
// the end of the segment before) and sealed from there into the arena
// (esp.SA.EncapTunnelFrom): its payload is read by the checksum and the
// cipher, and written once, encrypted. With the other ciphers, or without
// room after the super-packet, each segment's packet is written where its
// ESP payload goes and sealed in place there. No buffer holds a segment in
// between either way. Every segment is counted as EncryptTo counts a packet. It
// returns the extended out and arena, and false, leaving everything
// untouched, when it cannot take the super-packet whole: a segment longer
// than room, out or arena without room for every segment, a flow that
// does not parse, no PROTECT policy, no outbound SA, transport mode. The
// caller then has the super-packet cut and gives its packets to EncryptTo,
// which counts, drops or seals them one by one as usual.
func (e *Engine) encryptSuper(sp *tun.Super, out []Datagram, arena []byte, room int) ([]Datagram, []byte, bool) {
	n := sp.Segments()
	longest := sp.SegmentLen(0)
	if n == 0 || longest > room || cap(out)-len(out) < n || arena == nil {
		return out, arena, false
	}
	var f packet.Flow
	if packet.ParseFlow(sp.Packet(), &f) != nil {
		return out, arena, false
	}
	d := e.spd.Snapshot().Lookup(spd.Outbound, &f)
	if d.Action != spd.Protect {
		return out, arena, false
	}
	sa := e.sad.Outbound(sad.ChildID(d.Ref))
	if sa == nil || sa.Mode() != sad.Tunnel {
		return out, arena, false
	}
	engine := sa.ESP()
	if engine == nil {
		return out, arena, false
	}
	// Each segment's packet goes Headroom() after where its ESP packet
	// starts, for the ESP header (and GMAC's scratch); the ESP packet ends
	// at most TrailerLen() after the segment, and the last needs
	// ScratchLen beyond it.
	head := engine.Headroom()
	a := len(arena)
	if a+n*(head+longest+engine.TrailerLen())+esp.ScratchLen > cap(arena) {
		return out, arena, false
	}
	full := arena[:cap(arena)]
	peer := sa.Peer()
	// With a cipher that encrypts from one buffer into another, each
	// segment is made where its payload lies in the super-packet and
	// sealed from there: its payload is never copied.
	from := engine.SealsFrom() && sp.InPlace()
	// The segments are counted and given sequence numbers a run at a
	// time, as EncryptTo does its packets.
	var sizes [len(sealRun{}.sizes)]int
	var bytes uint64
	for first := 0; first < n; first += len(sizes) {
		k := min(n-first, len(sizes))
		for j := range k {
			sizes[j] = sp.SegmentLen(first + j)
			bytes += uint64(sizes[j])
		}
		seq, got := e.countAndReserve(sa, engine, sizes[:k])
		for j := range got {
			var start, end int
			var err error
			if from {
				seg := sp.SegmentInPlace(first + j)
				start = a
				end, err = engine.EncapTunnelFromAt(full[a:], seg, 0, len(seg), seq+uint64(j))
				end += a
			} else {
				size := sp.WriteSegment(first+j, full[a+head:])
				start, end, err = engine.EncapTunnelAt(full, a+head, a+head+size, seq+uint64(j))
			}
			if err != nil {
				e.Stats.SealErrors.Add(1)
				continue
			}
			out = append(out, Datagram{Buf: full, Off: start, End: end, Addr: peer})
			a = end
		}
	}
	e.Stats.TunPackets.Add(uint64(n))
	e.Stats.TunBytes.Add(bytes)
	return out, arena[:a], true
}

// Decrypt runs the inbound half on a batch of received datagrams (each Buf
// with Headroom before it and Tailroom after it in its buffer). Decrypted IP
// packets are appended to tunBufs so that tunBufs[j][offset:] is the packet
// (offset must be at most Headroom-40); IKE messages go to the IKE handler.
//
// Consecutive datagrams of one SA (the usual case: a GRO batch of one
// flow) share one SAD lookup, one inbound policy check per inner flow (per
// pair of inner addresses when the SA's selectors name no protocol) and
// one update of the SA's counters (sad.SA.CountRun, exact against the
// lifetime limits); the batch's own counters are added once at the end.
func (e *Engine) Decrypt(in []Datagram, tunBufs [][]byte, offset int) [][]byte {
	var (
		f, okFlow packet.Flow
		okSA      *sad.SA // the SA whose selectors okFlow passed
		okByAddr  bool    // okSA's selectors look at addresses only
		okRaw4    bool    // okFlow came from an IPv4 header without options
		okAddrs4  uint64  // its source and destination, as they were on the wire
		sa        *sad.SA // the SA of the last ESP datagram, for lastSPI
		engine    *esp.SA
		lastSPI   uint32
		bytes     uint64
		run       countRun
	)
	run.tunBufs = tunBufs
	for i := range in {
		d := &in[i]
		p := d.Payload()
		bytes += uint64(len(p))
		switch udp.Classify(p) {
		case udp.KindESP:
		case udp.KindKeepalive:
			e.Stats.Keepalives.Add(1)
			continue
		case udp.KindIKE:
			e.Stats.IKE.Add(1)
			if h := e.ikeHandler.Load(); h != nil {
				(*h)(p[udp.NonESPMarkerLen:], d.Addr)
			}
			continue
		default:
			e.Stats.Invalid.Add(1)
			continue
		}
		spi, _ := esp.SPIOf(p)
		if sa == nil || spi != lastSPI {
			sa, engine, lastSPI = nil, nil, spi
			if sa = e.sad.Inbound(sad.ESP, spi); sa != nil {
				engine = sa.ESP()
			}
		}
		if engine == nil {
			e.Stats.UnknownSPI.Add(1)
			continue
		}
		full, base := d.Buf[:cap(d.Buf)], d.Off
		var start, end int
		var err error
		if sa.Mode() == sad.Transport {
			var nh uint8
			start, end, nh, _, err = engine.Open(full, base, base+len(p))
			if err == nil {
				start, err = e.rebuildHeader(full, start, end, nh, sa)
			}
		} else {
			start, end, err = engine.DecapTunnel(full, base, base+len(p))
		}
		if err != nil {
			if errors.Is(err, esp.ErrDummy) {
				e.Stats.Dummy.Add(1)
				continue
			}
			sa.DropErr(err)
			e.Stats.InboundDrops.Add(1)
			continue
		}
		inner := full[start:end]
		// An IPv4 header without options between the addresses whose
		// verdict is known (the selectors look at nothing else) needs no
		// parsing: Open and DecapTunnel (or rebuildHeader) checked its
		// version and lengths, so ParseFlow could not fail on it.
		if !(okByAddr && sa == okSA && okRaw4 && inner[0] == 0x45 &&
			binary.LittleEndian.Uint64(inner[12:20]) == okAddrs4) {
			if packet.ParseFlow(inner, &f) != nil {
				sa.Drop(sad.DropBadLength)
				e.Stats.InboundDrops.Add(1)
				continue
			}
			if sa != okSA || f.Src != okFlow.Src || f.Dst != okFlow.Dst || !okByAddr && f != okFlow {
				if !sa.CheckInbound(f) { // counted by the SA as a policy drop
					e.Stats.InboundDrops.Add(1)
					continue
				}
				if sa != okSA {
					okByAddr = selectsByAddr(sa.Selector())
				}
				okSA, okFlow = sa, f
				okRaw4 = inner[0] == 0x45
				if okRaw4 {
					okAddrs4 = binary.LittleEndian.Uint64(inner[12:20])
				}
			}
		}
		if start < offset {
			e.Stats.InboundDrops.Add(1)
			continue
		}
		// The packet authenticated: follow the peer's NAT mapping.
		if d.Addr.IsValid() && sa.UpdatePeer(d.Addr) {
			e.log.Info("peer endpoint changed", zap.Uint32("spi", spi), zap.Stringer("addr", d.Addr))
			e.updateOutboundPeer(sa, d.Addr)
		}
		if run.sa != sa || run.n == len(run.sizes) {
			e.flushRun(&run)
			run.sa, run.first = sa, len(run.tunBufs)
		}
		run.sizes[run.n] = len(inner)
		run.n++
		run.tunBufs = append(run.tunBufs, full[start-offset:end])
	}
	e.flushRun(&run)
	e.Stats.RecvPackets.Add(uint64(len(in)))
	e.Stats.RecvBytes.Add(bytes)
	e.Stats.Delivered.Add(run.delivered)
	return run.tunBufs
}

// countRun is a run of decrypted packets of one SA waiting to be counted
// against its lifetime: run.tunBufs[first:] holds them.
type countRun struct {
	sa        *sad.SA
	sizes     [64]int
	n         int
	first     int
	tunBufs   [][]byte
	delivered uint64
}

// flushRun counts the run's packets on their SA and removes from tunBufs
// those the SA refuses (past its hard lifetime, or deleted).
func (e *Engine) flushRun(r *countRun) {
	if r.n == 0 {
		return
	}
	ok := r.sa.CountRun(r.sizes[:r.n])
	if ok < r.n {
		clear(r.tunBufs[r.first+ok:])
		r.tunBufs = r.tunBufs[:r.first+ok]
		e.Stats.InboundDrops.Add(uint64(r.n - ok))
	}
	r.delivered += uint64(ok)
	r.n = 0
}

// updateOutboundPeer moves the child's outbound SA to the peer's new
// address when it does not share the inbound SA's endpoint cell.
func (e *Engine) updateOutboundPeer(in *sad.SA, ap netip.AddrPort) {
	if out := e.sad.Outbound(in.Child()); out != nil && out.Endpoint() != in.Endpoint() {
		out.UpdatePeer(ap)
	}
}

// rebuildHeader gives a transport-mode payload full[start:end] (protocol
// nh) an IP header in front, from the child's inner addresses, and returns
// the new start.
func (e *Engine) rebuildHeader(full []byte, start, end int, nh uint8, sa *sad.SA) (int, error) {
	c := (*e.children.Load())[sa.Child()]
	if c == nil || !c.Remote.IsValid() {
		return 0, errNoChild
	}
	n := end - start
	if c.Remote.Is4() {
		s := start - packet.IPv4MinHeaderLen
		if s < 0 || n+packet.IPv4MinHeaderLen > 0xffff {
			return 0, esp.ErrNoRoom
		}
		h := packet.IPv4(full[s:start])
		h[0] = 0x45
		h.SetTOS(0)
		h.SetTotalLength(uint16(n + packet.IPv4MinHeaderLen))
		h.SetID(0)
		h.SetFlagsFragmentOffset(packet.IPv4FlagDontFragment, 0)
		h.SetTTL(64)
		h.SetProtocol(nh)
		h.SetSrc(c.Remote)
		h.SetDst(c.Local)
		h.ComputeChecksum()
		return s, nil
	}
	s := start - packet.IPv6HeaderLen
	if s < 0 || n > 0xffff {
		return 0, esp.ErrNoRoom
	}
	h := packet.IPv6(full[s:start])
	h[0], h[1], h[2], h[3] = 0x60, 0, 0, 0
	h.SetPayloadLength(uint16(n))
	h.SetNextHeader(nh)
	h.SetHopLimit(64)
	h.SetSrc(c.Remote)
	h.SetDst(c.Local)
	return s, nil
}

var errNoChild = errors.New("dataplane: transport SA without inner addresses")
