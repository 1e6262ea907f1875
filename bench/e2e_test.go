package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCompare(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "", want: nil},
		{in: "none", want: nil},
		{in: "plain", want: []string{ImplPlain}},
		{in: "strongswan, wireguard-go ,plain", want: []string{ImplPlain, ImplWireguardGo, ImplStrongSwan}},
		{in: "wg,WireGuard-Go,swan", want: []string{ImplWireguardGo, ImplStrongSwan}},
		{in: "all", want: []string{ImplPlain, ImplWireguardGo, ImplStrongSwan}},
		{in: "openvpn", bad: true},
		{in: "goipsec", bad: true},
	} {
		got, err := ParseCompare(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseCompare(%q) = %v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseCompare(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseStreamsAndSizes(t *testing.T) {
	if got, err := ParseStreams("1,4,1"); err != nil || !slices.Equal(got, []int{1, 4}) {
		t.Errorf("ParseStreams = %v, %v", got, err)
	}
	if got, err := ParseStreams("none"); err != nil || got != nil {
		t.Errorf("ParseStreams(none) = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "x", "65", "-1"} {
		if _, err := ParseStreams(bad); err == nil {
			t.Errorf("ParseStreams(%q) accepted", bad)
		}
	}
	if got, err := ParseUDPSizes("64, 1372"); err != nil || !slices.Equal(got, []int{64, 1372}) {
		t.Errorf("ParseUDPSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"15", "1373", "imix"} {
		if _, err := ParseUDPSizes(bad); err == nil {
			t.Errorf("ParseUDPSizes(%q) accepted", bad)
		}
	}
	if tr, err := ParseE2ETransform("aes128-sha256"); err != nil || tr.Name != "aes128-sha256" || tr.integ == nil {
		t.Errorf("ParseE2ETransform = %+v, %v", tr, err)
	}
	if _, err := ParseE2ETransform("ah-sha256"); err == nil {
		t.Error("ParseE2ETransform accepted AH")
	}
}

func TestE2EConfig(t *testing.T) {
	c := DefaultE2EConfig()
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tc := range c.Tests() {
		names = append(names, tc.Name())
	}
	if !slices.Equal(names, []string{"tcp-1", "tcp-4", "udp-64"}) {
		t.Errorf("default tests %v", names)
	}
	c.Compare = []string{ImplStrongSwan, ImplWireguardGo}
	if got := c.Impls(); !slices.Equal(got, []string{ImplPlain, ImplGoipsec, ImplWireguardGo, ImplStrongSwan}) {
		t.Errorf("Impls = %v", got)
	}
	withBase := c
	withBase.Baseline = "/tmp/goipsec-old"
	if got := withBase.Impls(); !slices.Equal(got, []string{ImplPlain, ImplGoipsec, ImplBaseline, ImplWireguardGo, ImplStrongSwan}) {
		t.Errorf("Impls with a baseline = %v", got)
	}
	for _, mod := range []func(*E2EConfig){
		func(c *E2EConfig) { c.Reps = 0 },
		func(c *E2EConfig) { c.Duration = 0 },
		func(c *E2EConfig) { c.Duration, c.Reps = time.Second, 20 },
		func(c *E2EConfig) { c.Warmup = -1 },
		func(c *E2EConfig) { c.Streams, c.UDPSizes = nil, nil },
		func(c *E2EConfig) { c.UDPRate = -5 },
		func(c *E2EConfig) { c.UDPFlows = 65 },
	} {
		c := DefaultE2EConfig()
		mod(&c)
		if err := c.check(); err == nil {
			t.Errorf("check accepted %+v", c)
		}
	}
	if (E2ETest{Proto: "udp", Size: 64}).Title() != "UDP, 64-byte payloads" || (E2ETest{Proto: "tcp", Streams: 1}).Title() != "TCP, 1 stream" {
		t.Error("titles")
	}
}

func TestSummarizeE2E(t *testing.T) {
	tc := E2ETest{Proto: "udp", Size: 100}
	ok3 := [3]bool{true, true, true}
	ss := []e2eSample{
		{dur: time.Second, bytes: 100 * 1000, pkts: 1000, sent: 2000, cpu: [3]time.Duration{500 * time.Millisecond, 250 * time.Millisecond, time.Second}, cpuOK: ok3},
		{dur: 2 * time.Second, bytes: 100 * 4000, pkts: 4000, sent: 4000, cpu: [3]time.Duration{time.Second, time.Second, time.Second}, cpuOK: [3]bool{true, true, false}},
		{err: errors.New("boom")},
		{dur: time.Second, bytes: 100 * 3000, pkts: 3000, sent: 4000, cpu: [3]time.Duration{time.Second, 0, 0}, cpuOK: [3]bool{true}},
	}
	r := summarizeE2E(tc, ImplGoipsec, ss)
	if r.Test != "udp-100" || r.Reps != 3 || r.Failed != 1 || r.Err != "" || r.Packets != 8000 || r.Elapsed != 4*time.Second {
		t.Fatalf("%+v", r)
	}
	if r.Kpps != (Stat{2, 1, 3}) || r.SentKpps != (Stat{2, 2, 4}) {
		t.Errorf("kpps %+v sent %+v", r.Kpps, r.SentKpps)
	}
	if r.Loss.Median != 0.25 || r.Loss.Min != 0 || r.Loss.Max != 0.5 {
		t.Errorf("loss %+v", r.Loss)
	}
	if math.Abs(r.Gbps.Median-0.0016) > 1e-12 {
		t.Errorf("gbps %+v", r.Gbps)
	}
	// Left: 500 µs/pkt at 1000 pkts, 250 at 4000, 333 at 3000.
	if got := r.LeftCPUNsPerPacket; math.Abs(got.Median-333333.33) > 1 || got.Min != 250000 || got.Max != 500000 {
		t.Errorf("left ns/pkt %+v", got)
	}
	if got := r.LeftCPUNsPerByte.Median; math.Abs(got-3333.33) > 0.01 {
		t.Errorf("left ns/B %v", got)
	}
	if r.RightCores.Median != 0.375 || r.GenCores != (Stat{1, 1, 1}) {
		t.Errorf("cores right %+v gen %+v", r.RightCores, r.GenCores)
	}
	bad := summarizeE2E(E2ETest{Proto: "tcp", Streams: 1}, ImplPlain, []e2eSample{{err: errors.New("no way")}})
	if bad.Err != "no way" || bad.Reps != 0 || !math.IsNaN(bad.Gbps.Median) {
		t.Errorf("all failed: %+v", bad)
	}
}

// sampleE2EReport is a small report with every kind of row.
func sampleE2EReport() *E2EReport {
	tests := []E2ETest{{Proto: "tcp", Streams: 1}, {Proto: "udp", Size: 64}}
	st := func(m float64) Stat { return Stat{m, m * 0.9, m * 1.1} }
	row := func(tc E2ETest, impl string, v, cpu float64) E2EResult {
		x := E2EResult{Test: tc.Name(), Proto: tc.Proto, Streams: tc.Streams, Size: tc.Size, Impl: impl, Reps: 3, Bytes: 1e9,
			Gbps: st(v), Kpps: Summarize(nil), SentKpps: Summarize(nil), Loss: Summarize(nil),
			LeftCPUNsPerByte: st(cpu), RightCPUNsPerByte: st(cpu), GenCPUNsPerByte: st(0.5),
			LeftCPUNsPerPacket: Summarize(nil), RightCPUNsPerPacket: Summarize(nil),
			LeftCores: st(0.5), RightCores: st(0.4), GenCores: st(0.3)}
		if tc.Proto == "udp" {
			x.Kpps, x.SentKpps, x.Loss, x.Gbps = st(v), st(3*v), st(0.5), st(v*64*8/1e6)
			x.LeftCPUNsPerPacket, x.RightCPUNsPerPacket = st(cpu*64), st(cpu*64)
		}
		if impl == ImplPlain {
			nan := Summarize(nil)
			x.LeftCPUNsPerByte, x.RightCPUNsPerByte, x.LeftCores, x.RightCores = nan, nan, nan, nan
			x.LeftCPUNsPerPacket, x.RightCPUNsPerPacket = nan, nan
		}
		return x
	}
	r := &E2EReport{
		Machine: Machine{CPU: "Test CPU <&>", CPUs: 2, GOMAXPROCS: 2, OS: "linux/amd64", Kernel: "Linux 6.1", Go: "go1.26", LoadAvg: "0.1 0.2 0.3", CPUTime: true},
		Settings: E2ESettings{Tests: tests, Impls: []string{ImplPlain, ImplGoipsec, ImplWireguardGo, ImplStrongSwan}, Transform: "aes128gcm16",
			Reps: 3, Duration: 6 * time.Second, Warmup: 500 * time.Millisecond, Topology: []string{"two namespaces"}, Method: E2EMethod},
		Started: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC),
		Elapsed: 42 * time.Second,
		Impls: []E2EImpl{
			{Name: ImplPlain, Setup: "the bare veth", MTU: 1500},
			{Name: ImplGoipsec, Version: "dev", Setup: "static keys", MTU: 1400},
			{Name: ImplWireguardGo, Version: "v0.0.2025", Setup: "wg", MTU: 1420},
			{Name: ImplStrongSwan, Skipped: "strongSwan not installed"},
		},
	}
	// Out of order on purpose: finish sorts.
	r.Results = []E2EResult{
		row(tests[1], ImplGoipsec, 100, 40),
		row(tests[0], ImplWireguardGo, 1.5, 3),
		row(tests[0], ImplGoipsec, 3, 1.5),
		row(tests[0], ImplPlain, 15, 0),
		row(tests[1], ImplWireguardGo, 25, 160),
		row(tests[1], ImplPlain, 400, 0), // index 3 once sorted
	}
	r.finish()
	return r
}

func TestE2EFinish(t *testing.T) {
	r := sampleE2EReport()
	var order []string
	for _, x := range r.Results {
		order = append(order, x.Test+"/"+x.Impl)
	}
	want := []string{"tcp-1/plain", "tcp-1/goipsec", "tcp-1/wireguard-go", "udp-64/plain", "udp-64/goipsec", "udp-64/wireguard-go"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %v", order)
	}
	if x := r.Result("tcp-1", ImplWireguardGo); x.Ratio != 2 || x.CPURatio != 2 {
		t.Errorf("tcp-1 wireguard-go ratio %v cpu %v", x.Ratio, x.CPURatio)
	}
	if x := r.Result("udp-64", ImplWireguardGo); x.Ratio != 4 || x.CPURatio != 4 {
		t.Errorf("udp-64 wireguard-go ratio %v cpu %v", x.Ratio, x.CPURatio)
	}
	if x := r.Result("tcp-1", ImplPlain); x.Ratio != 0.2 || x.CPURatio != 0 {
		t.Errorf("tcp-1 plain ratio %v cpu %v", x.Ratio, x.CPURatio)
	}
	if x := r.Result("tcp-1", ImplGoipsec); x.Ratio != 1 {
		t.Errorf("goipsec ratio %v", x.Ratio)
	}
	// goipsec near the generator's ceiling gets a note.
	r.Results[1].Gbps = Stat{12, 11, 13}
	r.Notes = nil
	r.finish()
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "tcp-1: goipsec reaches 80%") {
		t.Errorf("notes %q", r.Notes)
	}
	// goipsec carrying all the generator offers gets one too.
	r.Results[4].Loss = Stat{0.01, 0, 0.02}
	r.Notes = nil
	r.finish()
	if len(r.Notes) != 2 || !strings.Contains(r.Notes[1], "udp-64: goipsec carried 99% of what the generator offered") {
		t.Errorf("notes %q", r.Notes)
	}
}

func TestE2ENotesSpread(t *testing.T) {
	r := sampleE2EReport()
	x := r.Result("tcp-1", ImplWireguardGo)
	x.Gbps, x.Failed = Stat{1, 0.5, 2}, 1
	r.Notes = nil
	r.finish()
	joined := strings.Join(r.Notes, "\n")
	if !strings.Contains(joined, "tcp-1 wireguard-go: 1 of 4 repetitions failed") || !strings.Contains(joined, "spread wide ((max-min)/median over 25%): tcp-1 wireguard-go 150%;") {
		t.Errorf("notes:\n%s", joined)
	}
}

func TestE2EWriteTable(t *testing.T) {
	r := sampleE2EReport()
	r.Results = append(r.Results, E2EResult{Test: "udp-64", Proto: "udp", Size: 64, Impl: ImplStrongSwan, Err: "it broke"})
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"Test CPU <&>", "Linux 6.1", "go1.26", "3 reps of 2s", "500ms warm-up",
		"TCP bulk", "UDP, left to right", "goipsec / other", "skipped: strongSwan not installed",
		"v0.0.2025: wg, MTU", "error: it broke", "2.00x", "4.00x", "0.200x", "0.250x", "50%", "- plain is the bare veth"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// The TCP table is aligned: Gbit/s ends where its header does.
	lines := strings.Split(out, "\n")
	hi := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "test ") && strings.Contains(l, "Gbit/s") })
	if hi < 0 {
		t.Fatalf("no TCP header:\n%s", out)
	}
	end := strings.Index(lines[hi], "Gbit/s") + len("Gbit/s")
	for _, l := range lines[hi+1 : hi+4] {
		if len(l) < end || l[end-1] == ' ' || l[end] != ' ' {
			t.Errorf("misaligned:\n%s\n%s", lines[hi], l)
		}
	}
	// The ratio table lists wireguard-go before plain.
	ri := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "goipsec / other") })
	if ri < 0 || !strings.Contains(lines[ri+1], "wireguard-go") || strings.Index(lines[ri+1], "wireguard-go") > strings.Index(lines[ri+1], "plain") {
		t.Errorf("ratio header: %q", lines[ri+1])
	}
}

