package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// sampleReport is a small report with every kind of row the writers must
// handle: plain rows, a row without a ceiling, a failed row, ceilings.
func sampleReport() *Report {
	st := func(m float64) Stat { return Stat{m, m * 0.9, m * 1.1} }
	row := func(op Op, tr, size string, g int, sa Sharing, gbps float64) Result {
		return Result{Op: op, Transform: tr, Size: size, MeanBytes: 1400, Goroutines: g, SA: sa, SAPairs: g,
			Gbps: st(gbps), Mpps: st(gbps / 11.2), NsPerPacket: st(11200 / gbps), CPUNsPerByte: st(8 / gbps),
			Packets: 1000, Bytes: 1400000, Reps: 5, Ceiling: "aes128gcm16", CeilingGbps: 20, Ratio: gbps / 20,
			CeilingCPUNsPerByte: 0.4, CPURatio: 0.4 / (8 / gbps)}
	}
	r := &Report{
		Machine:  Machine{CPU: "Test CPU <&>", CPUs: 2, GOMAXPROCS: 2, OS: "linux/amd64", Kernel: "Linux 6.1", Go: "go1.26", CPUTime: true},
		Settings: Settings{Transforms: []string{"aes128gcm16", "ah-sha256"}, Sizes: []string{"64", "1400"}, Goroutines: []int{1, 2}, Ops: AllOps, SA: AllSharing, Reps: 5, Duration: 60 * time.Millisecond, Warmup: 10 * time.Millisecond, RingBytes: 1 << 20, Method: Method},
		Started:  time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC),
		Elapsed:  3 * time.Second,
		Results: []Result{
			row(OpSeal, "aes128gcm16", "64", 1, Own, 3.1),
			row(OpSeal, "aes128gcm16", "1400", 1, Own, 17.5),
			row(OpSeal, "aes128gcm16", "1400", 2, Shared, 30.25),
			row(OpOpen, "ah-sha256", "1400", 2, Own, 9.9),
			row(OpPipeline, "aes128gcm16", "1400", 2, Own, 7.3),
		},
		Ceilings: []Result{
			{Op: OpSeal, Transform: "aes128gcm16", With: "aes128gcm16", Size: "1400", Goroutines: 1, Gbps: st(20), Mpps: st(1.8), NsPerPacket: st(560), CPUNsPerByte: st(0.4), Packets: 99, Reps: 5},
		},
	}
	r.Results[1].AllocsPerPacket = 0.0004
	r.Results[2].Failures = 3
	r.Results[3].CeilingGbps, r.Results[3].Ratio = 0, 0
	bad := Result{Op: OpPipeline, Transform: "ah-sha256", Size: "64", Goroutines: 1, SA: Own, Gbps: Summarize(nil), Mpps: Summarize(nil),
		NsPerPacket: Summarize(nil), CPUNsPerByte: Summarize(nil), Err: "something broke"}
	r.Results = append(r.Results, bad)
	return r
}

func TestWriteTable(t *testing.T) {
	r := sampleReport()
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"Test CPU <&>", "GOMAXPROCS 2", "Linux 6.1", "go1.26", "5 reps of 12ms",
		"of ceil", "CPU of ceil", "failed", "error: something broke", "ceilings:", "88%", "0.0004"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// The main table is aligned: in every data line, the Gbit/s column
	// ends where its header does.
	lines := strings.Split(out, "\n")
	hi := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "op ") {
			hi = i
			break
		}
	}
	if hi < 0 {
		t.Fatalf("no header line:\n%s", out)
	}
	end := strings.Index(lines[hi], "Gbit/s") + len("Gbit/s")
	rows := 0
	for _, l := range lines[hi+1:] {
		if l == "" || strings.HasPrefix(l, "ceilings") {
			if strings.HasPrefix(l, "ceilings") {
				break
			}
			continue
		}
		rows++
		if strings.Contains(l, "error:") {
			continue
		}
		if len(l) < end || l[end-1] == ' ' || (len(l) > end && l[end] != ' ') {
			t.Errorf("misaligned line (Gbit/s should end at column %d):\n%s\n%s", end, lines[hi], l)
		}
	}
	if rows != len(r.Results) {
		t.Errorf("%d table rows, want %d", rows, len(r.Results))
	}
}

