package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/overload"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
	"github.com/scx-slo/scx-slo/internal/testbed/loadgen"
)

// Where the host puts the binaries in the guest.
const (
	guestExporter = "/usr/local/bin/scx-slo"
	guestShed     = "/usr/local/bin/scx-slo-shed"
)

// vmRun is what the guest reports back.
type vmRun struct {
	N, OK, Shed, Failed int
	P50, P99            time.Duration
}

type vmResult struct {
	SchedExt         string // /sys/kernel/sched_ext/root/ops while loaded
	WithShed, DryRun vmRun
	ShedCounter      float64
	Source           string
	PinnedBit        bool // the app's bit through the pinned map, while /overload says set
}

// TestShedWithSchedulerInVM runs the loop of TestShedEndToEnd in the lab
// guest with the scx-slo sched_ext scheduler attached (--enforce), so the
// overload bit comes from the scheduler's deadline accounting instead of
// the observe-mode tracer: the sidecar sheds with 429 and Retry-After and
// every request is answered. Latencies are logged, not compared (see
// shedInGuest).
func TestShedWithSchedulerInVM(t *testing.T) {
	if labtest.InGuest() {
		writeVMResult(t, shedInGuest(t))
		return
	}
	k := labtest.Kernel(t)
	res := labtest.RunTest(t, lab.Options{Kernel: k, Timeout: 8 * time.Minute, Files: []lab.Copy{
		{Host: exportertest.Binary(t), Guest: guestExporter},
		{Host: shedBinary(t), Guest: guestShed},
	}})
	var got vmResult
	labtest.ReadJSON(t, res, "shed", &got)
	t.Logf("guest, scheduler %q, state read from %s", got.SchedExt, got.Source)
	if !got.PinnedBit {
		t.Errorf("enforce mode: the pinned map showed the app's bit clear while /overload showed it set")
	}
	t.Logf("with shedding: %+v", got.WithShed)
	t.Logf("dry run:       %+v", got.DryRun)
	if !strings.HasPrefix(got.SchedExt, "scx_slo") {
		t.Errorf("the scx-slo scheduler was not attached in the guest: %q", got.SchedExt)
	}
	if got.Source != "http" {
		t.Errorf("the sidecar read the state from %q, want http", got.Source)
	}
	for _, r := range []vmRun{got.WithShed, got.DryRun} {
		if r.Failed != 0 || r.OK+r.Shed != r.N {
			t.Errorf("not every request got an answer: %+v", r)
		}
	}
	if got.WithShed.Shed < got.WithShed.N/2 || float64(got.WithShed.Shed) != got.ShedCounter {
		t.Errorf("shed %d of %d (counter %v): want most shed at share 0.2, counted", got.WithShed.Shed, got.WithShed.N, got.ShedCounter)
	}
	if got.DryRun.Shed != 0 {
		t.Errorf("the dry run shed %d", got.DryRun.Shed)
	}
}

func writeVMResult(t *testing.T, r vmResult) {
	labtest.WriteJSON(t, "shed", r)
}

