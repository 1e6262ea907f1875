package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

// sample is one timed repetition.
type sample struct {
	elapsed time.Duration // wall time of the timed work
	cpu     time.Duration // process CPU time during it (0 if unknown)
	pkts    uint64
	bytes   uint64
	fails   uint64
	mallocs uint64 // heap allocations during the repetition, untimed parts included
}

// counter is one worker's tally, on its own cache lines.
type counter struct {
	pkts, bytes, fails uint64
	_                  [64 - 24]byte
}

const (
	cmdRun     = iota // process chunks until the repetition ends
	cmdPass           // process the whole ring once
	cmdRestore        // restore the ring (untimed)
)

// pool runs a measurement's workers: worker 0 on the calling goroutine,
// the others on goroutines of their own, all started and waited for
// together.
//
// A free-running repetition (no restore) has every worker process chunks
// of its ring over and over; worker 0 watches the clock and, when the
// time is up, tells the others to stop after their current chunk. A phased
// repetition alternates untimed restores of every ring with timed passes
// over every ring until the timed passes add up to the time.
type pool struct {
	m      *measurement
	cmds   []chan int // [0] unused
	done   chan struct{}
	stop   atomic.Bool
	counts []counter
	pos    []int
	t0     time.Time
	d      time.Duration
	clock  cpuClock
	ms     runtime.MemStats
}

func newPool(m *measurement) *pool {
	g := len(m.workers)
	p := &pool{m: m, cmds: make([]chan int, g), done: make(chan struct{}, g), counts: make([]counter, g), pos: make([]int, g)}
	for w := 1; w < g; w++ {
		p.cmds[w] = make(chan int, 1)
		go p.loop(w)
	}
	return p
}

func (p *pool) close() {
	for _, c := range p.cmds[1:] {
		close(c)
	}
}

func (p *pool) loop(w int) {
	for cmd := range p.cmds[w] {
		p.exec(w, cmd)
		p.done <- struct{}{}
	}
}

func (p *pool) exec(w, cmd int) {
	wk, c := p.m.workers[w], &p.counts[w]
	n, ch := wk.n(), p.m.chunk
	switch cmd {
	case cmdRun:
		pos := p.pos[w]
		for {
			j := min(pos+ch, n)
			a, b, f := wk.do(pos, j)
			c.pkts += uint64(a)
			c.bytes += uint64(b)
			c.fails += uint64(f)
			if pos = j; pos == n {
				pos = 0
			}
			if w == 0 {
				if time.Since(p.t0) >= p.d {
					p.stop.Store(true)
					break
				}
			} else if p.stop.Load() {
				break
			}
		}
		p.pos[w] = pos
	case cmdPass:
		for i := 0; i < n; i += ch {
			a, b, f := wk.do(i, min(i+ch, n))
			c.pkts += uint64(a)
			c.bytes += uint64(b)
			c.fails += uint64(f)
		}
	case cmdRestore:
		wk.restore()
	}
}

// all runs cmd on every worker and waits for them.
func (p *pool) all(cmd int) {
	for _, c := range p.cmds[1:] {
		c <- cmd
	}
	p.exec(0, cmd)
	for range p.cmds[1:] {
		<-p.done
	}
}

// rep runs one repetition of about d of timed work.
func (p *pool) rep(d time.Duration) sample {
	var s sample
	clear(p.counts)
	runtime.ReadMemStats(&p.ms)
	m0 := p.ms.Mallocs
	if !p.m.phased {
		c0, _ := p.clock.now()
		p.t0, p.d = time.Now(), d
		p.all(cmdRun)
		s.elapsed = time.Since(p.t0)
		c1, _ := p.clock.now()
		s.cpu = c1 - c0
		p.stop.Store(false)
	} else {
		for first := true; first || s.elapsed < d; first = false {
			if p.m.hook != nil {
				p.m.hook()
			}
			p.all(cmdRestore)
			c0, _ := p.clock.now()
			t0 := time.Now()
			p.all(cmdPass)
			s.elapsed += time.Since(t0)
			c1, _ := p.clock.now()
			s.cpu += c1 - c0
		}
	}
	runtime.ReadMemStats(&p.ms)
	s.mallocs = p.ms.Mallocs - m0
	for _, c := range p.counts {
		s.pkts += c.pkts
		s.bytes += c.bytes
		s.fails += c.fails
	}
	return s
}

// sliceTime is the timed work of one turn of a measurement within a
// repetition (see runGroup).
const sliceTime = 2 * time.Millisecond

// add accumulates t into s.
func (s *sample) add(t sample) {
	s.elapsed += t.elapsed
	s.cpu += t.cpu
	s.pkts += t.pkts
	s.bytes += t.bytes
	s.fails += t.fails
	s.mallocs += t.mallocs
}