func TestWriteJSON(t *testing.T) {
	r := sampleReport()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Machine Machine `json:"machine"`
		Results []struct {
			Op     string `json:"op"`
			Gbps   struct{ Median, Min, Max *float64 }
			Ratio  float64 `json:"ratio"`
			Err    string  `json:"error"`
			Allocs float64 `json:"allocs_per_packet"`
		} `json:"results"`
		Ceilings []map[string]any `json:"ceilings"`
		Settings map[string]any   `json:"settings"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got.Results) != len(r.Results) || len(got.Ceilings) != 1 || got.Machine.CPU != "Test CPU <&>" {
		t.Fatalf("round trip lost rows: %+v", got)
	}
	if g := got.Results[1].Gbps; g.Median == nil || *g.Median != 17.5 || got.Results[1].Allocs != 0.0004 {
		t.Errorf("row 1: %+v", got.Results[1])
	}
	last := got.Results[len(got.Results)-1]
	if last.Gbps.Median != nil || last.Err != "something broke" {
		t.Errorf("failed row: NaN should be null: %+v", last)
	}
	if got.Ceilings[0]["with"] != "aes128gcm16" || got.Settings["reps"] != 5.0 {
		t.Errorf("ceiling %v, settings %v", got.Ceilings[0], got.Settings)
	}
}

// csvRecords parses what write writes as CSV.
func csvRecords(t *testing.T, write func(io.Writer) error) [][]string {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestWriteCSV(t *testing.T) {
	r := sampleReport()
	recs := csvRecords(t, r.WriteCSV)
	if len(recs) != 1+len(r.Results)+len(r.Ceilings) {
		t.Fatalf("%d records", len(recs))
	}
	head := recs[0]
	col := func(name string) int {
		for i, h := range head {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %q in %v", name, head)
		return -1
	}
	for _, rec := range recs[1:] {
		if len(rec) != len(head) {
			t.Fatalf("record of %d fields, header %d", len(rec), len(head))
		}
	}
	if recs[2][col("gbps_median")] != "17.5" || recs[2][col("kind")] != "row" || recs[2][col("allocs_per_packet")] != "0.0004" {
		t.Errorf("row: %v", recs[2])
	}
	if recs[3][col("failures")] != "3" || recs[3][col("sa")] != "shared" {
		t.Errorf("row: %v", recs[3])
	}
	if rec := recs[len(r.Results)]; rec[col("gbps_median")] != "" || rec[col("error")] != "something broke" {
		t.Errorf("failed row: %v", rec)
	}
	if rec := recs[len(recs)-1]; rec[col("kind")] != "ceiling" || rec[col("with")] != "aes128gcm16" {
		t.Errorf("ceiling: %v", rec)
	}
}

func TestWritePlot(t *testing.T) {
	for _, r := range []*Report{sampleReport(), {Settings: Settings{Reps: 1}}} {
		var b bytes.Buffer
		if err := r.WritePlot(&b); err != nil {
			t.Fatal(err)
		}
		root, bars, texts := svgElements(t, &b)
		if root != "svg" {
			t.Errorf("root element %q", root)
		}
		if bars != len(r.Results) {
			t.Errorf("%d bars for %d rows", bars, len(r.Results))
		}
		if len(r.Results) > 0 && texts < 10 {
			t.Errorf("only %d labels", texts)
		}
	}
}

// svgElements parses an SVG plot and returns its root element's name, the
// number of bars (rect class="bar") and the number of text elements.
func svgElements(t *testing.T, r io.Reader) (root string, bars, texts int) {
	t.Helper()
	d := xml.NewDecoder(r)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return root, bars, texts
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		switch se.Name.Local {
		case "rect":
			for _, a := range se.Attr {
				if a.Name.Local == "class" && a.Value == "bar" {
					bars++
				}
			}
		case "text":
			texts++
		}
	}
}

func TestNiceScale(t *testing.T) {
	for _, v := range []float64{0.013, 0.9, 1, 3.7, 10, 17.5, 99, 123456} {
		top, step := niceScale(v)
		n := top / step
		if top < v || n < 2.99 || n > 5.01 || math.Abs(n-math.Round(n)) > 1e-9 {
			t.Errorf("niceScale(%v) = %v, %v", v, top, step)
		}
	}
	if top, step := niceScale(0); top <= 0 || step <= 0 {
		t.Errorf("niceScale(0) = %v, %v", top, step)
	}
	if got := tickLabel(2.5, 2.5); got != "2.5" {
		t.Errorf("tickLabel = %q", got)
	}
	if got := tickLabel(20, 10); got != "20" {
		t.Errorf("tickLabel = %q", got)
	}
}
