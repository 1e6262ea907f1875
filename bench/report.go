package bench

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goipsec/goipsec/internal/aesgcm"
)

// Result is one measured point: a row of the matrix, or a ceiling (a bare
// primitive, whose Transform is the primitive's name and SA empty).
type Result struct {
	Op         Op      `json:"op"`
	Transform  string  `json:"transform"`
	Size       string  `json:"size"`
	MeanBytes  float64 `json:"mean_bytes"` // mean inner packet length
	Goroutines int     `json:"goroutines"`
	SA         Sharing `json:"sa,omitempty"`
	SAPairs    int     `json:"sa_pairs,omitempty"` // SA pairs in use: the goroutine count, or 1 when shared

	Gbps         Stat `json:"gbps"`            // inner bytes, all goroutines together
	Mpps         Stat `json:"mpps"`            // packets, all goroutines together
	NsPerPacket  Stat `json:"ns_per_packet"`   // wall time per packet, all goroutines together
	CPUNsPerByte Stat `json:"cpu_ns_per_byte"` // process CPU time per inner byte
	// AllocsPerPacket is heap allocations (runtime.MemStats.Mallocs) per
	// packet over the repetitions, their untimed restores included.
	AllocsPerPacket float64       `json:"allocs_per_packet"`
	Packets         uint64        `json:"packets"`
	Bytes           uint64        `json:"bytes"`
	Failures        uint64        `json:"failures"` // packets that failed (not counted in the rates)
	Reps            int           `json:"reps"`
	Elapsed         time.Duration `json:"elapsed_ns"` // timed wall time, all repetitions

	With        string  `json:"with,omitempty"`         // ceilings: the transform whose rows it was measured with
	Ceiling     string  `json:"ceiling,omitempty"`      // the bare primitive compared with
	CeilingGbps float64 `json:"ceiling_gbps,omitempty"` // its median throughput (seal then open for the pipeline)
	// Ratio is the median, over the repetitions, of the row's throughput
	// over the ceiling's in the same repetition (their time slices
	// interleave): steadier than Gbps.Median / CeilingGbps on a busy machine.
	Ratio float64 `json:"ratio,omitempty"`
	// CeilingCPUNsPerByte and CPURatio compare CPU time instead of wall
	// time, which time-sharing with other processes disturbs less.
	CeilingCPUNsPerByte float64 `json:"ceiling_cpu_ns_per_byte,omitempty"`
	CPURatio            float64 `json:"cpu_ratio,omitempty"` // paired like Ratio: the ceiling's CPU time per byte over the row's
	Err                 string  `json:"error,omitempty"`
}

// Settings are the measurement settings of a report.
type Settings struct {
	Transforms []string      `json:"transforms"`
	Sizes      []string      `json:"sizes"`
	Goroutines []int         `json:"goroutines"`
	Ops        []Op          `json:"ops"`
	SA         []Sharing     `json:"sa"`
	Reps       int           `json:"reps"`
	Duration   time.Duration `json:"duration_ns"` // timed, per measurement
	Warmup     time.Duration `json:"warmup_ns"`
	ESN        bool          `json:"esn"`
	RingBytes  int           `json:"ring_bytes"`
	Method     []string      `json:"method"`
}

// Method describes how the figures are measured.
var Method = []string{
	"seal: tunnel-mode esp.SA.EncapTunnel / ah.SA.EncapTunnel of IPv4/UDP packets, in place, over a ring of distinct packets sealed again and again.",
	"open: DecapTunnel of a ring of distinct packets sealed once beforehand with consecutive sequence numbers; each timed pass opens every packet once through the replay window; between passes, untimed, the ring is copied back from a pristine copy and the window is reset.",
	"pipeline: dataplane Engine.Encrypt (SPD lookup, SAD, ESP) then Engine.Decrypt (demux, SAD, replay window, ESP, inbound policy check) of batches of 64 packets, engine to engine, in place.",
	"own: each goroutine has its own SA pair (the pipeline's engines are shared, one child per goroutine); shared: all goroutines use one SA pair (sequence counter and replay window contended; open and pipeline use a 65536-packet window so scheduling cannot push packets out of it).",
	"ceiling: the bare primitive alone at the same sizes and goroutine count: AES-GCM/ChaCha20-Poly1305 Seal/Open in place with an 8-byte AAD, GMAC with the packet as AAD, CBC+HMAC and HMAC alone; the AEADs are the ones ESP and AH use (xform: AES-GCM/GMAC from internal/aesgcm, " + aesgcmImpl() + "), CBC and HMAC from crypto/cipher and crypto/hmac; pipeline ratios use seal then open; a primitive marked (crypto/cipher), with --stdlib-ceilings, is the standard library's AES-GCM as a reference, not used for the ratios.",
	"Gbit/s and Mpps count inner packet bytes of all goroutines together per wall second; CPU ns/B is process CPU time (getrusage) per byte; allocs/pkt is MemStats.Mallocs per packet including the untimed restores.",
	"of ceil: the median over the repetitions of the row's Gbit/s over its ceiling's in the same repetition; CPU of ceil: the same with the ceiling's CPU ns/B over the row's; within a repetition the row and its ceiling take turns in slices of 2 ms, so both see the machine's load alike.",
	"failed: packets refused, not counted in the rates (a shared-SA pipeline can see a descheduled goroutine's packets fall out of the replay window).",
}

