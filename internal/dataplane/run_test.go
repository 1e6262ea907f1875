package dataplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/goipsec/goipsec/internal/udp"
	"github.com/goipsec/goipsec/sad"
	"github.com/goipsec/goipsec/spd"
	"github.com/goipsec/goipsec/tun"
)

// link is two engines running their loops over loopback UDP, each with an
// in-memory cleartext device whose other end (appA, appB) the test uses.
type runLink struct {
	a, b       *Engine
	appA, appB tun.Device
	connA      *udp.Conn
	la, ra     netip.Addr
}

func newRunLink(t testing.TB, mtu int) *runLink {
	t.Helper()
	ca, err := udp.Listen("udp4", "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := udp.Listen("udp4", "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	la, ra := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
	mk := func(local, remote netip.Addr, peer netip.AddrPort, in, out uint32) *Engine {
		e := New(spd.New(spd.Discard), sad.New(sad.Options{}), nil)
		c := &StaticChild{
			ID: 1, Mode: sad.Tunnel,
			Local: []netip.Prefix{netip.PrefixFrom(local, 32)}, Remote: []netip.Prefix{netip.PrefixFrom(remote, 32)},
			Peer: peer, In: espCfg(in, byte(in), true), Out: espCfg(out, byte(out), true),
		}
		if err := e.InstallStatic(c); err != nil {
			t.Fatal(err)
		}
		return e
	}
	l := &runLink{
		a: mk(la, ra, cb.LocalAddr(), 0x1001, 0x2002), b: mk(ra, la, ca.LocalAddr(), 0x2002, 0x1001),
		connA: ca, la: la, ra: ra,
	}
	appA, devA := tun.NewPair(mtu)
	appB, devB := tun.NewPair(mtu)
	l.appA, l.appB = appA, appB
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { l.a.Run(ctx, devA, ca); done <- struct{}{} }()
	go func() { l.b.Run(ctx, devB, cb); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		for _, c := range []interface{ Close() error }{ca, cb, appA, devA, appB, devB} {
			c.Close()
		}
	})
	return l
}

// numbered returns the i-th test packet from la to ra, of n bytes in all.
func (l *runLink) numbered(t testing.TB, i, n int) []byte {
	payload := make([]byte, n-28)
	for j := range payload {
		payload[j] = byte(i + j)
	}
	binary.BigEndian.PutUint32(payload, uint32(i))
	return udpPacket(t, l.la, l.ra, payload)
}

// Packets written to a's cleartext side come out of b's, intact and in
// order, through the real loops: full-size runs (sent with UDP GSO and
// received with GRO where the kernel has them) and small packets.
func TestRunLoops(t *testing.T) {
	l := newRunLink(t, 1400)
	const total = 2000
	want := make([][]byte, total)
	for i := range want {
		size := 1400
		if i%7 == 3 {
			size = 60 + i%300
		}
		want[i] = l.numbered(t, i, size)
	}
	errc := make(chan error, 1)
	go func() {
		bufs := make([][]byte, 0, 64)
		for i := 0; i < total; i += 64 {
			bufs = bufs[:0]
			for _, p := range want[i:min(i+64, total)] {
				bufs = append(bufs, append(make([]byte, TunOffset), p...))
			}
			if _, err := l.appA.Write(bufs, TunOffset); err != nil {
				errc <- err
				return
			}
			time.Sleep(time.Millisecond) // the pair holds 512 packets
		}
		errc <- nil
	}()
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 2000)
	}
	sizes := make([]int, len(bufs))
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < total && time.Now().Before(deadline) {
		n, err := l.appB.Read(bufs, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p := bufs[i][:sizes[i]]
			if !bytes.Equal(p, want[got]) {
				t.Fatalf("packet %d differs (len %d, want %d)", got, len(p), len(want[got]))
			}
			got++
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got != total {
		t.Fatalf("%d of %d packets arrived", got, total)
	}
	if gso, _ := l.connA.Offloads(); gso {
		t.Logf("sent with UDP GSO: %d datagrams", l.a.Stats.SentPackets.Load())
	}
}

// BenchmarkRun moves batches of 64 packets of 1400 bytes through both
// engines' loops (TUN pair, seal, UDP over loopback with GSO and GRO, open,
// TUN pair): allocations are counted in every goroutine, and must be 0.
func BenchmarkRun(b *testing.B) {
	l := newRunLink(b, 1400)
	const batch = 64
	out := make([][]byte, batch)
	for i := range out {
		out[i] = append(make([]byte, TunOffset), l.numbered(b, i, 1400)...)
	}
	in := make([][]byte, 128)
	for i := range in {
		in[i] = make([]byte, 2000)
	}
	sizes := make([]int, len(in))
	round := func() {
		if _, err := l.appA.Write(out, TunOffset); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := l.appB.Read(in, sizes, 0)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	for range 10 {
		round() // warm up: buffers, slots
	}
	b.SetBytes(1400 * batch)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		round()
	}
}

// The loops allocate nothing per packet: a few thousand packets through
// both engines cost (next to) no allocations, whatever the goroutine.
func TestRunZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	l := newRunLink(t, 1400)
	const batch, rounds = 64, 100
	out := make([][]byte, batch)
	for i := range out {
		size := 1400
		if i >= 48 {
			size = 64 // small packets take the other paths
		}
		out[i] = append(make([]byte, TunOffset), l.numbered(t, i, size)...)
	}
	in := make([][]byte, 128)
	for i := range in {
		in[i] = make([]byte, 2000)
	}
	sizes := make([]int, len(in))
	round := func() {
		if _, err := l.appA.Write(out, TunOffset); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := l.appB.Read(in, sizes, 0)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	for range 10 {
		round()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range rounds {
		round()
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; float64(n)/(batch*rounds) > 0.01 {
		t.Errorf("%d allocations for %d packets", n, batch*rounds)
	}
}
