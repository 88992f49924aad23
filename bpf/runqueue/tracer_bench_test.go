package runqueue

import (
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/testbed/pingpong"
)

func loadForTest(tb testing.TB) *Tracer {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to load BPF")
	}
	h, err := cgroupfs.Detect("/sys/fs/cgroup", "auto")
	if err != nil {
		tb.Skip(err)
	}
	tr, err := Load(Options{Hierarchy: h})
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

// costPairs is how many without/with measurements each case interleaves.
const costPairs = 7

// BenchmarkTracerCost measures what the observe-mode tracer costs the
// scheduler path, all in one run so the figures share one machine state:
//
//   - pipe-ratio: pipe ping-pong throughput with the tracer attached over
//     without it, the median of costPairs interleaved pairs (the order
//     alternates so a drift in machine load favours neither side);
//   - <program>-ns/run: each program's mean run time from bpf_stats
//     (kernel.bpf_stats_enabled), taken in a separate pass because the
//     statistics cost time themselves.
//
// "saturated" runs one ping-pong pair per CPU, so every CPU always has a
// task to switch to; "single" runs one pair, which leaves CPUs idle
// between round trips. b.N is the round trips per measurement:
//
//	sudo go test -run '^$' -bench TracerCost -benchtime 100000x ./bpf/runqueue
func BenchmarkTracerCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to load BPF")
	}
	b.Run("saturated", func(b *testing.B) { benchTracerCost(b, runtime.NumCPU()) })
	b.Run("single", func(b *testing.B) { benchTracerCost(b, 1) })
}

func benchTracerCost(b *testing.B, pairs int) {
	run := func() time.Duration {
		d, err := pingpong.RunPairs(pairs, b.N)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	var ratios, without, with []float64
	for i := 0; i < costPairs; i++ {
		var off, on time.Duration
		if i%2 == 0 {
			off = run()
			on = runTraced(b, run)
		} else {
			on = runTraced(b, run)
			off = run()
		}
		without = append(without, float64(off))
		with = append(with, float64(on))
		ratios = append(ratios, float64(off)/float64(on))
	}
	b.Logf("%d pairs: round trip without %v, with %v ns", pairs, without, with)
	b.ReportMetric(median(ratios), "pipe-ratio")
	b.ReportMetric(median(without), "roundtrip-ns-without")
	b.ReportMetric(median(with), "roundtrip-ns-with")

	tr := loadForTest(b)
	defer tr.Close()
	before := programStats(b, tr)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	run()
	stats.Close()
	after := programStats(b, tr)
	for _, name := range []string{"sched_switch", "sched_wakeup"} {
		runs := after[name].RunCount - before[name].RunCount
		if runs == 0 {
			b.Fatalf("%s never ran during the ping-pong", name)
		}
		ns := after[name].Runtime - before[name].Runtime
		b.ReportMetric(float64(ns.Nanoseconds())/float64(runs), name+"-ns/run")
	}
}

// runTraced runs f with the tracer attached.
func runTraced(b *testing.B, f func() time.Duration) time.Duration {
	tr := loadForTest(b)
	defer tr.Close()
	return f()
}

func programStats(b *testing.B, tr *Tracer) map[string]*ebpf.ProgramStats {
	out := map[string]*ebpf.ProgramStats{}
	for name, p := range tr.Programs() {
		s, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		out[name] = s
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
