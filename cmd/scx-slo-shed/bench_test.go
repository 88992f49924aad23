package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/loadgen"
)

// benchRig is a trivial backend and the real scx-slo-shed binary in front
// of it, reading no state (so every request takes the full decision path
// and is admitted). Generator, proxy and backend share this machine's
// CPUs, so the numbers are an upper bound on the overhead.
func benchRig(b *testing.B) (direct, proxied string) {
	b.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	b.Cleanup(backend.Close)
	p := startShed(b, "--upstream="+backend.URL, "--cgroup=/", "--state.url=", "--state.pin-dir=/nonexistent", "--log.level=error")
	return backend.URL + "/", p.URL("/")
}

// BenchmarkProxyLatency sends open-loop load at fixed rates, directly and
// through the proxy, and reports both latency distributions and the
// difference (added-p50-us, added-p99-us).
func BenchmarkProxyLatency(b *testing.B) {
	direct, proxied := benchRig(b)
	for _, rate := range []int{1000, 2000, 5000, 10000} {
		b.Run(fmt.Sprintf("rps=%d", rate), func(b *testing.B) {
			var d, p []loadgen.Result
			for i := 0; i < b.N; i++ {
				d = append(d, benchLoad(b, direct, rate)...)
				p = append(p, benchLoad(b, proxied, rate)...)
			}
			ok := func(r loadgen.Result) bool { return r.Err == nil && r.Status == 200 }
			if n := loadgen.Count(d, ok) + loadgen.Count(p, ok); n != len(d)+len(p) {
				b.Fatalf("%d of %d requests failed", len(d)+len(p)-n, len(d)+len(p))
			}
			dl, pl := loadgen.Latencies(d, ok), loadgen.Latencies(p, ok)
			us := func(x time.Duration) float64 { return float64(x) / float64(time.Microsecond) }
			for _, q := range []struct {
				name string
				q    float64
			}{{"p50", 0.5}, {"p99", 0.99}} {
				dq, pq := loadgen.Quantile(dl, q.q), loadgen.Quantile(pl, q.q)
				b.ReportMetric(us(dq), "direct-"+q.name+"-us")
				b.ReportMetric(us(pq), "proxy-"+q.name+"-us")
				b.ReportMetric(us(pq-dq), "added-"+q.name+"-us")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchLoad sends half a second of load at rate.
func benchLoad(b *testing.B, url string, rate int) []loadgen.Result {
	rs, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Rate: float64(rate), Count: rate / 2, Timeout: 10 * time.Second, Client: benchClient})
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

var benchClient = loadgen.NewClient(1024)

// BenchmarkProxyMaxRPS is closed-loop: 64 workers send b.N requests as
// fast as answers come back; rps is the throughput.
func BenchmarkProxyMaxRPS(b *testing.B) {
	direct, proxied := benchRig(b)
	for _, tc := range []struct{ name, url string }{{"direct", direct}, {"proxy", proxied}} {
		b.Run(tc.name, func(b *testing.B) {
			var next atomic.Int64
			var failed atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for w := 0; w < 64; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						resp, err := benchClient.Get(tc.url)
						if err != nil {
							failed.Add(1)
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d of %d requests failed", f, b.N)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rps")
		})
	}
}
