package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/internal/udp"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/tun"
)

// Conn is the ciphertext side's socket, as internal/udp provides it.
type Conn interface {
	ReadBatch(msgs []udp.Message) (int, error)
	WriteBatch(msgs []udp.Message) (int, error)
	WriteTo(b []byte, addr netip.AddrPort) (int, error)
	BatchSize() int
}

// groConn is a socket that can coalesce received datagrams (udp.Conn on
// Linux). Run turns it on: the inbound loop splits what the kernel
// coalesced.
type groConn interface {
	EnableGRO() bool
}

// TunOffset is where packets start in the buffers written to the cleartext
// side: room for a virtio-net header in front (wireguard's TUN needs at
// least 10 bytes).
const TunOffset = 16

// KeepaliveInterval is how often an idle peer is sent a NAT keepalive.
const KeepaliveInterval = 20 * time.Second

// The way packets move: each direction is one goroutine that loops over
// batches, so that each system call moves many packets and each batch
// stays on one core:
//
//	outbound: TUN read, more reads while the TUN has packets queued,
//	          seal (EncryptTo: tunnel-mode ESP packets back to back in one
//	          buffer; a TCP/UDP super-packet from a kernel TUN with
//	          offloads is cut segment by segment straight into that
//	          buffer and each segment sealed in place there,
//	          encryptSuper, else it is cut into MTU packets first), one
//	          UDP send for the batch: runs of equal-size
//	          datagrams to one peer go out as UDP GSO sends, each one
//	          iovec when its datagrams are adjacent in memory
//	inbound:  UDP receive (the kernel coalesces with UDP GRO), split,
//	          open and policy check (Decrypt), one TUN write for the
//	          batch, which coalesces runs of TCP segments and UDP
//	          datagrams of one flow into super-packets (tun.Writer)
//
// One goroutine seals, taking sequence numbers in read order, so ESP
// packets leave in sequence order. A pipeline of two goroutines per
// direction (read and seal, then send) was tried and measured worse on two
// cores: handing batches over woke the other goroutine for nearly every
// batch, and the wakeups cost more than the overlap gained.

// Run moves packets between the cleartext device and the socket until ctx
// is done or either side fails; it closes neither. It also sends NAT
// keepalives to peers idle for KeepaliveInterval.
func (e *Engine) Run(ctx context.Context, dev wgtun.Device, conn Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gro := false
	if g, ok := conn.(groConn); ok {
		gro = g.EnableGRO()
	}
	loops := []func() error{
		func() error { return e.outbound(dev, conn) },
		func() error { return e.inbound(dev, conn, gro) },
		func() error { return e.keepalives(ctx, conn, KeepaliveInterval) },
	}
	errc := make(chan error, len(loops))
	for _, loop := range loops {
		go func() { errc <- loop() }()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	// The loops block in I/O; the caller unblocks them by closing dev and
	// conn after Run returns, so don't wait for them here.
	if err == nil || errors.Is(err, context.Canceled) || closed(err) {
		return nil
	}
	return err
}

// closed reports whether err means the device or socket was closed.
func closed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
}

// packetRoom is the room for one packet read from the cleartext side: its
// MTU (the TUN cuts super-packets into packets of at most the MTU), or
// MaxPacket if unknown.
func packetRoom(dev wgtun.Device) int {
	if mtu, err := dev.MTU(); err == nil && mtu > 0 && mtu < MaxPacket {
		return mtu
	}
	return MaxPacket
}

// txBatch is the outbound loop's buffers: room for packets read from the
// cleartext side (bufs[:used] hold them) and the datagrams sealed in them.
type txBatch struct {
	bufs  [][]byte
	sizes []int
	used  int
	ds    []Datagram
	arena []byte // tunnel-mode ESP packets, back to back (EncryptTo, encryptSuper)
	room  int    // the most packet bytes a buffer takes
}

// newTxBatch makes a batch for reads of up to per packets of up to room
// bytes: room for two reads, since the loop reads again only while a whole
// read still fits.
func newTxBatch(per, room int) *txBatch {
	n := 2 * max(per, 1)
	b := &txBatch{bufs: make([][]byte, n), sizes: make([]int, n), ds: make([]Datagram, 0, n)}
	b.alloc(room)
	return b
}

// alloc gives the batch buffers for packets of up to room bytes, each
// with Headroom before and Tailroom after, from one slab: compact, unlike
// a MaxPacket buffer per packet.
func (b *txBatch) alloc(room int) {
	b.room = room
	stride := Headroom + room + Tailroom
	slab := make([]byte, len(b.bufs)*stride)
	for i := range b.bufs {
		b.bufs[i] = slab[i*stride : i*stride+Headroom+room : (i+1)*stride]
	}
	b.arena = make([]byte, 0, len(b.bufs)*(room+Tailroom))
}

// roomFor reports whether the batch has room for a read of n more packets:
// buffers, datagrams and arena.
func (b *txBatch) roomFor(n int) bool {
	return len(b.bufs)-b.used >= n && cap(b.ds)-len(b.ds) >= n && cap(b.arena)-len(b.arena) >= n*(b.room+Tailroom)
}