// shedInGuest is the guest side: exporter with --enforce, a CPU-bound
// backend sharing its cgroup with a CPU hog, and load through a shedding
// and a dry-run sidecar.
func shedInGuest(t *testing.T) vmResult {
	var out vmResult
	cg := exportertest.NewCgroups(t, "auto")
	app := cg.Make(t, "app")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "slo.yaml")
	// The load generator (this process) gets an SLO too: under the
	// scheduler, work without one runs only when latency work leaves room
	// (at least once per 40 ms), which would stall the generator instead
	// of the service.
	client := cg.Make(t, "client")
	writeAtomic(t, cfg, "slos:\n  - cgroup: "+app+"\n    latencyBudget: 1ns\n    target: 0.9\n  - cgroup: "+client+"\n    latencyBudget: 1ms\n")
	pins := "/sys/fs/bpf/scx-slo-shed-vm"
	exp := exec.Command(guestExporter, "--enforce", "--slo.config-file="+cfg, "--overload.pin-dir="+pins,
		"--slo.resync-interval=100ms", "--web.listen-address=127.0.0.1:9817")
	log := &lockedBuffer{}
	exp.Stdout, exp.Stderr = log, log
	if err := exp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exp.Process.Signal(os.Interrupt); exp.Wait() })
	enabled := func() bool {
		b, _ := os.ReadFile("/sys/kernel/sched_ext/state")
		return strings.TrimSpace(string(b)) == "enabled"
	}
	if !exportertest.Eventually(context.Background(), 30*time.Second, enabled) {
		t.Fatalf("sched_ext never enabled\n%s", log.String())
	}
	// The exporter serves the sidecar's reads: latency work too.
	for _, pid := range []int{os.Getpid(), exp.Process.Pid} {
		if err := cg.Move(client, pid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { cg.Move("/", os.Getpid()) })
	ops, _ := os.ReadFile("/sys/kernel/sched_ext/root/ops")
	out.SchedExt = strings.TrimSpace(string(ops))

	// One backend thread, 2 ms of CPU a request. The guest's two vCPUs
	// are threads of a shared 2-core host, so the load stays low and the
	// run checks the loop (scheduler's bit -> sidecar -> 429), not
	// latency; TestShedEndToEnd and TestShedFeedbackLoop compare
	// latencies on the host. The sidecars run in the backend's cgroup, as in a
	// pod; the generator outside it. Nothing hogs the SLO cgroup: with an
	// impossible budget the scheduler runs its tasks first, and a hog there
	// would starve everything else.
	upstream := startBackendProcs(t, cg, app, 1)
	procs := filepath.Join(cg.H.Dir(app), "cgroup.procs")
	overloaded := func() bool {
		resp, err := http.Get("http://127.0.0.1:9817/overload?cgroup=" + app)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st []struct{ Overloaded bool }
		return json.NewDecoder(resp.Body).Decode(&st) == nil && len(st) == 1 && st[0].Overloaded
	}
	cg.StartWorkload(t, app, "probe", 1) // wakeups keep the bit set between runs
	if !exportertest.Eventually(context.Background(), 30*time.Second, overloaded) {
		t.Fatalf("the scheduler never set the overload bit of %s\n%s", app, log.String())
	}
	// In enforce mode the pins must point at the scheduler's maps: the
	// pinned bit agrees with /overload.
	if id, err := cgroupfs.ID(cg.H.Dir(app)); err == nil {
		if r, err := overload.Open(pins); err == nil {
			out.PinnedBit, _ = r.Overloaded(id)
			r.Close()
		}
	}
	common := []string{"--upstream=" + upstream, "--cgroup=" + app, "--state.pin-dir=", "--state.url=http://127.0.0.1:9817", "--state.timeout=1s",
		"--shed.floor=0.2", "--shed.decrease=0.5", "--shed.step=50ms"}
	load := func(p *shedProc) vmRun {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rs, err := loadgen.Run(ctx, loadgen.Config{URL: p.URL("/work"), Rate: 100, Count: 300, Timeout: 60 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s := summarize(t, rs, http.StatusTooManyRequests)
		return vmRun{N: s.n, OK: s.ok, Shed: s.shed, Failed: s.failed, P50: s.p50, P99: s.p99}
	}
	shedding := startShedIn(t, procs, common...)
	waitMetric(t, shedding, "scx_slo_shed_admitted_ratio", nil, "shedding to reach its floor", func(v float64) bool { return v == 0.2 })
	out.WithShed = load(shedding)
	f := shedding.scrape(t)
	out.ShedCounter, _ = f.Value("scx_slo_shed_requests_total", map[string]string{"outcome": "shed"})
	for _, src := range []string{"pinned", "http"} {
		if v, _ := f.Value("scx_slo_shed_state_source", map[string]string{"source": src}); v == 1 {
			out.Source = src
		}
	}
	shedding.stop()
	dry := startShedIn(t, procs, append(common, "--dry-run")...)
	waitMetric(t, dry, "scx_slo_shed_overloaded", nil, "the dry-run proxy to see the bit", func(v float64) bool { return v == 1 })
	out.DryRun = load(dry)
	fmt.Fprintf(os.Stderr, "guest: %+v\n", out)
	return out
}
