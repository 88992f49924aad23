package enforcer

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

func schedExt(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("/sys/kernel/sched_ext/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// waitState polls the sched_ext state until it reads want.
func waitState(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := schedExt(t, "state")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sched_ext state %q after %s, want %q", got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLogger(t *testing.T) log.Logger {
	return log.NewLogfmtLogger(log.NewSyncWriter(t.Output()))
}

// startEnforcer creates an enforcer and starts it; the caller stops it.
func startEnforcer(t *testing.T, opts Options) *Enforcer {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestGuestAttachDetach(t *testing.T) {
	inGuest(t)
	e := startEnforcer(t, Options{Logger: testLogger(t)})
	waitState(t, "enabled", 5*time.Second)
	if ops := schedExt(t, "root/ops"); ops != "scx_slo" {
		t.Errorf("root/ops = %q, want scx_slo", ops)
	}
	if !e.Attached() {
		t.Error("Attached() = false while enabled")
	}
	m, ok := e.Maps()
	if !ok || m.Stats == nil || m.SLOs == nil || m.Overload == nil {
		t.Errorf("Maps() = %+v, %v while attached", m, ok)
	}
	time.Sleep(500 * time.Millisecond) // let it schedule something
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats after 0.5 s: %v", st)
	if st["dispatch_be"]+st["direct"] == 0 {
		t.Errorf("scheduler dispatched nothing in 0.5 s: %v", st)
	}
	e.Stop()
	waitState(t, "disabled", 5*time.Second)
	if e.Attached() {
		t.Error("Attached() = true after Stop")
	}
}

// TestGuestPartial: with SCX_OPS_SWITCH_PARTIAL the scheduler loads but
// only SCHED_EXT tasks would use it; none exist here, so it sees no task
// while full mode sees many.
func TestGuestPartial(t *testing.T) {
	inGuest(t)
	e := startEnforcer(t, Options{Logger: testLogger(t), Partial: true})
	defer e.Stop()
	waitState(t, "enabled", 5*time.Second)
	cg := newCgroup(t, "partial")
	hog := start(t, "hog", cg, map[string]string{"RUN_FOR": "500ms"})
	var r struct{ Chunks uint64 }
	if err := hog.wait(&r); err != nil {
		t.Fatal(err)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if n := st["enq_be"] + st["enq_slo"] + st["direct"]; n != 0 {
		t.Errorf("partial mode scheduled %d tasks, want 0 (no SCHED_EXT tasks): %v", n, st)
	}
}

// TestGuestSharedMaps: with Options.Shared the scheduler reads the SLOs
// from, and sets overload bits in, the observe-mode tracer's maps.
func TestGuestSharedMaps(t *testing.T) {
	inGuest(t)
	tr, err := runqueue.Load(runqueue.Options{Hierarchy: cgroupfs.Hierarchy{Root: "/sys/fs/cgroup", V2: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.JudgeSLOs(false); err != nil { // only the scheduler may set the bit
		t.Fatal(err)
	}
	shared := tr.Maps()
	cg := newCgroup(t, "shared")
	const slot = 5
	// A 1 us budget cannot be met: every judged wakeup misses.
	if err := shared.SyncSLOs(map[uint64]slomaps.Entry{cg.id: slomaps.NewEntry(1000, 0.99, 100, slot)}); err != nil {
		t.Fatal(err)
	}
	e := startEnforcer(t, Options{Logger: testLogger(t), Shared: shared})
	defer e.Stop()
	probe := start(t, "probe", cg, map[string]string{"RUN_FOR": "1s", "PROBE_PERIOD": "1ms", "PROBE_WORK": "50us"})
	var rep workload.ProbeReport
	if err := probe.wait(&rep); err != nil {
		t.Fatal(err)
	}
	own, _ := e.Maps()
	stats, err := own.ReadStats()
	if err != nil {
		t.Fatal(err)
	}
	if s := stats[cg.id]; s == nil || s.Deadlines == 0 {
		t.Fatalf("the scheduler judged no wakeup against the shared slos map: %+v", s)
	}
	on, err := shared.Overloaded(slot)
	if err != nil {
		t.Fatal(err)
	}
	if !on {
		t.Error("the scheduler's overload bit did not show in the tracer's array")
	}
}