// rate is the sample's throughput in Gbit/s and CPU time per byte in ns
// (0 when unknown).
func (s sample) rate() (gbps, cpuNsPerByte float64) {
	if s.pkts == 0 || s.elapsed <= 0 {
		return 0, 0
	}
	gbps = float64(s.bytes) * 8 / s.elapsed.Seconds() / 1e9
	if s.cpu > 0 {
		cpuNsPerByte = float64(s.cpu.Nanoseconds()) / float64(s.bytes)
	}
	return gbps, cpuNsPerByte
}

// live is a measurement of the current group.
type live struct {
	p       point
	m       *measurement
	pool    *pool
	samples []sample
	res     Result
	err     error
}

func newResult(p point) Result {
	r := Result{Op: p.op, Transform: p.t.Name, Size: p.size.Name, MeanBytes: p.size.Mean(),
		Goroutines: p.g, SA: p.sa, SAPairs: p.g, Ceiling: p.ceil}
	if p.sa == Shared {
		r.SAPairs = 1
	}
	if p.isCeil {
		r.Transform, r.With, r.SA, r.SAPairs, r.Ceiling = p.ceil, p.t.Name, "", 0, ""
	}
	return r
}

// runGroup measures the points of one group: it sets them all up, warms
// each up, then runs repetition 1 of each, repetition 2 of each, and so
// on.
func runGroup(ctx context.Context, grp []point, cfg *Config) []*live {
	ls := make([]*live, len(grp))
	for i, p := range grp {
		l := &live{p: p, res: newResult(p)}
		ls[i] = l
		if l.m, l.err = setup(p, cfg); l.err == nil {
			l.pool = newPool(l.m)
		}
	}
	defer func() {
		for _, l := range ls {
			if l.pool != nil {
				l.pool.close()
			}
			if l.m != nil && l.m.cleanup != nil {
				l.m.cleanup()
			}
		}
	}()
	runtime.GC() // the garbage of the setups, now rather than during the timing
	for _, l := range ls {
		if l.pool != nil {
			l.pool.rep(cfg.Warmup)
		}
	}
	// Each repetition is cut into slices of about sliceTime, and the
	// group's measurements take turns slice by slice (starting with a
	// different one each time): a row and its ceiling then share the
	// same moments of the machine's changing load, and the ratio of their
	// rates in one repetition is steady even when the rates are not.
	d := cfg.Duration / time.Duration(cfg.Reps)
	n := max(1, int(d/sliceTime))
	for range cfg.Reps {
		acc := make([]sample, len(ls))
		for k := range n {
			for j := range ls {
				i := (j + k) % len(ls)
				if ctx.Err() != nil {
					return ls
				}
				if ls[i].pool != nil {
					acc[i].add(ls[i].pool.rep(d / time.Duration(n)))
				}
			}
		}
		for i, l := range ls {
			if l.pool != nil {
				l.samples = append(l.samples, acc[i])
			}
		}
	}
	for _, l := range ls {
		if l.err == nil {
			l.res.fill(l.samples)
			if l.res.Packets == 0 {
				l.err = fmt.Errorf("%s: no packet got through (%d failed)", l.p, l.res.Failures)
			}
		}
		if l.err != nil {
			l.res.Err = l.err.Error()
		}
	}
	return ls
}

// fill computes a result's statistics from its samples.
func (r *Result) fill(ss []sample) {
	var gbps, mpps, ns, cpu []float64
	var mallocs uint64
	for _, s := range ss {
		r.Packets += s.pkts
		r.Bytes += s.bytes
		r.Failures += s.fails
		mallocs += s.mallocs
		r.Elapsed += s.elapsed
		sec := s.elapsed.Seconds()
		if s.pkts == 0 || sec <= 0 {
			continue
		}
		gbps = append(gbps, float64(s.bytes)*8/sec/1e9)
		mpps = append(mpps, float64(s.pkts)/sec/1e6)
		ns = append(ns, float64(s.elapsed.Nanoseconds())/float64(s.pkts))
		if s.cpu > 0 {
			cpu = append(cpu, float64(s.cpu.Nanoseconds())/float64(s.bytes))
		}
	}
	r.Reps = len(ss)
	r.Gbps, r.Mpps, r.NsPerPacket, r.CPUNsPerByte = Summarize(gbps), Summarize(mpps), Summarize(ns), Summarize(cpu)
	if r.Packets > 0 {
		r.AllocsPerPacket = float64(mallocs) / float64(r.Packets)
	}
}

