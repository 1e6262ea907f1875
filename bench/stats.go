package bench

import (
	"math"
	"slices"
)

// Stat summarises the repetitions of one metric.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the median (of an even count, the mean of the middle
// two), minimum and maximum of xs, ignoring NaNs; of nothing, NaNs.
func Summarize(xs []float64) Stat {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Stat{math.NaN(), math.NaN(), math.NaN()}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Stat{Median: med, Min: v[0], Max: v[n-1]}
}

// Spread is (Max-Min)/Median: the relative width of the repetitions.
func (s Stat) Spread() float64 {
	if s.Median == 0 {
		return math.NaN()
	}
	return (s.Max - s.Min) / s.Median
}
