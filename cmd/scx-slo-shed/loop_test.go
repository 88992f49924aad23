package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/loadgen"
)

// TestShedFeedbackLoop closes the loop on real contention instead of an
// impossible budget: the backend's cgroup has a realistic budget (5 ms,
// 99%) and half a CPU of quota; open-loop load beyond its capacity makes
// its threads wait (throttled), the exporter sets the bit, the proxy
// sheds, and the admitted requests see a much shorter queue than the
// same load without shedding.
func TestShedFeedbackLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the exporter and load")
	}
	lab := newShedLab(t, "5ms", "0.99")
	app, pins, e, upstream := lab.app, lab.pins, lab.e, lab.upstream
	common := []string{"--upstream=" + upstream, "--cgroup=" + app, "--state.pin-dir=" + pins, "--state.url=" + e.URL}
	load := func(p *shedProc, rate float64, count int) runStats {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		rs, err := loadgen.Run(ctx, loadgen.Config{URL: p.URL("/work"), Rate: rate, Count: count, Timeout: 60 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return summarize(t, rs, http.StatusTooManyRequests)
	}
	shedding := startShed(t, common...)
	// Light load: the backend keeps up; logged only, since on a shared
	// machine other work may push a few wakeups past 5 ms.
	light := load(shedding, 50, 100)
	t.Logf("light load (50/s): %d admitted, %d shed, p99 %v", light.ok, light.shed, light.p99)
	heavy := load(shedding, 400, 1600)
	// Let the backlog drain and the bit clear before the comparison run.
	waitMetric(t, shedding, "scx_slo_shed_overloaded", nil, "the bit to clear after the heavy run", func(v float64) bool { return v == 0 })
	dry := startShed(t, append(common, "--dry-run")...)
	without := load(dry, 400, 1600)
	t.Logf("heavy load (400/s) with shedding: %d admitted, %d shed, %d failed; admitted p50 %v p99 %v", heavy.ok, heavy.shed, heavy.failed, heavy.p50, heavy.p99)
	t.Logf("heavy load (400/s) without:       %d admitted, %d failed; p50 %v p99 %v", without.ok, without.failed, without.p50, without.p99)
	for _, s := range []runStats{light, heavy, without} {
		if s.failed != 0 || s.ok+s.shed != s.n {
			t.Errorf("not every request got an answer: %+v", s)
		}
	}
	if heavy.shed < 100 {
		t.Errorf("real contention shed only %d of 1600 requests: the loop did not close\n%s", heavy.shed, shedding.log.String())
	}
	if !(heavy.p99*2 < without.p99) {
		t.Errorf("admitted p99 with shedding %v is not well below the p99 without %v", heavy.p99, without.p99)
	}
}

func mustValue(t *testing.T, p *shedProc, name string) float64 {
	v, _ := p.scrape(t).Value(name, nil)
	return v
}
