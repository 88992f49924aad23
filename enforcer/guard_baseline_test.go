package enforcer

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// TestGuardBaselineFromTracer measures the guard's observe-mode baseline
// the way Start does, from the real tracer's maps on this host, while a
// probe wakes every millisecond in a real cgroup: a budget every wakeup
// meets gives attainment 1, one none can meet gives 0, and too few judged
// wakeups give no baseline at all.
func TestGuardBaselineFromTracer(t *testing.T) {
	exportertest.RequireRoot(t)
	hier, err := cgroupfs.Detect("/sys/fs/cgroup", "v2")
	needs.Part(t, "the cgroup2 hierarchy", err)
	tr, err := runqueue.Load(runqueue.Options{Hierarchy: hier})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cg := newCgroupUnder(t, hier.Root, fmt.Sprintf("enforcer-guard-baseline-%d", os.Getpid()))
	probe := start(t, "probe", cg, map[string]string{"RUN_FOR": "30s", "PROBE_PERIOD": "1ms", "PROBE_WORK": "20us"})
	defer func() { probe.cmd.Process.Kill(); probe.cmd.Wait() }()

	m := tr.Maps()
	for _, tc := range []struct {
		budget    time.Duration
		minJudged uint64
		want      float64
		ok        bool
	}{
		{time.Hour, 50, 1, true},
		{time.Nanosecond, 50, 0, true},
		{time.Hour, 1 << 40, 0, false},
	} {
		if err := m.SyncSLOs(map[uint64]slomaps.Entry{cg.id: slomaps.NewEntry(uint64(tc.budget), 0.99, 100, 0)}); err != nil {
			t.Fatal(err)
		}
		g := &Guard{Observe: m, BaselineFor: 500 * time.Millisecond, MinJudged: tc.minJudged}
		if err := g.validate(); err != nil {
			t.Fatal(err)
		}
		att, ok, err := g.measureBaseline(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("budget %s, min judged %d: attainment %v, ok %v", tc.budget, tc.minJudged, att, ok)
		if ok != tc.ok || att != tc.want {
			t.Errorf("budget %s, min judged %d: baseline %v ok=%v, want %v ok=%v", tc.budget, tc.minJudged, att, ok, tc.want, tc.ok)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := &Guard{Observe: m, BaselineFor: time.Hour, MinJudged: 1}
	if _, _, err := g.measureBaseline(ctx); err != context.Canceled {
		t.Errorf("baseline with a cancelled context: %v, want context.Canceled", err)
	}
}