// RunDatapath measures cfg's matrix in process and returns the report, with
// an error if some measurement failed or ctx ended (the report is partial).
func RunDatapath(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	rep := &Report{Machine: DescribeMachine(), Settings: settingsOf(&cfg), Started: time.Now()}
	plan := cfg.plan()
	total := 0
	for _, g := range plan {
		total += len(g)
	}
	done := 0
	var firstErr error
	for _, grp := range plan {
		if cfg.Progress != nil {
			el := time.Since(rep.Started)
			var left time.Duration
			if done > 0 {
				left = el / time.Duration(done) * time.Duration(total-done)
			}
			p := grp[len(grp)-1]
			cfg.Progress(Progress{Done: done, Total: total, Elapsed: el, Remaining: left,
				Current: fmt.Sprintf("%s, %s bytes, %d goroutine(s): %d measurements", p.t, p.size, p.g, len(grp))})
		}
		ls := runGroup(ctx, grp, &cfg)
		if err := ctx.Err(); err != nil {
			rep.Elapsed = time.Since(rep.Started)
			rep.Partial = true
			rep.sort(&cfg)
			return rep, err
		}
		done += len(grp)
		ceil, ceilCPU := map[Op]float64{}, map[Op]float64{}
		ceilReps := map[Op][]sample{}
		for _, l := range ls {
			if l.err != nil && firstErr == nil {
				firstErr = l.err
			}
			if l.p.isCeil {
				rep.Ceilings = append(rep.Ceilings, l.res)
				if l.p.ref {
					continue // a reference only: the rows compare with the AEAD ESP uses
				}
				if l.err == nil && l.res.Gbps.Median > 0 {
					ceil[l.p.op] = l.res.Gbps.Median
					ceilReps[l.p.op] = l.samples
				}
				if l.err == nil && l.res.CPUNsPerByte.Median > 0 {
					ceilCPU[l.p.op] = l.res.CPUNsPerByte.Median
				}
			}
		}
		for _, l := range ls {
			if l.p.isCeil {
				continue
			}
			r := l.res
			r.CeilingGbps = ceilingRate(ceil, l.p.op)
			r.CeilingCPUNsPerByte = ceilingCost(ceilCPU, l.p.op)
			if l.err == nil {
				r.Ratio, r.CPURatio = pairedRatios(l.samples, ceilReps, l.p.op)
			}
			rep.Results = append(rep.Results, r)
		}
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Done: total, Total: total, Elapsed: time.Since(rep.Started)})
	}
	rep.Elapsed = time.Since(rep.Started)
	rep.sort(&cfg)
	if firstErr != nil {
		return rep, fmt.Errorf("bench: some measurements failed, first: %w", firstErr)
	}
	return rep, nil
}

// pairedRatios returns the medians, over the repetitions, of a row's
// throughput over its ceiling's in the same repetition, and of the
// ceiling's CPU time per byte over the row's: so the ratios compare
// measurements taken side by side. 0 when the ceiling is missing.
func pairedRatios(row []sample, ceil map[Op][]sample, op Op) (ratio, cpuRatio float64) {
	var rs, cs []float64
	for i, s := range row {
		var rates, costs map[Op]float64
		for o, reps := range ceil {
			if i >= len(reps) {
				continue
			}
			g, c := reps[i].rate()
			if rates == nil {
				rates, costs = map[Op]float64{}, map[Op]float64{}
			}
			if g > 0 {
				rates[o] = g
			}
			if c > 0 {
				costs[o] = c
			}
		}
		g, c := s.rate()
		if cr := ceilingRate(rates, op); cr > 0 && g > 0 {
			rs = append(rs, g/cr)
		}
		if cc := ceilingCost(costs, op); cc > 0 && c > 0 {
			cs = append(cs, cc/c)
		}
	}
	if len(rs) > 0 {
		ratio = Summarize(rs).Median
	}
	if len(cs) > 0 {
		cpuRatio = Summarize(cs).Median
	}
	return ratio, cpuRatio
}

// ceilingRate is the ceiling throughput for a row of operation op: the
// bare primitive's seal or open; for the pipeline, seal then open.
func ceilingRate(c map[Op]float64, op Op) float64 {
	if op != OpPipeline {
		return c[op]
	}
	s, o := c[OpSeal], c[OpOpen]
	if s == 0 || o == 0 {
		return 0
	}
	return 1 / (1/s + 1/o)
}

// ceilingCost is the ceiling's CPU time per byte for a row of operation
// op; for the pipeline, seal's and open's together.
func ceilingCost(c map[Op]float64, op Op) float64 {
	if op != OpPipeline {
		return c[op]
	}
	s, o := c[OpSeal], c[OpOpen]
	if s == 0 || o == 0 {
		return 0
	}
	return s + o
}