// reset empties the batch for the next reads.
func (b *txBatch) reset() {
	b.used, b.ds, b.arena = 0, b.ds[:0], b.arena[:0]
}

// outbound reads packets from the cleartext side, seals them and sends
// them. On a Linux kernel TUN it reads on, without waiting, while packets
// are queued and a whole read still fits in the batch, so that under load
// one send takes many reads (small packets come one per read); then it
// sends the batch. Other devices hand over what they have queued in one
// read, and each read's batch is sent at once.
func (e *Engine) outbound(dev wgtun.Device, conn Conn) error {
	per := max(dev.BatchSize(), 1)
	b := newTxBatch(per, packetRoom(dev))
	rd := tun.NewReader(dev)
	failed := 0 // reads in a row that failed
	for {
		var cnt int
		var err error
		took := false          // a super-packet went straight into the arena
		wait := len(b.ds) == 0 // nothing to send: wait for packets
		// No more packets in one read than datagrams fit.
		lim := b.used + min(len(b.bufs)-b.used, cap(b.ds)-len(b.ds))
		if rd != nil {
			var sp *tun.Super
			cnt, sp, err = rd.ReadSuper(b.bufs[b.used:lim], b.sizes[b.used:lim], Headroom, wait)
			if sp != nil {
				b.ds, b.arena, took = e.encryptSuper(sp, b.ds, b.arena, b.room)
				if took {
					sp.Done()
				} else {
					// Cut as usual, into the buffers.
					cnt, err = rd.Read(b.bufs[b.used:lim], b.sizes[b.used:lim], Headroom, false)
				}
			}
		} else if wait {
			cnt, err = dev.Read(b.bufs[b.used:], b.sizes[b.used:], Headroom)
		}
		if err == nil {
			failed = 0
		} else {
			if failed++; closed(err) || failed > maxFailedReads {
				return err
			}
			// A packet the device could not hand over (malformed, cut
			// into more packets than the buffers left, or bigger than
			// them): it is lost, the device is fine.
			e.Stats.BadPacket.Add(1)
			e.log.Debug("tun read", zap.Error(err))
			if room := packetRoom(dev); room > b.room {
				// The MTU grew: bigger buffers (after sending what the
				// old ones hold).
				if err := e.send(conn, b.ds); err != nil {
					return err
				}
				b.reset()
				b.alloc(room)
				continue
			}
			cnt = max(cnt, 0)
		}
		if cnt > 0 {
			b.ds, b.arena = e.EncryptTo(b.bufs[b.used:b.used+cnt], b.sizes[b.used:b.used+cnt], Headroom, b.ds, b.arena)
			b.used += cnt
		}
		if cnt > 0 || took {
			if len(b.ds) == 0 {
				b.reset() // nothing to send: reuse the buffers
				continue
			}
			if rd != nil && b.roomFor(per) {
				continue // read on while packets are queued
			}
		}
		if len(b.ds) == 0 {
			continue
		}
		if err := e.send(conn, b.ds); err != nil {
			return err
		}
		b.reset()
	}
}

// maxFailedReads is how many reads in a row may fail before the device is
// taken for broken.
const maxFailedReads = 1000

// send writes the datagrams. The socket sends what it can and drops what it
// cannot (an unreachable family, say), so one call does it; the datagrams
// dropped are counted.
func (e *Engine) send(conn Conn, ds []Datagram) error {
	if len(ds) == 0 {
		return nil
	}
	n, err := conn.WriteBatch(ds)
	var bytes uint64
	for i := range ds[:min(max(n, 0), len(ds))] {
		bytes += uint64(ds[i].End - ds[i].Off)
	}
	e.Stats.SentPackets.Add(uint64(max(n, 0)))
	e.Stats.SentBytes.Add(bytes)
	if err != nil {
		if closed(err) {
			return err
		}
		e.Stats.SendErrors.Add(uint64(max(len(ds)-n, 1)))
	}
	return nil
}

// rxMessages is how many messages one receive system call asks for when
// the socket coalesces (GRO): each may carry up to 64 datagrams.
const rxMessages = 16

// slotRoom is the room a datagram cut from a coalesced message first gets;
// the slots grow if a peer's datagrams are bigger.
const slotRoom = 2048

// rxBatch is the inbound loop's datagrams: a datagram that came alone
// stays in its message's buffer; the datagrams of a message the kernel
// coalesced (UDP GRO) are cut apart by copying each into a slot of its own,
// with Headroom before and Tailroom after it, because the engine opens in
// place and uses the room around each datagram. ds are the datagrams not
// yet opened, tun the packets opened for the cleartext side.
type rxBatch struct {
	slots [][]byte
	room  int
	used  int
	ds    []Datagram
	tun   [][]byte
}

func newRxBatch(slots, msgs int) *rxBatch {
	slots = max(slots, 1)
	b := &rxBatch{slots: make([][]byte, slots), ds: make([]Datagram, 0, slots+msgs), tun: make([][]byte, 0, slots+msgs)}
	b.alloc(slotRoom)
	return b
}

