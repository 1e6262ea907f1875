package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/goipsec/goipsec/internal/netlab"
)

// Ports of the generator's servers on the receiving side.
const (
	genTCPPort = 5201
	genUDPPort = 5202
)

// Generator tuning.
const (
	tcpWriteSize = 128 << 10
	tcpReadSize  = 128 << 10
	udpBatch     = 64
	udpBufSize   = 2048
	udpSockBuf   = 16 << 20
	udpDrain     = 200 * time.Millisecond
)

// genTarget is where the generator sends: from src in left (the sending
// namespace) to dst in right. nil namespaces mean this process's own.
type genTarget struct {
	left, right *netlab.Netns
	src, dst    netip.Addr
	// tcpPort and udpPort are the servers' ports (0: any free one).
	tcpPort, udpPort int
	// snap reads the CPU clocks of the two daemons and the generator.
	snap func() cpuSnap
}

// cpuSnap is a reading of the three CPU clocks.
type cpuSnap struct {
	t  [3]time.Duration
	ok [3]bool
}

// since returns the CPU time used between b and a.
func (a cpuSnap) since(b cpuSnap) (d [3]time.Duration, ok [3]bool) {
	for i := range 3 {
		ok[i] = a.ok[i] && b.ok[i]
		if ok[i] {
			d[i] = a.t[i] - b.t[i]
		}
	}
	return d, ok
}

// snapProcs reads the CPU time of the daemons left and right (either may
// be nil) and of this process.
func snapProcs(left, right *netlab.Proc) func() cpuSnap {
	return func() cpuSnap {
		var s cpuSnap
		for i, p := range []*netlab.Proc{left, right} {
			if p != nil {
				d, err := p.CPUTime()
				s.t[i], s.ok[i] = d, err == nil
			}
		}
		var c cpuClock
		s.t[sideGen], s.ok[sideGen] = c.now()
		return s
	}
}

var (
	tcpPayloadOnce sync.Once
	tcpPayload     []byte
)

// sleepCtx sleeps for d; it returns ctx's error if ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// firstErr keeps the first error reported to it.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// measureTCP runs streams TCP connections from g.src to g.dst, each
// writing as fast as it can: warm-up, then the timed window, whose
// received bytes and CPU times make the sample.
func measureTCP(ctx context.Context, g genTarget, streams int, warmup, dur time.Duration) (s e2eSample) {
	tcpPayloadOnce.Do(func() {
		tcpPayload = make([]byte, tcpWriteSize)
		_, _ = crand.Read(tcpPayload)
	})
	addr := net.JoinHostPort(g.dst.String(), strconv.Itoa(g.tcpPort))
	ln, err := g.right.Listen("tcp4", addr)
	if err != nil {
		s.err = fmt.Errorf("TCP listen on %s: %w", addr, err)
		return s
	}
	addr = ln.Addr().String()
	var (
		received atomic.Uint64
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		conns    []net.Conn
		fail     firstErr
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	shutdown := func() {
		stop.Store(true)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range streams {
			c, err := ln.Accept()
			if err != nil {
				if !stop.Load() {
					fail.set(fmt.Errorf("TCP accept: %w", err))
				}
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, tcpReadSize)
				for {
					n, err := c.Read(buf)
					received.Add(uint64(n))
					if err != nil {
						if !stop.Load() {
							fail.set(fmt.Errorf("TCP receive: %w", err))
						}
						return
					}
				}
			}()
		}
	}()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: g.src.AsSlice()}, Timeout: 10 * time.Second}
	for range streams {
		c, err := g.left.Dial(ctx, d, "tcp4", addr)
		if err != nil {
			shutdown()
			s.err = fmt.Errorf("TCP connect %s -> %s: %w", g.src, addr, err)
			return s
		}
		track(c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := c.Write(tcpPayload); err != nil {
					if !stop.Load() {
						fail.set(fmt.Errorf("TCP send: %w", err))
					}
					return
				}
			}
		}()
	}
	if err := sleepCtx(ctx, warmup); err != nil {
		shutdown()
		s.err = err
		return s
	}
	b0, c0, t0 := received.Load(), g.snap(), time.Now()
	err = sleepCtx(ctx, dur)
	b1, c1, t1 := received.Load(), g.snap(), time.Now()
	shutdown()
	switch {
	case err != nil:
		s.err = err
	case fail.get() != nil:
		s.err = fail.get()
	case b1 == b0:
		s.err = errors.New("no TCP data received in the timed window")
	}
	s.dur, s.bytes = t1.Sub(t0), b1-b0
	s.cpu, s.cpuOK = c1.since(c0)
	return s
}

