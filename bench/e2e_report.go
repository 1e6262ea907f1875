package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// e2eSample is one timed repetition of one implementation in one test.
type e2eSample struct {
	dur   time.Duration // timed window
	bytes uint64        // payload bytes received in the window
	pkts  uint64        // UDP: datagrams received among those sent in the window
	sent  uint64        // UDP: datagrams sent in the window
	cpu   [3]time.Duration
	cpuOK [3]bool // left daemon, right daemon, generator
	err   error
}

// Sides of e2eSample.cpu.
const (
	sideLeft = iota
	sideRight
	sideGen
)

// summarizeE2E makes a result row of the samples of one test and
// implementation.
func summarizeE2E(t E2ETest, impl string, samples []e2eSample) E2EResult {
	r := E2EResult{Test: t.Name(), Proto: t.Proto, Streams: t.Streams, Size: t.Size, Impl: impl}
	var gbps, kpps, sent, loss []float64
	var nsB, nsP, cores [3][]float64
	var lastErr error
	for _, s := range samples {
		if s.err != nil {
			r.Failed++
			lastErr = s.err
			continue
		}
		if s.dur <= 0 {
			continue
		}
		r.Reps++
		r.Elapsed += s.dur
		r.Bytes += s.bytes
		r.Packets += s.pkts
		sec := s.dur.Seconds()
		gbps = append(gbps, float64(s.bytes)*8/sec/1e9)
		if t.Proto == "udp" {
			kpps = append(kpps, float64(s.pkts)/sec/1e3)
			sent = append(sent, float64(s.sent)/sec/1e3)
			l := math.NaN()
			if s.sent > 0 {
				l = 1 - float64(min(s.pkts, s.sent))/float64(s.sent)
			}
			loss = append(loss, l)
		}
		for side := range 3 {
			if !s.cpuOK[side] {
				continue
			}
			ns := float64(s.cpu[side].Nanoseconds())
			cores[side] = append(cores[side], ns/1e9/sec)
			if s.bytes > 0 {
				nsB[side] = append(nsB[side], ns/float64(s.bytes))
			}
			if t.Proto == "udp" && s.pkts > 0 {
				nsP[side] = append(nsP[side], ns/float64(s.pkts))
			}
		}
	}
	r.Gbps, r.Kpps, r.SentKpps, r.Loss = Summarize(gbps), Summarize(kpps), Summarize(sent), Summarize(loss)
	r.LeftCPUNsPerByte, r.RightCPUNsPerByte, r.GenCPUNsPerByte = Summarize(nsB[sideLeft]), Summarize(nsB[sideRight]), Summarize(nsB[sideGen])
	r.LeftCPUNsPerPacket, r.RightCPUNsPerPacket = Summarize(nsP[sideLeft]), Summarize(nsP[sideRight])
	r.LeftCores, r.RightCores, r.GenCores = Summarize(cores[sideLeft]), Summarize(cores[sideRight]), Summarize(cores[sideGen])
	if r.Reps == 0 && lastErr != nil {
		r.Err = lastErr.Error()
	}
	return r
}

// headline is the figure a row is ranked by: Gbit/s for TCP, received
// datagrams for UDP.
func (x *E2EResult) headline() float64 {
	if x.Proto == "udp" {
		return x.Kpps.Median
	}
	return x.Gbps.Median
}

// daemonCPU is both ends' daemon CPU time per payload byte.
func (x *E2EResult) daemonCPU() float64 {
	return x.LeftCPUNsPerByte.Median + x.RightCPUNsPerByte.Median
}

