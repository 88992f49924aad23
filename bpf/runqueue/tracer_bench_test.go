package runqueue

import (
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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
const costPairs = 15

// BenchmarkTracerCost measures what the observe-mode tracer costs the
// scheduler path, all in one run so the figures share one machine state:
//
//   - pipe-ratio: pipe ping-pong throughput with the tracer attached over
//     without it, the median of costPairs interleaved pairs (the order
//     alternates so a drift in machine load favours neither side);
//   - cpu-ratio: the same for the ping-pong threads' CPU time per round
//     trip, which leaves out waits behind other processes and so is the
//     steadier figure on a shared host;
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
	run := func() pingpong.Result {
		r, err := pingpong.Measure(pairs, b.N)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	// Loaded once; each measurement with it attaches its programs and
	// detaches them after, so pairs are short and close together.
	tr := loadForTest(b)
	defer tr.Close()
	traced := func() pingpong.Result {
		setAttached(b, tr, true)
		defer setAttached(b, tr, false)
		return run()
	}
	setAttached(b, tr, false)
	var wallRatios, cpuRatios, without, with []float64
	for i := 0; i < costPairs; i++ {
		var off, on pingpong.Result
		if i%2 == 0 {
			off, on = run(), traced()
		} else {
			on, off = traced(), run()
		}
		without = append(without, float64(off.RoundTrip))
		with = append(with, float64(on.RoundTrip))
		wallRatios = append(wallRatios, float64(off.RoundTrip)/float64(on.RoundTrip))
		cpuRatios = append(cpuRatios, float64(off.CPU)/float64(on.CPU))
	}
	b.Logf("%d pairs: wall ratios %.3f, CPU ratios %.3f", pairs, wallRatios, cpuRatios)
	b.ReportMetric(median(wallRatios), "pipe-ratio")
	b.ReportMetric(median(cpuRatios), "cpu-ratio")
	b.ReportMetric(median(without), "roundtrip-ns-without")
	b.ReportMetric(median(with), "roundtrip-ns-with")

	setAttached(b, tr, true)
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

// setAttached attaches or detaches the tracer's programs.
func setAttached(b *testing.B, tr *Tracer, on bool) {
	for _, l := range tr.links {
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
	tr.links = nil
	if !on {
		return
	}
	for _, p := range tr.Programs() {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			b.Fatal(err)
		}
		tr.links = append(tr.links, l)
	}
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