// alloc gives the batch slots for datagrams of up to room bytes, from one
// slab. Each slot's capacity ends with it, so that nothing appended to a
// packet (the TUN's coalescing) can reach into the next.
func (b *rxBatch) alloc(room int) {
	b.room = room
	stride := Headroom + room + Tailroom
	slab := make([]byte, len(b.slots)*stride)
	for i := range b.slots {
		b.slots[i] = slab[i*stride : i*stride+Headroom+room : (i+1)*stride]
	}
}

// take moves the datagrams of m into the batch and reports whether it took
// them all; if not, the batch is full: flush it and take again (m keeps
// track of what was taken).
func (b *rxBatch) take(m *udp.Message) (done bool) {
	if m.Segment <= 0 {
		// One datagram: opened where it is.
		if len(b.ds) == cap(b.ds) {
			return false
		}
		b.ds = append(b.ds, Datagram{Buf: m.Buf, Off: m.Off, End: m.End, Addr: m.Addr})
		return true
	}
	if m.Segment > b.room {
		if b.used > 0 || len(b.ds) > 0 {
			return false // flush first, then grow
		}
		b.alloc(m.Segment) // a peer with bigger datagrams: once
	}
	for m.Off < m.End {
		if b.used == len(b.slots) || len(b.ds) == cap(b.ds) {
			return false
		}
		end := min(m.Off+m.Segment, m.End)
		buf := b.slots[b.used]
		b.used++
		n := copy(buf[Headroom:], m.Buf[m.Off:end])
		b.ds = append(b.ds, Datagram{Buf: buf, Off: Headroom, End: Headroom + n, Addr: m.Addr})
		m.Off = end
	}
	return true
}

// tunWriter writes opened packets to the cleartext side: tun.Writer on a
// Linux kernel TUN, else the device's own Write.
type tunWriter struct {
	dev wgtun.Device
	w   *tun.Writer
}

func (t *tunWriter) write(bufs [][]byte, offset int) error {
	if t.w != nil {
		_, err := t.w.Write(bufs, offset)
		return err
	}
	_, err := t.dev.Write(bufs, offset)
	return err
}

// flush opens the datagrams taken and writes the packets to the cleartext
// side in one call; only a closed device is an error.
func (e *Engine) flush(out *tunWriter, b *rxBatch) error {
	if len(b.ds) > 0 {
		b.tun = e.Decrypt(b.ds, b.tun[:0], TunOffset)
		b.ds = b.ds[:0]
	}
	var err error
	if len(b.tun) > 0 {
		err = out.write(b.tun, TunOffset)
	}
	b.used, b.tun = 0, b.tun[:0]
	if err != nil {
		if closed(err) {
			return err
		}
		e.log.Debug("tun write", zap.Error(err))
	}
	return nil
}

// inbound receives datagrams, opens them and writes the packets to the
// cleartext side, a receive call's worth at a time (with GRO, up to
// rxMessages messages of up to 64 datagrams each).
func (e *Engine) inbound(dev wgtun.Device, conn Conn, gro bool) error {
	n := max(conn.BatchSize(), 1)
	nmsgs := n
	if gro {
		nmsgs = min(n, rxMessages)
	}
	b := newRxBatch(n, nmsgs)
	out := &tunWriter{dev: dev, w: tun.NewWriter(dev)}
	if out.w != nil {
		// Every packet written was opened from ESP: its ICV vouched for it.
		out.w.SetAuthenticated(true)
	}
	msgs := make([]udp.Message, nmsgs)
	for i := range msgs {
		msgs[i].Buf = make([]byte, BufferSize)
	}
	for {
		for i := range msgs {
			m := &msgs[i]
			m.Buf = m.Buf[:Headroom+MaxPacket]
			m.Off, m.End, m.Segment = Headroom, Headroom, 0
		}
		cnt, err := conn.ReadBatch(msgs)
		if err != nil {
			if closed(err) {
				return err
			}
			e.Stats.ReceiveErrors.Add(1)
			if cnt <= 0 {
				continue
			}
		}
		for i := range cnt {
			for !b.take(&msgs[i]) {
				if err := e.flush(out, b); err != nil {
					return err
				}
			}
		}
		if err := e.flush(out, b); err != nil {
			return err
		}
	}
}

// keepalives sends a one-byte 0xFF datagram (RFC 3948 section 2.3) to each
// peer whose outbound SA sent nothing during the last interval.
func (e *Engine) keepalives(ctx context.Context, conn Conn, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	last := map[*sad.SA]uint64{}
	ka := udp.KeepaliveBytes()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		seen := map[*sad.SA]uint64{}
		e.sad.Range(func(sa *sad.SA) bool {
			if sa.Dir() != sad.Outbound {
				return true
			}
			p := sa.Packets()
			seen[sa] = p
			if prev, ok := last[sa]; ok && prev == p {
				if _, err := conn.WriteTo(ka, sa.Peer()); err == nil {
					e.Stats.KeepalivesSent.Add(1)
				}
			}
			return true
		})
		last = seen
	}
}
