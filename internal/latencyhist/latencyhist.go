// Package latencyhist mirrors bpf/include/latency_hist.h: the log2 histogram
// with linear sub-buckets that every scx-slo BPF program records into, and
// the conversions userspace needs (bucket bounds, Prometheus buckets,
// quantiles).
package latencyhist

import "math/bits"

// Must match latency_hist.h; TestMatchesHeader checks.
const (
	UnitShift = 8
	SubBits   = 2
	Buckets   = 96
)

// Index returns the bucket a latency of ns nanoseconds falls in.
func Index(ns uint64) int {
	u := ns >> UnitShift
	if u < 1<<SubBits {
		return int(u)
	}
	msb := bits.Len64(u) - 1
	sub := int(u>>(msb-SubBits)) & (1<<SubBits - 1)
	idx := (msb-1)*(1<<SubBits) + sub
	if idx >= Buckets {
		return Buckets - 1
	}
	return idx
}

// Lower returns the smallest latency (ns) in bucket i.
func Lower(i int) uint64 {
	if i < 1<<SubBits {
		return uint64(i) << UnitShift
	}
	msb := i/(1<<SubBits) + 1
	sub := uint64(i % (1 << SubBits))
	return ((1<<SubBits + sub) << (msb - SubBits)) << UnitShift
}

// Upper returns the exclusive upper bound (ns) of bucket i; the last bucket
// is open-ended and reports the bound it would have had.
func Upper(i int) uint64 { return Lower(i + 1) }

// PromBounds are the classic Prometheus bucket bounds (seconds) exported
// per cgroup: every other bucket edge from 1 us, i.e. 1x and 1.5x each
// power of two, which keeps quantile error under 33% with 46 buckets.
var PromBounds = func() []float64 {
	var b []float64
	for i := 1 << SubBits; i < Buckets; i += 2 {
		b = append(b, float64(Lower(i))/1e9)
	}
	return b
}()

// Cumulative folds raw bucket counts into the cumulative counts of
// PromBounds, keyed by upper bound as client_golang's MustNewConstHistogram
// wants.
func Cumulative(counts *[Buckets]uint64) map[float64]uint64 {
	out := make(map[float64]uint64, len(PromBounds))
	var running uint64
	next := 0
	for i := 0; i < Buckets && next < len(PromBounds); i++ {
		// Bucket i belongs under every bound >= its upper edge.
		for next < len(PromBounds) && float64(Lower(i))/1e9 >= PromBounds[next] {
			out[PromBounds[next]] = running
			next++
		}
		running += counts[i]
	}
	for ; next < len(PromBounds); next++ {
		out[PromBounds[next]] = running
	}
	return out
}

// Quantile estimates the q-quantile (0..1) in seconds by linear
// interpolation inside the bucket that holds it; 0 for an empty histogram.
func Quantile(counts *[Buckets]uint64, q float64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			frac := (rank - seen) / float64(c)
			lo, hi := float64(Lower(i)), float64(Upper(i))
			return (lo + frac*(hi-lo)) / 1e9
		}
		seen += float64(c)
	}
	return float64(Upper(Buckets-1)) / 1e9
}
