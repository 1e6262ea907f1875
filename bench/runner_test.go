package bench

import (
	"math"
	"testing"
	"time"
)

// gbpsSample is a repetition of 1 ms that carried gbps Gbit/s at cpu ns of
// CPU time per byte.
func gbpsSample(gbps, cpuNsPerByte float64) sample {
	bytes := uint64(gbps * 1e9 / 8 / 1000)
	return sample{elapsed: time.Millisecond, cpu: time.Duration(cpuNsPerByte * float64(bytes)), pkts: 1, bytes: bytes}
}

// TestPairedRatios checks that rows are compared with their ceiling
// repetition by repetition: the median of the ratios, not the ratio of the
// medians, and seal then open for the pipeline.
func TestPairedRatios(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-3 }
	row := []sample{gbpsSample(1, 4), gbpsSample(2, 2), gbpsSample(3, 1)}
	ceil := map[Op][]sample{OpSeal: {gbpsSample(2, 2), gbpsSample(2, 2), gbpsSample(6, 0.5)}}
	r, c := pairedRatios(row, ceil, OpSeal)
	// Ratios 0.5, 1, 0.5: median 0.5 (the medians' ratio would be 1).
	if !near(r, 0.5) || !near(c, 0.5) {
		t.Errorf("seal: ratio %v cpu ratio %v, want 0.5 and 0.5", r, c)
	}
	if r, c := pairedRatios(row, ceil, OpOpen); r != 0 || c != 0 {
		t.Errorf("no open ceiling: got %v %v, want 0 0", r, c)
	}
	// The pipeline's ceiling is seal then open: 1/(1/2+1/2) = 1 Gbit/s
	// and 2+2 ns/B in every repetition.
	ceil[OpOpen] = []sample{gbpsSample(2, 2), gbpsSample(2, 2), gbpsSample(2, 2)}
	ceil[OpSeal] = ceil[OpOpen]
	r, c = pairedRatios(row, ceil, OpPipeline)
	if !near(r, 2) || !near(c, 2) {
		t.Errorf("pipeline: ratio %v cpu ratio %v, want 2 and 2", r, c)
	}
	// A repetition the ceiling lacks is left out.
	r, _ = pairedRatios(row, map[Op][]sample{OpSeal: {gbpsSample(1, 1)}}, OpSeal)
	if !near(r, 1) {
		t.Errorf("short ceiling: ratio %v, want 1", r)
	}
}
