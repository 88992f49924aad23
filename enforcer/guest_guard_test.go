package enforcer

import (
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestGuestGuard: the baseline is measured in observe mode from the real
// tracer, where the probe's cgroup has a budget every wakeup meets
// (attainment 1); once attached, the scheduler is given a 1 us budget no
// wakeup meets, so attainment stays below the baseline: the guard detaches
// after Sustain windows and the scheduler never comes back.
func TestGuestGuard(t *testing.T) {
	inGuest(t)
	tr, err := runqueue.Load(runqueue.Options{Hierarchy: cgroupfs.Hierarchy{Root: "/sys/fs/cgroup", V2: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cg := newCgroup(t, "guarded")
	if err := tr.Maps().SyncSLOs(map[uint64]slomaps.Entry{cg.id: slomaps.NewEntry(uint64(time.Hour), 0.99, 100, 0)}); err != nil {
		t.Fatal(err)
	}
	probe := start(t, "probe", cg, map[string]string{"RUN_FOR": "6s", "PROBE_PERIOD": "1ms", "PROBE_WORK": "50us"})
	unreachable := map[uint64]slomaps.Entry{cg.id: slomaps.NewEntry(1000, 0.99, 100, 0)}
	e := startEnforcer(t, Options{Logger: testLogger(t), Poll: 50 * time.Millisecond,
		OnChange: func(m slomaps.Maps, attached bool) {
			if attached {
				if err := m.SyncSLOs(unreachable); err != nil {
					t.Error(err)
				}
			}
		},
		Guard: &Guard{Observe: tr.Maps(), BaselineFor: 500 * time.Millisecond, Window: 400 * time.Millisecond, Sustain: 2, MinJudged: 10},
	})
	defer e.Stop()
	if !e.guardArmed || e.baseline != 1 {
		t.Fatalf("observe-mode baseline %v (armed %v), want 1: every wakeup met an hour's budget", e.baseline, e.guardArmed)
	}
	began := time.Now()
	waitFor(t, "the guard to detach", 3*time.Second, func() bool { return counterValue(e.metrics.guard) == 1 })
	t.Logf("guard detached %s after attaching", time.Since(began))
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