// mmsgs is a batch of datagram buffers with the mmsghdr and iovec arrays
// that sendmmsg and recvmmsg take, made once.
type mmsgs struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
}

func newMmsgs(n, size int) *mmsgs {
	m := &mmsgs{hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), bufs: make([][]byte, n)}
	for i := range n {
		m.bufs[i] = make([]byte, udpBufSize)
		m.iovs[i].Base = &m.bufs[i][0]
		m.iovs[i].SetLen(size)
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
	}
	return m
}

// mmsg calls sendmmsg or recvmmsg (trap) on the first n messages through
// the netpoller and returns how many it moved.
func (m *mmsgs) mmsg(rc syscall.RawConn, trap uintptr, n int) (int, error) {
	var done int
	var errno syscall.Errno
	f := func(fd uintptr) bool {
		r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(n), 0, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		done, errno = int(r), e
		return true
	}
	var err error
	if trap == unix.SYS_SENDMMSG {
		err = rc.Write(f)
	} else {
		err = rc.Read(f)
	}
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return done, nil
}

// seqBitmap records which sequence numbers arrived.
type seqBitmap struct {
	words []uint64
	dups  uint64
}

// maxSeq bounds the sequence numbers recorded (a 512 MiB bitmap at most
// would be absurd; 2^32 datagrams is hours at any rate seen here).
const maxSeq = 1 << 32

func (b *seqBitmap) set(seq uint64) {
	if seq >= maxSeq {
		return
	}
	i := seq >> 6
	if i >= uint64(len(b.words)) {
		n := max(2*len(b.words), int(i)+1, 1024)
		w := make([]uint64, n)
		copy(w, b.words)
		b.words = w
	}
	bit := uint64(1) << (seq & 63)
	if b.words[i]&bit != 0 {
		b.dups++
	}
	b.words[i] |= bit
}

// merge adds the sequence numbers o saw.
func (b *seqBitmap) merge(o *seqBitmap) {
	if len(o.words) > len(b.words) {
		w := make([]uint64, len(o.words))
		copy(w, b.words)
		b.words = w
	}
	for i, x := range o.words {
		b.words[i] |= x
	}
	b.dups += o.dups
}

// count is how many of the sequence numbers in [lo, hi) arrived.
func (b *seqBitmap) count(lo, hi uint64) uint64 {
	var n uint64
	for seq := lo; seq < hi; {
		i := seq >> 6
		if i >= uint64(len(b.words)) {
			break
		}
		w := b.words[i]
		// Mask off the bits below lo and from hi on within this word.
		w &= ^uint64(0) << (seq & 63)
		next := (i + 1) << 6
		if hi < next {
			w &= (uint64(1) << (hi & 63)) - 1
		}
		n += uint64(bits.OnesCount64(w))
		seq = next
	}
	return n
}

// udpHeader is the generator's header at the start of every datagram:
// the run's tag, then the flow (top 8 bits) and the sequence number within
// it, big-endian.
const udpHeader = 16

const flowShift = 56

// udpWindow is where one flow's timed window starts and ends.
type udpWindow struct {
	seq0, seq1 uint64
	t0, t1     time.Time
	err        error
}

