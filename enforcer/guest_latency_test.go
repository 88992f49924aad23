package enforcer

import (
	"runtime"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// kernelView is the in-kernel measurement of the probe's cgroup: every
// runnable-to-running wait, judged against the budget with slo_account.h.
// Under EEVDF the observe-mode tracer (bpf/runqueue) measures it, under
// scx-slo the scheduler itself: the same definitions either way.
type kernelView struct {
	Waits     uint64  `json:"waits"`
	MeanNs    uint64  `json:"mean_ns"`
	Misses    uint64  `json:"misses"`
	MissRatio float64 `json:"miss_ratio"`
}

func readKernelView(t *testing.T, m slomaps.Maps, id uint64) kernelView {
	t.Helper()
	all, err := m.ReadStats()
	if err != nil {
		t.Fatal(err)
	}
	s := all[id]
	if s == nil || s.Deadlines == 0 {
		t.Fatalf("no judged wakeups recorded for cgroup %d", id)
	}
	return kernelView{Waits: s.Deadlines, MeanNs: s.MeanWaitNs(), Misses: s.Misses, MissRatio: s.MissRatio()}
}

type latencyPhase struct {
	Scheduler string               `json:"scheduler"`
	Probe     workload.Summary     `json:"probe"`
	Kernel    kernelView           `json:"kernel"`
	Hogs      []workload.HogReport `json:"hogs"`
}

// TestGuestLatency: a 1 ms periodic probe (100 us of work) in an SLO
// cgroup with a 1 ms budget against 2x vCPUs of hogs in a batch cgroup,
// EEVDF and scx-slo interleaved in one boot.
func TestGuestLatency(t *testing.T) {
	inGuest(t)
	const budget = time.Millisecond
	lat, batch := newCgroup(t, "lat"), newCgroup(t, "batch")
	slo := map[uint64]slomaps.Entry{lat.id: slomaps.NewEntry(uint64(budget), 0.99, 100, 0)}
	hogs := 2 * runtime.NumCPU()
	d := 3 * time.Second
	var phases []latencyPhase
	probe := map[string][]int64{}
	kern := map[string]*kernelView{"eevdf": {}, "scx_slo": {}}
	hogsOK := true
	var sloEnqueues uint64
	for round := 0; round < 2; round++ {
		for _, name := range []string{"eevdf", "scx_slo"} {
			var maps slomaps.Maps
			var stop func()
			if name == "scx_slo" {
				e := startEnforcer(t, Options{Logger: testLogger(t), MaxReattach: -1})
				maps, _ = e.Maps()
				stop = func() {
					st, _ := e.Stats()
					t.Logf("scheduler stats: %v", st)
					sloEnqueues += st["enq_slo"]
					if !e.Attached() {
						t.Errorf("round %d: scheduler ejected during the run: %+v", round, e.LastExit())
					}
					e.Stop()
					waitState(t, "disabled", 5*time.Second)
				}
			} else {
				tr, err := runqueue.Load(runqueue.Options{Hierarchy: cgroupfs.Hierarchy{Root: "/sys/fs/cgroup", V2: true}})
				if err != nil {
					t.Fatal(err)
				}
				maps = tr.Maps()
				stop = func() { tr.Close() }
			}
			if err := maps.SyncSLOs(slo); err != nil {
				t.Fatal(err)
			}
			rep, hr := phase(t, lat, batch, hogs, d)
			kv := readKernelView(t, maps, lat.id)
			stop()
			probe[name] = append(probe[name], rep.LatenessNs...)
			kern[name].Waits += kv.Waits
			kern[name].Misses += kv.Misses
			s := workload.Summarize(rep.LatenessNs, budget)
			t.Logf("round %d %-8s probe n=%d over=%.3f p50=%s p99=%s | kernel waits=%d mean=%s over=%.3f", round, name,
				s.N, s.OverBudget, time.Duration(s.P50Ns), time.Duration(s.P99Ns), kv.Waits, time.Duration(kv.MeanNs), kv.MissRatio)
			for i, h := range hr {
				t.Logf("  hog %d: chunks=%d cpu=%s max_gap=%s", i, h.Chunks, time.Duration(h.CPUNs), time.Duration(h.MaxGapNs))
				if h.Chunks == 0 || h.MaxGapNs > int64(3*time.Second) {
					hogsOK = false
				}
			}
			phases = append(phases, latencyPhase{Scheduler: name, Probe: s, Kernel: kv, Hogs: hr})
		}
	}
	for _, k := range kern {
		k.MissRatio = float64(k.Misses) / float64(max(k.Waits, 1))
	}
	se, ss := workload.Summarize(probe["eevdf"], budget), workload.Summarize(probe["scx_slo"], budget)
	writeResult(t, "latency", map[string]any{"phases": phases, "probe": map[string]any{"eevdf": se, "scx_slo": ss}, "kernel": kern})
	t.Logf("EEVDF   probe over=%.3f p50=%s p99=%s | kernel over=%.3f", se.OverBudget, time.Duration(se.P50Ns), time.Duration(se.P99Ns), kern["eevdf"].MissRatio)
	t.Logf("scx_slo probe over=%.3f p50=%s p99=%s | kernel over=%.3f", ss.OverBudget, time.Duration(ss.P50Ns), time.Duration(ss.P99Ns), kern["scx_slo"].MissRatio)
	if !hogsOK {
		t.Error("a hog made no progress or waited over 3 s for a CPU")
	}
	// Generous relative bounds: this is a behaviour test, the ratio itself
	// is make bench's job. TCG delivers the preemption IPI to another vCPU
	// only when it switches vCPUs, so EEVDF's own miss ratio moved 0.048 to
	// 0.109 between two rounds of one quiet boot (scx_slo 0.091-0.092, on
	// 6.12): a strict "lower" failed on that noise. A scheduler that ignored
	// the SLO (the probe queued behind 5 ms best-effort slices) misses most
	// 1 ms deadlines; the bound catches that, and the SLO path must have run.
	if s, e := kern["scx_slo"].MissRatio, kern["eevdf"].MissRatio; s > 1.5*e+0.02 {
		t.Errorf("waits over budget: scx_slo %.3f, EEVDF %.3f; want scx_slo at most 1.5 times EEVDF's + 0.02", s, e)
	}
	if sloEnqueues == 0 {
		t.Error("the scheduler never queued a task as SLO work: the probe's SLO was not applied")
	}
	// The probe's own lateness also counts its timer firing late, before
	// any scheduler sees a wakeup: under TCG that moves with the host's
	// load (EEVDF's over-budget share went 0.11 to 0.43 between two rounds
	// of one boot in CI while the kernel's view stayed at 0.04-0.05), and
	// scx_slo's ~800 preemption IPIs a second add to it (with stress-ng
	// --cpu 1 on the host, 6.12: median 1.68 ms against EEVDF's 0.41 ms
	// while the kernel's view was 0.033 against 0.099). SLO-blindness is
	// the kernel check's to catch; this one catches lateness the kernel's
	// accounting cannot see, such as a wakeup left for a tick (4 ms) or
	// behind a best-effort slice (5 ms): the median may be up to twice
	// EEVDF's + 200µs, or 2 budgets.
	if bound := max(2*se.P50Ns+int64(200*time.Microsecond), int64(2*budget)); ss.P50Ns > bound {
		t.Errorf("probe median lateness: scx_slo %s, EEVDF %s; want scx_slo at most %s (twice EEVDF's + 200µs, or 2 budgets)",
			time.Duration(ss.P50Ns), time.Duration(se.P50Ns), time.Duration(bound))
	}
}
