package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"go.uber.org/zap"

	"github.com/goipsec/goipsec/internal/udp"
	"github.com/goipsec/goipsec/sad"
)

// Conn is the ciphertext side's socket, as internal/udp provides it.
type Conn interface {
	ReadBatch(msgs []udp.Message) (int, error)
	WriteBatch(msgs []udp.Message) (int, error)
	WriteTo(b []byte, addr netip.AddrPort) (int, error)
	BatchSize() int
}

// TunOffset is where packets start in the buffers written to the cleartext
// side: room for a virtio-net header in front (wireguard's TUN needs at
// least 10 bytes).
const TunOffset = 16

// KeepaliveInterval is how often an idle peer is sent a NAT keepalive.
const KeepaliveInterval = 20 * time.Second

// Run moves packets between the cleartext device and the socket until ctx
// is done or either side fails; it closes neither. It also sends NAT
// keepalives to peers idle for KeepaliveInterval.
func (e *Engine) Run(ctx context.Context, dev wgtun.Device, conn Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); errc <- e.outbound(ctx, dev, conn) }()
	go func() { defer wg.Done(); errc <- e.inbound(ctx, dev, conn) }()
	go func() { defer wg.Done(); errc <- e.keepalives(ctx, conn, KeepaliveInterval) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	cancel()
	// The loops block in I/O; the caller unblocks them by closing dev and
	// conn after Run returns, so don't wait for them here.
	go func() { wg.Wait() }()
	if errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

func (e *Engine) outbound(ctx context.Context, dev wgtun.Device, conn Conn) error {
	n := dev.BatchSize()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, BufferSize)
	}
	sizes := make([]int, n)
	ds := make([]Datagram, 0, n)
	for ctx.Err() == nil {
		for i := range bufs {
			bufs[i] = bufs[i][:Headroom+MaxPacket]
		}
		cnt, err := dev.Read(bufs, sizes, Headroom)
		if err != nil {
			if errors.Is(err, wgtun.ErrTooManySegments) {
				e.log.Warn("tun: too many segments in one read")
				continue
			}
			return err
		}
		ds = e.Encrypt(bufs[:cnt], sizes[:cnt], Headroom, ds[:0])
		if err := e.send(conn, ds); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// send writes every datagram, in as many batches as it takes; a datagram
// the socket refuses (an unreachable family, say) is counted and skipped.
func (e *Engine) send(conn Conn, ds []Datagram) error {
	for len(ds) > 0 {
		n, err := conn.WriteBatch(ds)
		for _, d := range ds[:n] {
			e.Stats.SentPackets.Add(1)
			e.Stats.SentBytes.Add(uint64(d.End - d.Off))
		}
		ds = ds[n:]
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			e.Stats.SendErrors.Add(1)
			if len(ds) > 0 {
				ds = ds[1:]
			}
		}
	}
	return nil
}

func (e *Engine) inbound(ctx context.Context, dev wgtun.Device, conn Conn) error {
	n := conn.BatchSize()
	msgs := make([]udp.Message, n)
	for i := range msgs {
		msgs[i] = udp.Message{Buf: make([]byte, Headroom+MaxPacket, BufferSize), Off: Headroom}
	}
	tunBufs := make([][]byte, 0, n)
	for ctx.Err() == nil {
		for i := range msgs {
			msgs[i].Buf = msgs[i].Buf[:Headroom+MaxPacket]
			msgs[i].Off = Headroom
		}
		cnt, err := conn.ReadBatch(msgs)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			e.Stats.ReceiveErrors.Add(1)
			if cnt == 0 {
				continue
			}
		}
		tunBufs = e.Decrypt(msgs[:cnt], tunBufs[:0], TunOffset)
		if len(tunBufs) == 0 {
			continue
		}
		if _, err := dev.Write(tunBufs, TunOffset); err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return err
			}
			e.log.Debug("tun write", zap.Error(err))
		}
	}
	return ctx.Err()
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