// measureUDP sends size-byte datagrams from g.src to g.dst in flows
// flows (a socket each, so different source ports; as many receiving
// sockets share the port with SO_REUSEPORT), as fast as the senders go or
// at rate datagrams per second in all: warm-up, then the timed window. The
// sample counts the datagrams sent in the window and, after a drain, those
// of them that arrived.
func measureUDP(ctx context.Context, g genTarget, size, rate, flows int, warmup, dur time.Duration) (s e2eSample) {
	flows = max(1, min(flows, MaxUDPFlows))
	// Receiving sockets, all on one port.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	addr := net.JoinHostPort(g.dst.String(), strconv.Itoa(g.udpPort))
	var rconns []*net.UDPConn
	defer func() {
		for _, c := range rconns {
			c.Close()
		}
	}()
	for range flows {
		var pc net.PacketConn
		err := g.right.Do(func() (err error) {
			pc, err = lc.ListenPacket(ctx, "udp4", addr)
			return err
		})
		if err != nil {
			s.err = fmt.Errorf("UDP listen on %s: %w", addr, err)
			return s
		}
		addr = pc.LocalAddr().String() // the port, if it was 0
		c := pc.(*net.UDPConn)
		setSockBuf(c, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, udpSockBuf)
		rconns = append(rconns, c)
	}
	// Sending sockets, one per flow.
	var sconns []*net.UDPConn
	defer func() {
		for _, c := range sconns {
			c.Close()
		}
	}()
	d := &net.Dialer{LocalAddr: &net.UDPAddr{IP: g.src.AsSlice()}}
	for range flows {
		c, err := g.left.Dial(ctx, d, "udp4", addr)
		if err != nil {
			s.err = fmt.Errorf("UDP socket %s -> %s: %w", g.src, addr, err)
			return s
		}
		sc := c.(*net.UDPConn)
		setSockBuf(sc, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, 4<<20)
		sconns = append(sconns, sc)
	}
	var tagb [8]byte
	_, _ = crand.Read(tagb[:])
	tag := binary.BigEndian.Uint64(tagb[:])

	// Receivers: each notes the sequence numbers it sees, per flow.
	seen := make([][]seqBitmap, flows)
	recvDone := make(chan error, flows)
	for r, rconn := range rconns {
		seen[r] = make([]seqBitmap, flows)
		go func() { recvDone <- receiveUDP(rconn, tag, seen[r]) }()
	}

	// Senders: each notes the sequence numbers and times where the
	// timed window starts and ends.
	begin := time.Now()
	at0, at1 := begin.Add(warmup), begin.Add(warmup+dur)
	sendDone := make(chan struct{}, flows)
	windows := make([]udpWindow, flows)
	flowRate := float64(rate) / float64(flows)
	for f, sconn := range sconns {
		_ = sconn.SetWriteDeadline(at1.Add(2 * time.Second))
		go func() {
			defer func() { sendDone <- struct{}{} }()
			windows[f] = sendUDP(ctx, sconn, tag, uint64(f)<<flowShift, size, flowRate, begin, at0, at1)
		}()
	}

	var c0, c1 cpuSnap
	err := sleepCtx(ctx, time.Until(at0))
	if err == nil {
		c0 = g.snap()
		err = sleepCtx(ctx, time.Until(at1))
		c1 = g.snap()
	}
	for range flows {
		<-sendDone
	}
	for _, w := range windows {
		if err == nil {
			err = w.err
		}
	}
	if err == nil {
		err = sleepCtx(ctx, udpDrain)
	}
	for _, c := range rconns {
		c.Close()
	}
	for range flows {
		if rerr := <-recvDone; err == nil && rerr != nil {
			err = fmt.Errorf("UDP receive: %w", rerr)
		}
	}
	if err != nil {
		s.err = err
		return s
	}
	var durs time.Duration
	for f, w := range windows {
		s.sent += w.seq1 - w.seq0
		// A flow may have landed on any receiving socket.
		merged := &seen[0][f]
		for r := 1; r < flows; r++ {
			merged.merge(&seen[r][f])
		}
		s.pkts += merged.count(w.seq0, w.seq1)
		durs += w.t1.Sub(w.t0)
	}
	s.dur = durs / time.Duration(flows)
	s.bytes = s.pkts * uint64(size)
	s.cpu, s.cpuOK = c1.since(c0)
	if s.pkts == 0 {
		s.err = fmt.Errorf("no UDP datagram arrived of the %d sent in the timed window", s.sent)
	}
	return s
}