// finish sorts the rows, computes the ratios to goipsec and adds the
// notes the figures call for.
func (r *E2EReport) finish() {
	tests := r.Settings.Tests
	slices.SortStableFunc(r.Results, func(a, b E2EResult) int {
		ia := slices.IndexFunc(tests, func(t E2ETest) bool { return t.Name() == a.Test })
		ib := slices.IndexFunc(tests, func(t E2ETest) bool { return t.Name() == b.Test })
		if ia != ib {
			return ia - ib
		}
		return slices.Index(allImpls, a.Impl) - slices.Index(allImpls, b.Impl)
	})
	for i := range r.Results {
		x := &r.Results[i]
		g := r.Result(x.Test, ImplGoipsec)
		if g == nil {
			continue
		}
		if h, gh := x.headline(), g.headline(); h > 0 && gh > 0 {
			x.Ratio = gh / h
		}
		if c, gc := x.daemonCPU(), g.daemonCPU(); c > 0 && gc > 0 {
			x.CPURatio = c / gc
		}
	}
	for _, t := range tests {
		g, p := r.Result(t.Name(), ImplGoipsec), r.Result(t.Name(), ImplPlain)
		switch {
		case g == nil || p == nil || !(g.headline() > 0) || !(p.headline() > 0):
		case t.Proto == "udp" && g.Loss.Median < 0.05:
			r.Notes = append(r.Notes, fmt.Sprintf("%s: goipsec carried %s of what the generator offered (%s kpps; over the bare veth it offers %s): the generator, not goipsec, may set this figure; more --udp-flows may offer more.",
				t.Name(), pct(1-g.Loss.Median), sig(g.SentKpps.Median), sig(p.SentKpps.Median)))
		case t.Proto == "tcp" && g.headline() > 0.5*p.headline():
			r.Notes = append(r.Notes, fmt.Sprintf("%s: goipsec reaches %.0f%% of the bare veth (the generator's ceiling): the generator and the tunnel share the CPUs, so the generator may limit this figure.",
				t.Name(), 100*g.headline()/p.headline()))
		}
	}
	var wide []string
	for _, t := range tests {
		for _, impl := range r.Settings.Impls {
			x := r.Result(t.Name(), impl)
			if x == nil {
				continue
			}
			st := x.Gbps
			if t.Proto == "udp" {
				st = x.Kpps
			}
			if sp := st.Spread(); x.Reps > 1 && sp > 0.25 {
				wide = append(wide, fmt.Sprintf("%s %s %.0f%%", t.Name(), impl, 100*sp))
			}
			if x.Failed > 0 {
				r.Notes = append(r.Notes, fmt.Sprintf("%s %s: %d of %d repetitions failed.", t.Name(), impl, x.Failed, x.Failed+x.Reps))
			}
		}
	}
	if len(wide) > 0 {
		r.Notes = append(r.Notes, "repetitions spread wide ((max-min)/median over 25%): "+strings.Join(wide, ", ")+
			"; the machine was busy or the figures unsteady: more --reps or a longer --duration steady the medians.")
	}
}

// WriteJSON writes the report as one indented JSON object.
func (r *E2EReport) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// e2eCSVHeader is the header row of E2EReport.WriteCSV.
var e2eCSVHeader = []string{
	"test", "proto", "streams", "size", "impl",
	"gbps_median", "gbps_min", "gbps_max", "kpps_median", "kpps_min", "kpps_max",
	"sent_kpps_median", "loss_median", "loss_min", "loss_max",
	"left_cpu_ns_per_byte", "right_cpu_ns_per_byte", "gen_cpu_ns_per_byte",
	"left_cpu_ns_per_packet", "right_cpu_ns_per_packet",
	"left_cores", "right_cores", "gen_cores",
	"bytes", "packets", "reps", "failed", "elapsed_ns", "goipsec_ratio", "goipsec_cpu_ratio", "error",
}

// WriteCSV writes one line per result (medians of the CPU figures) under
// a header line.
func (r *E2EReport) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(e2eCSVHeader); err != nil {
		return err
	}
	g := func(v float64) string {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return ""
		}
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	ratio := func(v float64) string {
		if v == 0 {
			return ""
		}
		return g(v)
	}
	for _, x := range r.Results {
		rec := []string{x.Test, x.Proto, strconv.Itoa(x.Streams), strconv.Itoa(x.Size), x.Impl,
			g(x.Gbps.Median), g(x.Gbps.Min), g(x.Gbps.Max), g(x.Kpps.Median), g(x.Kpps.Min), g(x.Kpps.Max),
			g(x.SentKpps.Median), g(x.Loss.Median), g(x.Loss.Min), g(x.Loss.Max),
			g(x.LeftCPUNsPerByte.Median), g(x.RightCPUNsPerByte.Median), g(x.GenCPUNsPerByte.Median),
			g(x.LeftCPUNsPerPacket.Median), g(x.RightCPUNsPerPacket.Median),
			g(x.LeftCores.Median), g(x.RightCores.Median), g(x.GenCores.Median),
			strconv.FormatUint(x.Bytes, 10), strconv.FormatUint(x.Packets, 10), strconv.Itoa(x.Reps), strconv.Itoa(x.Failed),
			strconv.FormatInt(int64(x.Elapsed), 10), ratio(x.Ratio), ratio(x.CPURatio), x.Err}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// times formats a ratio as "1.23x".
func times(v float64) string {
	if !(v > 0) || math.IsInf(v, 0) {
		return "-"
	}
	return sig(v) + "x"
}

// pct formats a fraction as a percentage with sensible decimals.
func pct(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0%"
	case v < 0.001:
		return "<0.1%"
	case v < 0.1:
		return strconv.FormatFloat(100*v, 'f', 1, 64) + "%"
	}
	return strconv.FormatFloat(100*v, 'f', 0, 64) + "%"
}

