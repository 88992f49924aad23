package enforcer

import (
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// crowdRun runs 24 nice 0 hogs and one nice 19 hog in one cgroup for 5 s
// and returns the nice 19 hog's report.
func crowdRun(t *testing.T, cg *cgroup) workload.HogReport {
	t.Helper()
	run := map[string]string{"RUN_FOR": "5s"}
	var crowd []*proc
	for i := 0; i < 24; i++ {
		crowd = append(crowd, start(t, "hog", cg, run))
	}
	low := start(t, "hog", cg, map[string]string{"RUN_FOR": "5s", "NICE": "19"})
	var r workload.HogReport
	if err := low.wait(&r); err != nil {
		t.Fatal(err)
	}
	for _, p := range crowd {
		var c workload.HogReport
		if err := p.wait(&c); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestGuestLowWeightProgress: a nice 19 hog among 24 nice 0 hogs in the
// same cgroup keeps getting the CPU now and then, and the sched_ext
// watchdog (10 s) never finds a starved task, which would eject us.
// rescue() gives it a slice about every 0.5-0.6 s on a quiet host (max
// gap 1.1 s against EEVDF's 1.4 s); TCG on a loaded host stretches both
// (3.7 s against 2.7 s seen), so the bound is the watchdog's margin.
// EEVDF runs first in the same boot for comparison.
func TestGuestLowWeightProgress(t *testing.T) {
	inGuest(t)
	cg := newCgroup(t, "crowd")
	ee := crowdRun(t, cg)
	t.Logf("EEVDF:   nice 19 hog chunks=%d cpu=%s max_gap=%s", ee.Chunks, time.Duration(ee.CPUNs), time.Duration(ee.MaxGapNs))
	attached(t) // its cleanup fails the test if the watchdog ejected us
	r := crowdRun(t, cg)
	t.Logf("scx_slo: nice 19 hog chunks=%d cpu=%s max_gap=%s", r.Chunks, time.Duration(r.CPUNs), time.Duration(r.MaxGapNs))
	if r.Chunks == 0 || r.MaxGapNs > int64(8*time.Second) {
		t.Errorf("nice 19 hog starved: %+v", r)
	}
}
