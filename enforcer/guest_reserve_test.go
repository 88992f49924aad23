package enforcer

import (
	"runtime"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestGuestReserve: each SLO cgroup's reserve (nr_cpus * importance /
// 1000 CPUs per 100 ms window, at least one CPU; see the scheduler's
// essay). A light service, a 1 ms probe doing 100 us of work beside
// best-effort hogs on every CPU, stays inside it: its wakeups keep their
// deadlines. A rogue SLO cgroup spinning on every CPU passes it within a
// window and is queued as best-effort from then on, so best-effort hogs
// beside it share the CPUs by weight instead of getting only the
// starvation bound's 11%.
func TestGuestReserve(t *testing.T) {
	inGuest(t)
	n := runtime.NumCPU()
	e := attached(t)
	light, rogue, be := newCgroup(t, "light"), newCgroup(t, "rogue"), newCgroup(t, "reservebe")
	sloFor(t, e, map[uint64]slomaps.Entry{
		light.id: slomaps.NewEntry(uint64(time.Millisecond), 0.99, 100, 0),
		rogue.id: slomaps.NewEntry(uint64(time.Millisecond), 0.99, 100, 0),
	})
	const d = 3 * time.Second

	before := stats(t, e)
	hogs := startHogs(t, n, d, be)
	probe := start(t, "probe", light, map[string]string{"RUN_FOR": d.String(), "PROBE_PERIOD": "1ms", "PROBE_WORK": "100us"})
	var rep workload.ProbeReport
	if err := probe.wait(&rep); err != nil {
		t.Fatal(err)
	}
	waitHogs(t, hogs)
	mid := stats(t, e)
	enq, demoted := mid["enq_slo"]-before["enq_slo"], mid["over_reserve"]-before["over_reserve"]
	t.Logf("light service beside %d best-effort hogs: %d SLO wakeups, %d queued as best-effort (over its reserve)", n, enq, demoted)
	// Emulation makes the probe heavier than on hardware (a vCPU the
	// emulator does not run still counts as running); a twentieth allows
	// for that and is far from the rogue's share below.
	if enq == 0 || demoted > enq/20 {
		t.Errorf("light service: %d of %d SLO wakeups queued as best-effort, want at most 5%%", demoted, enq)
	}

	groups := startHogs(t, n, d, rogue, be)
	cpu := waitHogs(t, groups)
	end := stats(t, e)
	enq, demoted = end["enq_slo"]-mid["enq_slo"], end["over_reserve"]-mid["over_reserve"]
	beShare := cpu[1].Seconds() / (cpu[0].Seconds() + cpu[1].Seconds())
	t.Logf("rogue SLO cgroup spinning on %d CPUs beside %d best-effort hogs: %d SLO enqueues, %d over its reserve; CPU time rogue %s, best-effort %s (share %.2f)",
		n, n, enq, demoted, cpu[0], cpu[1], beShare)
	if demoted == 0 {
		t.Error("the rogue SLO cgroup was never queued as best-effort: no reserve applied")
	}
	// Equal weights give best-effort half once the rogue is demoted; the
	// starvation bound alone would give it 5 ms in 45 (0.11).
	if beShare < 0.25 {
		t.Errorf("best-effort hogs got %.2f of the CPU time beside a rogue SLO cgroup, want at least 0.25", beShare)
	}
	writeResult(t, "reserve", map[string]any{"cpus": n, "light_probe": workload.Summarize(rep.LatenessNs, time.Millisecond), "be_share": beShare,
		"rogue_cpu_ns": cpu[0].Nanoseconds(), "be_cpu_ns": cpu[1].Nanoseconds(), "stats": end})
}

func stats(t *testing.T, e *Enforcer) map[string]uint64 {
	t.Helper()
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}
