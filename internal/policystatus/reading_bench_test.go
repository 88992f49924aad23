package policystatus

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// What one attainment reading costs against what Prometheus already does
// to the same agent: reading a real agent's /status as the controller does
// (GET, decode, sum per container) against a GET of its /metrics read to
// the end (the baseline), alternately in one run, with 200 SLO cgroups on
// the node. Reported: ns per request of each, their ratio and the bytes
// of each answer.
func BenchmarkAgentReading(b *testing.B) {
	exportertest.RequireRoot(b)
	cg := exportertest.NewCgroups(b, "auto")
	const cgroups = 200
	for i := range cgroups {
		cg.Make(b, fmt.Sprintf("c%03d", i))
	}
	cfg := filepath.Join(b.TempDir(), "slo.yaml")
	if err := os.WriteFile(cfg, []byte("slos:\n  - cgroup: "+cg.Parent+"/*\n    latencyBudget: 2ms\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	agent := exportertest.Start(b, "--slo.config-file="+cfg, "--overload.pin-dir=")
	r := newAgentReader(Agents{Timeout: 10 * time.Second, Interval: time.Minute}, nil)
	ctx := context.Background()
	var statusBytes, metricsBytes int
	// Wait until every SLO cgroup has its row.
	if !exportertest.Eventually(ctx, 30*time.Second, func() bool {
		_, body, err := agent.Get("/status")
		statusBytes = len(body)
		return err == nil && statusBytes > cgroups*100
	}) {
		b.Fatalf("the agent's /status never listed %d cgroups\n%s", cgroups, agent.Log())
	}
	scrape := func() {
		resp, err := agent.Client.Get(agent.URL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		metricsBytes = int(n)
	}
	read := func() {
		if res := r.read(ctx, agent.URL+"/status"); res.err != nil {
			b.Fatal(res.err)
		}
	}
	scrape()
	read()
	var tScrape, tRead time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		scrape()
		t1 := time.Now()
		read()
		tRead += time.Since(t1)
		tScrape += t1.Sub(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(tScrape.Nanoseconds())/float64(b.N), "scrape-ns/op")
	b.ReportMetric(float64(tRead.Nanoseconds())/float64(b.N), "reading-ns/op")
	b.ReportMetric(float64(tRead)/float64(tScrape), "reading/scrape")
	b.ReportMetric(float64(statusBytes), "status-bytes")
	b.ReportMetric(float64(metricsBytes), "metrics-bytes")
}
