package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// BenchmarkExporterFootprint measures the exporter's CPU share and memory
// with 1,000 cgroups known to the tracer, scraped every 15 s as Prometheus
// would. Goals (issue 2): <= 1% of a core, <= 40 MB RSS.
//
//	sudo go test -run '^$' -bench ExporterFootprint -benchtime 1x ./cmd/scx-slo
func BenchmarkExporterFootprint(b *testing.B) {
	exportertest.RequireRoot(b)
	const cgroups = 1000
	scrapes := 5
	if s := os.Getenv("SCX_SLO_BENCH_SCRAPES"); s != "" {
		scrapes, _ = strconv.Atoi(s)
	}
	cg := exportertest.NewCgroups(b, "auto")
	home := cg.Make(b, "home")
	cfg := filepath.Join(b.TempDir(), "slo.yaml")
	// Every tenth cgroup is under an SLO, like pods among system slices.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("slos:\n  - cgroup: %s/c*0\n    latencyBudget: 2ms\n", cg.Parent)), 0o644); err != nil {
		b.Fatal(err)
	}
	e := exportertest.Start(b, "--slo.config-file="+cfg, "--collector.runqueue.max-series=2000")
	w := cg.StartWorkload(b, home, "probe", 1)
	defer w.Stop()
	// Leave the probe in each cgroup long enough to be recorded there.
	for i := 0; i < cgroups; i++ {
		p := cg.Make(b, fmt.Sprintf("c%d", i))
		if err := cg.Move(p, w.Pid()); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cg.Move(home, w.Pid()); err != nil {
		b.Fatal(err)
	}
	f := e.Scrape(b)
	tracked, _ := f.Value("scx_slo_runqueue_tracked_cgroups", nil)
	if tracked < 0.95*cgroups { // a few moves may see no wakeup
		b.Fatalf("tracer knows %v cgroups, want about %d", tracked, cgroups)
	}
	pid := e.Pid()
	cpu0, wall0 := cpuSeconds(b, pid), time.Now()
	for i := 0; i < scrapes; i++ {
		time.Sleep(15 * time.Second)
		e.Scrape(b)
	}
	cpu := cpuSeconds(b, pid) - cpu0
	wall := time.Since(wall0).Seconds()
	rss, hwm := memKB(b, pid)
	b.ReportMetric(100*cpu/wall, "cpu-%-of-core")
	b.ReportMetric(float64(rss)/1024, "rss-MB")
	b.ReportMetric(float64(hwm)/1024, "peak-rss-MB")
	b.ReportMetric(tracked, "cgroups")
}

// cpuSeconds is utime+stime of pid from /proc/<pid>/stat.
func cpuSeconds(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the ")" that closes comm: utime and stime are 12 and 13.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func memKB(b *testing.B, pid int) (rss, hwm int) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			rss, _ = strconv.Atoi(f[1])
		}
		if len(f) >= 2 && f[0] == "VmHWM:" {
			hwm, _ = strconv.Atoi(f[1])
		}
	}
	return rss, hwm
}
