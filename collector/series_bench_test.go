package collector

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/internal/latencyhist"
)

// BenchmarkSeriesGuard measures what escaping and de-duplicating cost a
// scrape of 1,000 cgroups (a histogram and a gauge each), as a ratio
// against building the same metrics with the client library directly,
// interleaved in the same run:
//
//	go test -run '^$' -bench SeriesGuard ./collector
func BenchmarkSeriesGuard(b *testing.B) {
	const cgroups = 1000
	hist := new([latencyhist.Buckets]uint64)
	for i := range hist {
		hist[i] = uint64(i)
	}
	buckets := latencyhist.Cumulative(hist)
	paths := make([]string, cgroups)
	for i := range paths {
		paths[i] = fmt.Sprintf("/kubepods.slice/kubepods-burstable.slice/pod%04d/cri-containerd-%064d.scope", i, i)
	}
	lat := prometheus.NewDesc("scx_slo_bench_latency_seconds", "bench", []string{"cgroup"}, nil)
	wait := prometheus.NewDesc("scx_slo_bench_waiting", "bench", []string{"cgroup"}, nil)
	ch := make(chan prometheus.Metric, 2*cgroups)
	drain := func() {
		for len(ch) > 0 {
			<-ch
		}
	}
	var direct, guarded time.Duration
	for b.Loop() {
		t0 := time.Now()
		for _, p := range paths {
			ch <- prometheus.MustNewConstHistogram(lat, 100, 0.5, buckets, p)
			ch <- prometheus.MustNewConstMetric(wait, prometheus.GaugeValue, 1, p)
		}
		direct += time.Since(t0)
		drain()
		t0 = time.Now()
		out := newSeries(ch)
		for _, p := range paths {
			out.Histogram(lat, 100, 0.5, buckets, p)
			out.Gauge(wait, 1, p)
		}
		out.done()
		guarded += time.Since(t0)
		drain()
	}
	b.ReportMetric(float64(guarded)/float64(direct), "guarded/direct")
}