// aesgcmImpl names the AES-GCM code internal/aesgcm runs on this machine.
func aesgcmImpl() string {
	if aesgcm.Accelerated() {
		return "VAES/VPCLMULQDQ assembly"
	}
	return "crypto/cipher's GCM on this machine"
}

func settingsOf(c *Config) Settings {
	s := Settings{Goroutines: c.Goroutines, Ops: c.Ops, SA: c.Sharing, Reps: c.Reps, Duration: c.Duration,
		Warmup: c.Warmup, ESN: c.ESN, RingBytes: cmp.Or(c.RingBytes, DefaultRingBytes), Method: Method}
	for _, t := range c.Transforms {
		s.Transforms = append(s.Transforms, t.Name)
	}
	for _, z := range c.Sizes {
		s.Sizes = append(s.Sizes, z.Name)
	}
	return s
}

// Report is the outcome of a datapath run.
type Report struct {
	Machine  Machine       `json:"machine"`
	Settings Settings      `json:"settings"`
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Partial  bool          `json:"partial,omitempty"` // the run was cancelled: some groups are missing
	Results  []Result      `json:"results"`
	Ceilings []Result      `json:"ceilings"`
}

// sort orders the rows by operation, transform, size, goroutines and SA
// mode, in the order the configuration lists them.
func (r *Report) sort(c *Config) {
	idx := func(list []string, v string) int { return slices.Index(list, v) }
	var ts, ss []string
	for _, t := range c.Transforms {
		ts = append(ts, t.Name)
	}
	for _, s := range c.Sizes {
		ss = append(ss, s.Name)
	}
	slices.SortStableFunc(r.Results, func(a, b Result) int {
		return cmp.Or(
			cmp.Compare(slices.Index(AllOps, a.Op), slices.Index(AllOps, b.Op)),
			cmp.Compare(idx(ts, a.Transform), idx(ts, b.Transform)),
			cmp.Compare(idx(ss, a.Size), idx(ss, b.Size)),
			cmp.Compare(a.Goroutines, b.Goroutines),
			cmp.Compare(slices.Index(AllSharing, a.SA), slices.Index(AllSharing, b.SA)),
		)
	})
	slices.SortStableFunc(r.Ceilings, func(a, b Result) int {
		return cmp.Or(
			cmp.Compare(idx(ts, a.With), idx(ts, b.With)),
			cmp.Compare(slices.Index(AllOps, a.Op), slices.Index(AllOps, b.Op)),
			cmp.Compare(idx(ss, a.Size), idx(ss, b.Size)),
			cmp.Compare(a.Goroutines, b.Goroutines),
		)
	})
}

// MarshalJSON writes NaN (no data) as null.
func (s Stat) MarshalJSON() ([]byte, error) {
	f := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	return json.Marshal(struct {
		Median any `json:"median"`
		Min    any `json:"min"`
		Max    any `json:"max"`
	}{f(s.Median), f(s.Min), f(s.Max)})
}

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// csvHeader is the header row of WriteCSV.
var csvHeader = []string{
	"kind", "op", "transform", "size", "mean_bytes", "goroutines", "sa", "sa_pairs",
	"gbps_median", "gbps_min", "gbps_max", "mpps_median", "mpps_min", "mpps_max",
	"ns_per_packet_median", "ns_per_packet_min", "ns_per_packet_max",
	"cpu_ns_per_byte_median", "cpu_ns_per_byte_min", "cpu_ns_per_byte_max",
	"allocs_per_packet", "packets", "bytes", "failures", "reps",
	"with", "ceiling", "ceiling_gbps", "ratio", "ceiling_cpu_ns_per_byte", "cpu_ratio", "error",
}

