package labbench

import (
	"math"
	"slices"
	"time"
)

// Summary condenses one cell's latency samples.
type Summary struct {
	N          int     `json:"n"`
	P50Ns      int64   `json:"p50_ns"`
	P90Ns      int64   `json:"p90_ns"`
	P99Ns      int64   `json:"p99_ns"`
	MaxNs      int64   `json:"max_ns"`
	OverBudget float64 `json:"over_budget"` // fraction of samples above the budget
}

// Summarize computes nearest-rank percentiles and the fraction of samples
// over budget.
func Summarize(samples []int64, budget time.Duration) Summary {
	s := Summary{N: len(samples)}
	if len(samples) == 0 {
		return s
	}
	v := slices.Clone(samples)
	slices.Sort(v)
	over := len(v) - upperBound(v, int64(budget))
	s.OverBudget = float64(over) / float64(len(v))
	s.P50Ns, s.P90Ns, s.P99Ns = rank(v, 0.50), rank(v, 0.90), rank(v, 0.99)
	s.MaxNs = v[len(v)-1]
	return s
}

// upperBound is the number of sorted values <= x.
func upperBound(sorted []int64, x int64) int {
	i, _ := slices.BinarySearchFunc(sorted, x, func(e, t int64) int {
		if e <= t {
			return -1
		}
		return 1
	})
	return i
}

func rank(sorted []int64, q float64) int64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Spread is the median and range of one figure over repetitions.
type Spread struct {
	Median, Min, Max float64
	N                int
}

// spreadOf ignores NaNs (repetitions that produced no value).
func spreadOf(xs []float64) Spread {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Median: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}
