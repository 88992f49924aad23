package runqueue

import (
	"os"
	"testing"

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
	tb.Cleanup(func() { tr.Close() })
	return tr
}

// BenchmarkTracerCost reports what each tracer program costs per run
// (kernel.bpf_stats_enabled run_time_ns / run_cnt) while a pipe ping-pong
// drives wakeups and switches, and the ping-pong's slowdown against a run
// without the tracer measured in the same benchmark.
//
//	sudo go test -run '^$' -bench TracerCost -benchtime 200000x ./bpf/runqueue
func BenchmarkTracerCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to load BPF")
	}
	n := b.N
	// Alternate without/with the tracer a few times; medians of each.
	var without, with []float64
	var cost = map[string][2]float64{} // runtime ns, runs
	for round := 0; round < 3; round++ {
		d, err := pingpong.Run(n)
		if err != nil {
			b.Fatal(err)
		}
		without = append(without, float64(d.Nanoseconds()))

		tr := loadForTest(b)
		d, err = pingpong.Run(n)
		if err != nil {
			b.Fatal(err)
		}
		with = append(with, float64(d.Nanoseconds()))
		// Run-time statistics cost time themselves: collect them in a
		// separate pass so the ratio above is the tracer's alone.
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pingpong.Run(n); err != nil {
			b.Fatal(err)
		}
		for name, p := range tr.Programs() {
			s, err := p.Stats()
			if err != nil {
				b.Fatal(err)
			}
			c := cost[name]
			c[0] += float64(s.Runtime.Nanoseconds())
			c[1] += float64(s.RunCount)
			cost[name] = c
		}
		stats.Close()
		tr.Close()
	}
	for _, name := range []string{"sched_switch", "sched_wakeup"} {
		if c := cost[name]; c[1] > 0 {
			b.ReportMetric(c[0]/c[1], name+"-ns/run")
		}
	}
	b.ReportMetric(median(without), "roundtrip-ns-without")
	b.ReportMetric(median(with), "roundtrip-ns-with")
	b.ReportMetric(median(without)/median(with), "pipe-ratio")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
