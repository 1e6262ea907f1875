package bench

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func TestSeqBitmap(t *testing.T) {
	var b seqBitmap
	want := map[uint64]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		s := r.Uint64N(100000)
		b.set(s)
		want[s] = true
	}
	b.set(maxSeq + 5) // ignored
	for _, rg := range [][2]uint64{{0, 100000}, {0, 0}, {1, 2}, {63, 64}, {64, 128}, {5, 70}, {12345, 99999}, {99990, 200000}, {300000, 400000}} {
		n := uint64(0)
		for s := range want {
			if s >= rg[0] && s < rg[1] {
				n++
			}
		}
		if got := b.count(rg[0], rg[1]); got != n {
			t.Errorf("count%v = %d, want %d", rg, got, n)
		}
	}
	dups := b.dups
	b.set(want0(want))
	if b.dups != dups+1 {
		t.Errorf("duplicate not counted")
	}
}

func want0(m map[uint64]bool) uint64 {
	for k := range m {
		return k
	}
	return 0
}

// The generator on loopback in this namespace: no root needed.
func TestGeneratorLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	g := genTarget{src: lo, dst: lo, snap: snapProcs(nil, nil)}
	ctx := context.Background()
	s := measureTCP(ctx, g, 2, 50*time.Millisecond, 200*time.Millisecond)
	if s.err != nil || s.bytes == 0 || s.dur < 200*time.Millisecond || !s.cpuOK[sideGen] || s.cpuOK[sideLeft] {
		t.Fatalf("TCP: %+v", s)
	}
	t.Logf("TCP loopback, 2 streams: %.1f Gbit/s", float64(s.bytes)*8/s.dur.Seconds()/1e9)
	u := measureUDP(ctx, g, 64, 0, 1, 50*time.Millisecond, 200*time.Millisecond)
	if u.err != nil || u.pkts == 0 || u.sent < u.pkts || u.bytes != 64*u.pkts || !u.cpuOK[sideGen] {
		t.Fatalf("UDP: %+v", u)
	}
	t.Logf("UDP loopback, 64 B: sent %.0f kpps, received %.0f kpps", float64(u.sent)/u.dur.Seconds()/1e3, float64(u.pkts)/u.dur.Seconds()/1e3)
	// Paced: about the rate asked for, nothing lost at this rate.
	p := measureUDP(ctx, g, 200, 20000, 3, 50*time.Millisecond, 300*time.Millisecond)
	rate := float64(p.sent) / p.dur.Seconds()
	if p.err != nil || rate < 15000 || rate > 25000 || p.pkts < p.sent*9/10 {
		t.Fatalf("paced UDP at 20000/s: %.0f/s, %+v", rate, p)
	}
	// Cancelled: an error, promptly.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if c := measureTCP(cctx, g, 1, time.Second, 10*time.Second); c.err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("cancelled TCP: %v after %v", c.err, time.Since(start))
	}
	cctx, cancel = context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if c := measureUDP(cctx, g, 64, 0, 2, time.Second, 10*time.Second); c.err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("cancelled UDP: %v after %v", c.err, time.Since(start))
	}
}
