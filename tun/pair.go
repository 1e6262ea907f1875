package tun

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// pairQueue is the number of packets that one direction of a pair holds.
const pairQueue = 4 * IdealBatchSize

// pairSlot holds one queued packet.
type pairSlot struct {
	b []byte
	n int
}

// pairPipe is one direction: slots cycle from free to full and back, so
// that the steady state allocates nothing. Slots are made on first use.
type pairPipe struct {
	free  chan *pairSlot
	full  chan *pairSlot
	made  atomic.Int32
	size  int
	depth int32
}

func newPairPipe(size int) *pairPipe {
	return &pairPipe{
		free:  make(chan *pairSlot, pairQueue),
		full:  make(chan *pairSlot, pairQueue),
		size:  size,
		depth: pairQueue,
	}
}

// pairState is shared by both ends: closing either end closes the pair.
type pairState struct {
	closed chan struct{}
	once   sync.Once
}

// pairDevice is one end of an in-memory pair.
type pairDevice struct {
	name      string
	mtu       int
	in, out   *pairPipe
	state     *pairState
	events    chan Event
	closeOnce sync.Once
}

var pairCount atomic.Uint32

// NewPair returns two connected in-memory devices: packets written to one
// are read from the other, in order, up to IdealBatchSize per call. Write
// blocks while the peer has pairQueue packets unread; packets larger than
// mtu are refused. Closing either end closes both.
func NewPair(mtu int) (a, b Device) {
	if mtu <= 0 {
		mtu = 1500
	}
	id := pairCount.Add(1) - 1
	ab, ba := newPairPipe(mtu), newPairPipe(mtu)
	st := &pairState{closed: make(chan struct{})}
	da := &pairDevice{name: fmt.Sprintf("pair%da", id), mtu: mtu, in: ba, out: ab, state: st, events: make(chan Event, 1)}
	db := &pairDevice{name: fmt.Sprintf("pair%db", id), mtu: mtu, in: ab, out: ba, state: st, events: make(chan Event, 1)}
	da.events <- EventUp
	db.events <- EventUp
	return da, db
}

// errPacketTooBig is returned for a packet longer than the pair's MTU.
var errPacketTooBig = errors.New("tun: packet larger than the MTU")

func (d *pairDevice) File() *os.File        { return nil }
func (d *pairDevice) MTU() (int, error)     { return d.mtu, nil }
func (d *pairDevice) Name() (string, error) { return d.name, nil }
func (d *pairDevice) Events() <-chan Event  { return d.events }
func (d *pairDevice) BatchSize() int        { return IdealBatchSize }

func (d *pairDevice) isClosed() bool {
	select {
	case <-d.state.closed:
		return true
	default:
		return false
	}
}

// Write queues each packet bufs[i][offset:] for the other end. Packets
// larger than the MTU are dropped and reported; the rest still go.
func (d *pairDevice) Write(bufs [][]byte, offset int) (int, error) {
	if d.isClosed() {
		return 0, os.ErrClosed
	}
	p := d.out
	n := 0
	var err error
	for _, b := range bufs {
		if offset > len(b) {
			err = io.ErrShortBuffer
			continue
		}
		pkt := b[offset:]
		if len(pkt) > p.size {
			err = errPacketTooBig
			continue
		}
		var s *pairSlot
		select {
		case s = <-p.free:
		default:
			if p.made.Add(1) <= p.depth {
				s = &pairSlot{b: make([]byte, p.size)}
			} else {
				p.made.Add(-1)
				select {
				case s = <-p.free:
				case <-d.state.closed:
					return n, os.ErrClosed
				}
			}
		}
		s.n = copy(s.b, pkt)
		p.full <- s // never blocks: there are at most depth slots
		n++
	}
	return n, err
}

// Read takes up to len(bufs) queued packets, blocking for the first one,
// into bufs[i][offset:] with their lengths in sizes[i]. A packet that does
// not fit its buffer is dropped with io.ErrShortBuffer.
func (d *pairDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if d.isClosed() {
		return 0, os.ErrClosed
	}
	p := d.in
	var s *pairSlot
	select {
	case s = <-p.full:
	case <-d.state.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for {
		if offset > len(bufs[n]) || len(bufs[n])-offset < s.n {
			p.free <- s
			return n, io.ErrShortBuffer
		}
		sizes[n] = copy(bufs[n][offset:], s.b[:s.n])
		p.free <- s
		n++
		if n == len(bufs) || n == len(sizes) {
			return n, nil
		}
		select {
		case s = <-p.full:
		default:
			return n, nil
		}
	}
}

// Close closes the pair: both ends' Read and Write fail with os.ErrClosed,
// and this end's Events channel is closed.
func (d *pairDevice) Close() error {
	d.state.once.Do(func() { close(d.state.closed) })
	d.closeOnce.Do(func() { close(d.events) })
	return nil
}