// receiveUDP reads datagrams until the socket is closed, noting the
// sequence numbers of those tagged tag in seen (indexed by flow).
func receiveUDP(c *net.UDPConn, tag uint64, seen []seqBitmap) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	m := newMmsgs(udpBatch, udpBufSize)
	for {
		for i := range m.hdrs {
			m.hdrs[i].Len = 0
		}
		n, err := m.mmsg(rc, unix.SYS_RECVMMSG, udpBatch)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		for i := range n {
			b := m.bufs[i][:min(int(m.hdrs[i].Len), udpBufSize)]
			if len(b) < udpHeader || binary.BigEndian.Uint64(b) != tag {
				continue
			}
			v := binary.BigEndian.Uint64(b[8:])
			if f := v >> flowShift; f < uint64(len(seen)) {
				seen[f].set(v & (1<<flowShift - 1))
			}
		}
	}
}

// sendUDP sends datagrams on c, in batches, until at1 (or ctx ends): as
// fast as it can, or at rate datagrams per second since begin. It returns
// the sequence numbers and times of the window [at0, at1).
func sendUDP(ctx context.Context, c *net.UDPConn, tag, flow uint64, size int, rate float64, begin, at0, at1 time.Time) (w udpWindow) {
	rc, err := c.SyscallConn()
	if err != nil {
		w.err = err
		return w
	}
	m := newMmsgs(udpBatch, size)
	for i := range m.bufs {
		binary.BigEndian.PutUint64(m.bufs[i], tag)
	}
	var seq uint64
	started := false
	soft := 0
	for {
		if ctx.Err() != nil {
			w.err = ctx.Err()
			return w
		}
		now := time.Now()
		if !started && !now.Before(at0) {
			w.seq0, w.t0, started = seq, now, true
		}
		if !now.Before(at1) {
			w.seq1, w.t1 = seq, now
			return w
		}
		batch := udpBatch
		if rate > 0 {
			allowed := uint64(rate * now.Sub(begin).Seconds())
			if seq >= allowed {
				time.Sleep(min(time.Millisecond, time.Duration(float64(time.Second)*float64(seq+1-allowed)/rate)))
				continue
			}
			batch = int(min(uint64(udpBatch), allowed-seq))
		}
		for i := range batch {
			binary.BigEndian.PutUint64(m.bufs[i][8:], flow|(seq+uint64(i)))
		}
		n, err := m.mmsg(rc, unix.SYS_SENDMMSG, batch)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Blocked past the window's end (a stalled tunnel): the
			// window ends now.
			w.seq1, w.t1 = seq, time.Now()
			if !started {
				w.err = errors.New("UDP send: blocked since the start")
			}
			return w
		}
		if err != nil {
			// An ICMP error from an earlier datagram, or a full device
			// queue: the datagrams are lost, not the run.
			if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EPERM) {
				if soft++; soft > 100000 {
					w.err = fmt.Errorf("UDP send: %w (persistently)", err)
					return w
				}
				continue
			}
			w.err = fmt.Errorf("UDP send: %w", err)
			return w
		}
		seq += uint64(n)
	}
}

// setSockBuf sets a socket buffer size, past the system's limit when the
// process may (force, as root), else up to it.
func setSockBuf(c *net.UDPConn, force, plain, size int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, size)
		}
	})
}
