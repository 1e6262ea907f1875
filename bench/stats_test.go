package bench

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name          string
		in            []float64
		med, min, max float64
	}{
		{"one", []float64{3}, 3, 3, 3},
		{"odd", []float64{5, 1, 3}, 3, 1, 5},
		{"even", []float64{4, 1, 3, 10}, 3.5, 1, 10},
		{"repeats", []float64{2, 2, 2, 9, 2}, 2, 2, 9},
		{"negative", []float64{-1, -3, -2}, -2, -3, -1},
		{"nan ignored", []float64{nan, 7, 1, nan, 4}, 4, 1, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			got := Summarize(in)
			if got != (Stat{tc.med, tc.min, tc.max}) {
				t.Errorf("Summarize(%v) = %+v, want median %v min %v max %v", tc.in, got, tc.med, tc.min, tc.max)
			}
			for i := range in {
				if in[i] != tc.in[i] && !(math.IsNaN(in[i]) && math.IsNaN(tc.in[i])) {
					t.Fatalf("Summarize reordered its input: %v", in)
				}
			}
		})
	}
	for _, in := range [][]float64{nil, {}, {nan, nan}} {
		s := Summarize(in)
		if !math.IsNaN(s.Median) || !math.IsNaN(s.Min) || !math.IsNaN(s.Max) {
			t.Errorf("Summarize(%v) = %+v, want NaNs", in, s)
		}
	}
}

func TestSpread(t *testing.T) {
	if got := (Stat{Median: 10, Min: 9, Max: 12}).Spread(); math.Abs(got-0.3) > 1e-12 {
		t.Errorf("Spread = %v, want 0.3", got)
	}
	if got := (Stat{}).Spread(); !math.IsNaN(got) {
		t.Errorf("Spread of a zero median = %v, want NaN", got)
	}
}