// WriteCSV writes one line per row and per ceiling (kind "row" or
// "ceiling") under a header line.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	g := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	st := func(s Stat) []string { return []string{g(s.Median), g(s.Min), g(s.Max)} }
	write := func(kind string, x *Result) error {
		rec := []string{kind, string(x.Op), x.Transform, x.Size, g(x.MeanBytes), strconv.Itoa(x.Goroutines), string(x.SA), strconv.Itoa(x.SAPairs)}
		rec = append(rec, st(x.Gbps)...)
		rec = append(rec, st(x.Mpps)...)
		rec = append(rec, st(x.NsPerPacket)...)
		rec = append(rec, st(x.CPUNsPerByte)...)
		rec = append(rec, g(x.AllocsPerPacket), strconv.FormatUint(x.Packets, 10), strconv.FormatUint(x.Bytes, 10),
			strconv.FormatUint(x.Failures, 10), strconv.Itoa(x.Reps), x.With, x.Ceiling, g(x.CeilingGbps), g(x.Ratio), g(x.CeilingCPUNsPerByte), g(x.CPURatio), x.Err)
		return cw.Write(rec)
	}
	for i := range r.Results {
		if err := write("row", &r.Results[i]); err != nil {
			return err
		}
	}
	for i := range r.Ceilings {
		if err := write("ceiling", &r.Ceilings[i]); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// sig formats v with about three significant digits.
func sig(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func allocs(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// table lays out rows of cells in aligned columns: text columns left,
// numeric ones (align 'r') right.
type table struct {
	align []byte
	rows  [][]string // nil row: blank line
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	width := make([]int, len(t.align))
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(width) && !trailing(c) {
				width[i] = max(width[i], len([]rune(c)))
			}
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		b.Reset()
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			if i >= len(width) || trailing(c) {
				b.WriteString(c)
				continue
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if t.align[i] == 'r' {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		if _, err := io.WriteString(w, strings.TrimRight(b.String(), " ")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// trailing reports whether a cell is free text that runs past the columns.
func trailing(c string) bool { return strings.HasPrefix(c, "error: ") }

// WriteTable writes the report as aligned text: the machine and settings,
// the rows grouped by operation, the ceilings and how to read them.
func (r *Report) WriteTable(w io.Writer) error {
	s := &r.Settings
	esn := "off"
	if s.ESN {
		esn = "on"
	}
	partial := ""
	if r.Partial {
		partial = " (interrupted: partial)"
	}
	fmt.Fprintf(w, "goipsec bench datapath, %s, %d rows + %d ceilings in %.1fs%s\n", r.Started.Format(time.RFC3339), len(r.Results), len(r.Ceilings), r.Elapsed.Seconds(), partial)
	fmt.Fprintf(w, "machine:  %s\n", r.Machine)
	fmt.Fprintf(w, "settings: per row %v timed in %d reps of %v (median [min-max]), interleaved with its ceiling's, after %v warm-up; ring %d KiB per goroutine; ESN %s\n",
		s.Duration, s.Reps, (s.Duration / time.Duration(max(1, s.Reps))).Round(time.Microsecond), s.Warmup, s.RingBytes>>10, esn)
	if !r.Machine.CPUTime {
		fmt.Fprintln(w, "          (process CPU time unavailable here: CPU ns/B not measured)")
	}
	fmt.Fprintln(w)

	fails := slices.ContainsFunc(r.Results, func(x Result) bool { return x.Failures > 0 }) ||
		slices.ContainsFunc(r.Ceilings, func(x Result) bool { return x.Failures > 0 })
	t := &table{align: []byte("llrrlrlrrrrrrrr")}
	head := []string{"op", "transform", "size", "G", "SA", "Gbit/s", "[min-max]", "Mpps", "ns/pkt", "allocs/pkt", "CPU ns/B", "ceiling", "of ceil", "CPU of ceil"}
	if fails {
		head = append(head, "failed")
	}
	t.add(head...)
	var last Result
	for i, x := range r.Results {
		if i > 0 && (x.Op != last.Op || x.Transform != last.Transform) {
			t.add()
		}
		last = x
		ratio, cpuRatio := percent(x.Ratio), percent(x.CPURatio)
		ceil := "-"
		if x.CeilingGbps > 0 {
			ceil = sig(x.CeilingGbps)
		}
		row := []string{string(x.Op), x.Transform, x.Size, strconv.Itoa(x.Goroutines), string(x.SA)}
		row = append(row, numbers(&x)...)
		row = append(row, ceil, ratio, cpuRatio)
		if fails {
			row = append(row, strconv.FormatUint(x.Failures, 10))
		}
		if x.Err != "" {
			row = append(row[:5], "error: "+x.Err)
		}
		t.add(row...)
	}
	if err := t.write(w); err != nil {
		return err
	}
	if len(r.Ceilings) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "ceilings: the bare primitives alone, same sizes and goroutine counts, measured interleaved with the rows of the transform in \"with\"")
		t := &table{align: []byte("lllrrrlrrrr")}
		t.add("primitive", "with", "op", "size", "G", "Gbit/s", "[min-max]", "Mpps", "ns/pkt", "allocs/pkt", "CPU ns/B")
		for i, x := range r.Ceilings {
			if i > 0 && x.With != r.Ceilings[i-1].With {
				t.add()
			}
			row := []string{x.Transform, x.With, string(x.Op), x.Size, strconv.Itoa(x.Goroutines)}
			row = append(row, numbers(&x)...)
			if x.Err != "" {
				row = append(row[:5], "error: "+x.Err)
			}
			t.add(row...)
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	for _, m := range s.Method {
		fmt.Fprintln(w, "- "+m)
	}
	return nil
}

func percent(v float64) string {
	if !(v > 0) {
		return "-"
	}
	return strconv.FormatFloat(100*v, 'f', 0, 64) + "%"
}

func numbers(x *Result) []string {
	return []string{
		sig(x.Gbps.Median), "[" + sig(x.Gbps.Min) + "-" + sig(x.Gbps.Max) + "]",
		sig(x.Mpps.Median), sig(x.NsPerPacket.Median), allocs(x.AllocsPerPacket), sig(x.CPUNsPerByte.Median),
	}
}