func TestE2EWriteJSON(t *testing.T) {
	r := sampleE2EReport()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Machine  Machine          `json:"machine"`
		Settings map[string]any   `json:"settings"`
		Impls    []E2EImpl        `json:"impls"`
		Results  []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got.Results) != len(r.Results) || len(got.Impls) != 4 || got.Impls[3].Skipped == "" || got.Settings["reps"] != 3.0 {
		t.Fatalf("round trip: %+v", got)
	}
	plain := got.Results[0]
	if plain["impl"] != "plain" || plain["left_cpu_ns_per_byte"].(map[string]any)["median"] != nil {
		t.Errorf("plain row: NaN should be null: %v", plain)
	}
	if g := got.Results[1]["gbps"].(map[string]any)["median"]; g != 3.0 {
		t.Errorf("goipsec gbps %v", g)
	}
}

func TestE2EWriteCSV(t *testing.T) {
	r := sampleE2EReport()
	recs := csvRecords(t, r.WriteCSV)
	if len(recs) != 1+len(r.Results) {
		t.Fatalf("%d records", len(recs))
	}
	col := func(name string) int {
		i := slices.Index(recs[0], name)
		if i < 0 {
			t.Fatalf("no column %q", name)
		}
		return i
	}
	for _, rec := range recs[1:] {
		if len(rec) != len(recs[0]) {
			t.Fatalf("record of %d fields, header %d", len(rec), len(recs[0]))
		}
	}
	if rec := recs[3]; rec[col("impl")] != "wireguard-go" || rec[col("goipsec_ratio")] != "2" || rec[col("gbps_median")] != "1.5" {
		t.Errorf("row %v", rec)
	}
	if rec := recs[1]; rec[col("left_cpu_ns_per_byte")] != "" || rec[col("goipsec_cpu_ratio")] != "" {
		t.Errorf("plain row %v", rec)
	}
	if rec := recs[5]; rec[col("kpps_median")] != "100" || rec[col("loss_median")] != "0.5" {
		t.Errorf("udp row %v", rec)
	}
}

func TestE2EWritePlot(t *testing.T) {
	for _, r := range []*E2EReport{sampleE2EReport(), {Settings: E2ESettings{Reps: 1}}} {
		var b bytes.Buffer
		if err := r.WritePlot(&b); err != nil {
			t.Fatal(err)
		}
		if root, bars, _ := svgElements(t, &b); root != "svg" || bars != len(r.Results) {
			t.Errorf("root %q, %d bars for %d rows", root, bars, len(r.Results))
		}
	}
}
