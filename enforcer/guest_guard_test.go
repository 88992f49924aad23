package enforcer

import (
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestGuestGuard: with a baseline the scheduler cannot reach (every
// wakeup judged against a 1 us budget misses), the guard detaches after
// Sustain windows and never re-attaches.
func TestGuestGuard(t *testing.T) {
	inGuest(t)
	e := startEnforcer(t, Options{Logger: testLogger(t), Poll: 50 * time.Millisecond, Guard: &Guard{
		Baseline: func() (float64, bool) { return 0.99, true },
		Window:   400 * time.Millisecond, Sustain: 2, MinJudged: 10,
	}})
	defer e.Stop()
	cg := newCgroup(t, "guarded")
	m, _ := e.Maps()
	if err := m.SyncSLOs(map[uint64]slomaps.Entry{cg.id: slomaps.NewEntry(1000, 0.99, 100, 0)}); err != nil {
		t.Fatal(err)
	}
	probe := start(t, "probe", cg, map[string]string{"RUN_FOR": "3s", "PROBE_PERIOD": "1ms", "PROBE_WORK": "50us"})
	began := time.Now()
	waitFor(t, "the guard to detach", 3*time.Second, func() bool { return counterValue(e.metrics.guard) == 1 })
	t.Logf("guard detached %s after the probe started", time.Since(began))
	waitState(t, "disabled", 5*time.Second)
	time.Sleep(time.Second)
	if e.Attached() || schedExt(t, "state") != "disabled" {
		t.Error("scheduler came back after the guard detached it")
	}
	var rep workload.ProbeReport
	if err := probe.wait(&rep); err != nil {
		t.Fatal(err)
	}
}