// WriteTable writes the report as aligned text: the machine, settings and
// implementations, a TCP and a UDP table, goipsec's ratios, notes and how
// the figures are made.
func (r *E2EReport) WriteTable(w io.Writer) error {
	s := &r.Settings
	partial := ""
	if r.Partial {
		partial = " (interrupted: partial)"
	}
	measured := 0
	for _, im := range r.Impls {
		if im.Skipped == "" {
			measured++
		}
	}
	fmt.Fprintf(w, "goipsec bench e2e, %s, %d tests x %d implementations in %.1fs%s\n", r.Started.Format(time.RFC3339), len(s.Tests), measured, r.Elapsed.Seconds(), partial)
	fmt.Fprintf(w, "machine:   %s\n", r.Machine)
	rate := "as fast as the sender goes"
	if s.UDPRate > 0 {
		rate = fmt.Sprintf("at %d datagrams/s", s.UDPRate)
	}
	if s.UDPFlows > 1 {
		rate = fmt.Sprintf("in %d flows ", s.UDPFlows) + strings.Replace(rate, "sender goes", "senders go", 1)
	}
	fmt.Fprintf(w, "settings:  per measurement %v timed in %d reps of %v (median [min-max]), each rep after %v warm-up, reps interleaved across implementations; UDP sent %s\n",
		s.Duration, s.Reps, (s.Duration / time.Duration(max(1, s.Reps))).Round(time.Millisecond), s.Warmup, rate)
	for i, l := range s.Topology {
		head := "topology:  "
		if i > 0 {
			head = "           "
		}
		fmt.Fprintln(w, head+l)
	}
	fmt.Fprintln(w, "implementations:")
	width := 0
	for _, im := range r.Impls {
		width = max(width, len(im.Name))
	}
	for _, im := range r.Impls {
		desc := im.Setup
		if im.MTU > 0 {
			desc += fmt.Sprintf(", MTU %d", im.MTU)
		}
		if im.Version != "" {
			desc = im.Version + ": " + desc
		}
		if im.Skipped != "" {
			desc = "skipped: " + im.Skipped
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, im.Name, desc)
	}

	var tcp, udp []E2EResult
	for _, x := range r.Results {
		if x.Proto == "udp" {
			udp = append(udp, x)
		} else {
			tcp = append(tcp, x)
		}
	}
	num := func(st Stat) string { return sig(st.Median) }
	rng := func(st Stat) string { return "[" + sig(st.Min) + "-" + sig(st.Max) + "]" }
	if len(tcp) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "TCP bulk, left to right: payload received")
		t := &table{align: []byte("llrlrrrrrrrrr")}
		t.add("test", "impl", "Gbit/s", "[min-max]", "goipsec/x", "left ns/B", "right ns/B", "gen ns/B", "left cores", "right cores", "gen cores", "CPU x/goipsec")
		for i, x := range tcp {
			if i > 0 && x.Test != tcp[i-1].Test {
				t.add()
			}
			row := []string{x.Test, x.Impl}
			if x.Err != "" {
				t.add(append(row, "error: "+x.Err)...)
				continue
			}
			t.add(append(row, num(x.Gbps), rng(x.Gbps), times(x.Ratio),
				num(x.LeftCPUNsPerByte), num(x.RightCPUNsPerByte), num(x.GenCPUNsPerByte),
				num(x.LeftCores), num(x.RightCores), num(x.GenCores), times(x.CPURatio))...)
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	if len(udp) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "UDP, left to right: datagrams received")
		t := &table{align: []byte("llrlrrrrrrrrrrr")}
		t.add("test", "impl", "rx kpps", "[min-max]", "tx kpps", "loss", "Mbit/s", "goipsec/x", "left µs/pkt", "right µs/pkt", "left cores", "right cores", "gen cores", "CPU x/goipsec")
		us := func(st Stat) string { return sig(st.Median / 1e3) }
		for i, x := range udp {
			if i > 0 && x.Test != udp[i-1].Test {
				t.add()
			}
			row := []string{x.Test, x.Impl}
			if x.Err != "" {
				t.add(append(row, "error: "+x.Err)...)
				continue
			}
			t.add(append(row, num(x.Kpps), rng(x.Kpps), num(x.SentKpps), pct(x.Loss.Median), sig(x.Gbps.Median*1e3), times(x.Ratio),
				us(x.LeftCPUNsPerPacket), us(x.RightCPUNsPerPacket), num(x.LeftCores), num(x.RightCores), num(x.GenCores), times(x.CPURatio))...)
		}
		if err := t.write(w); err != nil {
			return err
		}
	}

	// goipsec's ratios, one column per other implementation.
	var others []string
	order := append(slices.Clone(CompareImpls), s.Impls...) // plain last
	for _, n := range order {
		if n == ImplGoipsec || slices.Contains(others, n) {
			continue
		}
		if slices.ContainsFunc(r.Results, func(x E2EResult) bool { return x.Impl == n && x.Ratio > 0 }) {
			others = append(others, n)
		}
	}
	if len(others) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "goipsec / other, median over median (TCP: Gbit/s; UDP: datagrams received); above 1: goipsec faster")
		t := &table{align: []byte("l" + strings.Repeat("r", len(others)))}
		t.add(append([]string{"test"}, others...)...)
		for _, tc := range s.Tests {
			row := []string{tc.Name()}
			for _, n := range others {
				cell := "-"
				if x := r.Result(tc.Name(), n); x != nil {
					cell = times(x.Ratio)
				}
				row = append(row, cell)
			}
			t.add(row...)
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "notes:")
		for _, n := range r.Notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	fmt.Fprintln(w)
	for _, m := range s.Method {
		fmt.Fprintln(w, "- "+m)
	}
	return nil
}
