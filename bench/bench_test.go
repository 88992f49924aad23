package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
	"github.com/scx-slo/scx-slo/internal/testbed/labbench"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
	"github.com/scx-slo/scx-slo/internal/testbed/peers"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestMain lets the guest re-run this binary as a probe, an HTTP server,
// a message-passing workload, the fork/exec job or the pipe ping-pong.
func TestMain(m *testing.M) {
	workload.Main() // the probe, and labbench's workloads registered with it
	os.Exit(m.Run())
}

// TestGuest is the guest side of BenchmarkLab and TestSmoke: it runs only
// when the host passed a Config.
func TestGuest(t *testing.T) {
	cfg, ok, err := labbench.GuestConfig()
	if !ok {
		t.Skip("guest side of the benchmark; BenchmarkLab and TestSmoke start it in the lab VM")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := labbench.RunGuest(t.Context(), cfg, labbench.GuestOut); err != nil {
		t.Fatal(err)
	}
}

// prepare returns the lab kernel and the guest binary, or skips.
func prepare(tb testing.TB) (*lab.Kernel, string) {
	tb.Helper()
	if _, ok, _ := labbench.GuestConfig(); ok {
		tb.Skip("inside the guest")
	}
	k := labtest.Kernel(tb)
	needs.Command(tb, "stress-ng", "stress-ng") // the batch load
	start := time.Now()
	bin, err := lab.BuildTest(tb.Context(), "github.com/scx-slo/scx-slo/bench", tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("built the guest binary in %s", time.Since(start).Round(time.Millisecond))
	return k, bin
}

// TestSmoke runs every workload under every setup at one load, once,
// with short cells, and checks that every cell produced data.
func TestSmoke(t *testing.T) {
	k, bin := prepare(t)
	cfg := labbench.Smoke()
	start := time.Now()
	r, err := labbench.Run(t.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
		Kernel: k, Console: t.Output(), Timeout: 8 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("smoke run took %s", time.Since(start).Round(time.Millisecond))
	want := cfg.Reps * len(cfg.Workloads) * (1 + len(cfg.Loads)*len(cfg.Schedulers))
	if len(r.Cells) != want {
		t.Fatalf("got %d cells, want %d", len(r.Cells), want)
	}
	for _, c := range r.Cells {
		name := c.Workload + "/" + strconv.Itoa(c.Load) + "%/" + c.Scheduler
		if c.Err != "" {
			t.Errorf("%s: %s", name, c.Err)
		}
		if c.Latency.N == 0 {
			t.Errorf("%s: no latency samples", name)
		}
		if c.Load > 0 && (c.Batch.CPUSeconds <= 0 || !(c.Batch.BogoOps > 0) || c.Batch.Spawns == 0) {
			t.Errorf("%s: batch produced no data: %+v", name, c.Batch)
		}
		if c.Host == nil {
			t.Errorf("%s: no host sample (cell markers lost on the console?)", name)
		}
	}
	got := map[string]bool{}
	for _, p := range r.Pipe {
		if p.Err != "" || p.RoundTripNs <= 0 {
			t.Errorf("pipe %s: round trip %d ns, error %q", p.Scheduler, p.RoundTripNs, p.Err)
		}
		got[p.Scheduler] = true
	}
	if !got[labbench.EEVDF] || !got[labbench.SCXSLO] {
		t.Errorf("pipe measured under %v, want eevdf and scx-slo", got)
	}
	dir := t.TempDir()
	if err := labbench.WriteReport(dir, r, "go test -run TestSmoke ./bench"); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	for _, s := range []string{"## probe", "## http", "## msg", "| 200% | scx-slo |", "## Overhead: pipe ping-pong"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
	for _, name := range []string{"latency.png", "throughput.png"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
			t.Errorf("%s is %v", name, b)
		}
	}
}

// TestPeerWrkSmoke runs, in one boot, the probe and wrk each alone and
// in one short cell of scx_simple under full batch load: the peers are
// static, the peer is the attached scheduler when its cells end
// (/sys/kernel/sched_ext/root/ops), and every cell produced figures. CI
// builds the peers first (.ci/run: scx-slo-lab peers); elsewhere a
// missing build skips.
func TestPeerWrkSmoke(t *testing.T) {
	k, bin := prepare(t)
	needs.Command(t, "wrk", "wrk")
	var set *peers.Set
	var err error
	if needs.Required() {
		set, err = peers.Ensure(t.Context(), "", k, t.Output())
	} else {
		set, err = peers.Cached(t.Context(), "", k)
	}
	if errors.Is(err, peers.ErrNotBuilt) || errors.Is(err, exec.ErrNotFound) {
		needs.Part(t, "the sched_ext peers", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range peers.Names {
		if err := peers.CheckStatic(set.Binary(n)); err != nil {
			t.Error(err)
		}
	}
	for _, n := range peers.Names {
		if p, ok := set.Peer(n); !ok || p.Ops == "" {
			t.Errorf("build.json in %s has no ops name for %s: %+v", set.Dir, n, set.Info.Peers)
		}
	}
	simple, _ := set.Peer(peers.Simple)
	cfg := labbench.PeerWrkSmoke()
	r, err := labbench.Run(t.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
		Kernel: k, Console: t.Output(), Timeout: 5 * time.Minute, Peers: set})
	if err != nil {
		t.Fatal(err)
	}
	if r.Peers == nil || r.Peers.Build == nil || r.Peers.Build.Version != k.PackageVersion() {
		t.Errorf("results name no peer build of the kernel's version %s: %+v", k.PackageVersion(), r.Peers)
	}
	if want := len(cfg.Workloads) * (1 + len(cfg.Loads)*len(cfg.Schedulers)); len(r.Cells) != want {
		t.Fatalf("got %d cells, want %d", len(r.Cells), want)
	}
	for _, c := range r.Cells {
		name := c.Workload + "/" + strconv.Itoa(c.Load) + "%/" + c.Scheduler
		if c.Err != "" {
			t.Errorf("%s: %s", name, c.Err)
		}
		if c.Latency.N == 0 || c.Kernel == nil || c.Kernel.Waits == 0 {
			t.Errorf("%s: no latency figures: %+v, kernel view %+v", name, c.Latency, c.Kernel)
		}
		if c.Workload == labbench.Wrk && (c.Wrk == nil || c.Wrk.RequestsPerSec <= 0) {
			t.Errorf("%s: no wrk requests/s: %+v", name, c.Wrk)
		}
		if c.Load == 0 {
			continue
		}
		if c.Peer == nil || c.Peer.Ops != simple.Ops {
			t.Errorf("%s: attached ops at the end of the window %+v, want %q", name, c.Peer, simple.Ops)
		}
		if c.Batch.CPUSeconds <= 0 || !(c.Batch.BogoOps > 0) {
			t.Errorf("%s: batch produced no data: %+v", name, c.Batch)
		}
		if c.Peer != nil {
			t.Logf("%s: %d samples, p50 %s p99 %s, %.1f%% over budget; batch %.2f cores; peer %q said %q",
				name, c.Latency.N, time.Duration(c.Latency.P50Ns), time.Duration(c.Latency.P99Ns), 100*c.Latency.OverBudget,
				c.Batch.CPUSeconds/c.Batch.WindowSeconds, c.Peer.Command, c.Peer.Banner)
		}
	}
	md := labbench.Markdown(r, "go test -run TestPeerWrkSmoke ./bench")
	for _, s := range []string{"## Peer schedulers", "| 200% | scx_simple |", "wrk req/s"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
}

// fidelity is the SCX_SLO_BENCH_MODE that runs each cell in its own boot.
const fidelity = "fidelity"

// TestSafeSmoke runs the SLO-safe load search end to end in one short
// boot: the probe's floor, then scx-slo searched in 50 % steps up to
// 100 %, and checks that the cells the guest measured are exactly the
// steps the search takes given their verdicts, and that the report has
// the safe-load table.
func TestSafeSmoke(t *testing.T) {
	k, bin := prepare(t)
	cfg := labbench.SafeFull()
	cfg.Reps, cfg.Cell, cfg.Workloads, cfg.Schedulers = 1, time.Second, []string{labbench.Probe}, []string{labbench.SCXSLO}
	cfg.SafeStep, cfg.SafeMax, cfg.SafeResolution = 50, 100, 25
	start := time.Now()
	r, err := labbench.Run(t.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
		Kernel: k, Console: t.Output(), Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("safe smoke run took %s", time.Since(start).Round(time.Millisecond))
	if len(r.Cells) < 2 || r.Cells[0].Load != 0 {
		t.Fatalf("want the floor and at least one search step, got %d cells: %+v", len(r.Cells), r.Cells)
	}
	for _, c := range r.Cells {
		if c.Err != "" || c.Latency.N == 0 || c.Host == nil {
			t.Errorf("%s at %d%% under %s: error %q, %d samples, host sample %v", c.Workload, c.Load, c.Scheduler, c.Err, c.Latency.N, c.Host)
		}
	}
	got, want := labbench.SearchReplay(r.Cells[1:], cfg)
	if !slices.Equal(got, want) {
		t.Errorf("measured loads %v, but the search given those verdicts takes %v", got, want)
	}
	md := labbench.Markdown(r, "go test -run TestSafeSmoke ./bench")
	if !strings.Contains(md, "## SLO-safe batch load") || !strings.Contains(md, "| probe | scx-slo | ") {
		t.Errorf("report lacks the safe-load table:\n%s", md)
	}
	for _, sr := range labbench.SafeResults(r) {
		t.Logf("%s under %s: safe load %d%%, limit %d%%, steps %+v", sr.Workload, sr.Setup, sr.Safe, sr.Limit, sr.Steps)
	}
}

// BenchmarkLab is the full matrix (make bench). One boot; results land
// in bench/results/<UTC date>/ (SCX_SLO_BENCH_OUT overrides), with
// SCX_SLO_BENCH_REPS and SCX_SLO_BENCH_CELL to change its size and
// SCX_SLO_BENCH_WORKLOADS, _LOADS and _SCHEDULERS (comma-separated) to
// run part of the matrix. SCX_SLO_BENCH_MODE=safe runs the SLO-safe load
// search instead (labbench.SafeFull, into bench/results/<UTC date>-safe/),
// sized by SCX_SLO_BENCH_SAFE_STEP, _SAFE_MAX, _SAFE_RES (percent of the
// vCPUs) and _SAFE_OVER (the fraction of samples allowed over budget).
// SCX_SLO_BENCH_MODE=fidelity runs the matrix with each cell in its own
// boot under multi-threaded TCG (labbench.RunFidelity, into
// bench/results/<UTC date>-fidelity/).
func BenchmarkLab(b *testing.B) {
	k, bin := prepare(b)
	cfg := labbench.Full()
	mode := os.Getenv("SCX_SLO_BENCH_MODE")
	switch mode {
	case "":
	case labbench.Safe:
		cfg = labbench.SafeFull()
		if os.Getenv("SCX_SLO_BENCH_LOADS") != "" {
			b.Fatal("SCX_SLO_BENCH_LOADS does not apply with SCX_SLO_BENCH_MODE=safe: the search picks the loads (SCX_SLO_BENCH_SAFE_STEP, _SAFE_MAX, _SAFE_RES)")
		}
		for _, v := range []struct {
			env  string
			into *int
		}{{"SCX_SLO_BENCH_SAFE_STEP", &cfg.SafeStep}, {"SCX_SLO_BENCH_SAFE_MAX", &cfg.SafeMax}, {"SCX_SLO_BENCH_SAFE_RES", &cfg.SafeResolution}} {
			if s := os.Getenv(v.env); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil {
					b.Fatalf("%s=%q: want a whole percentage of the vCPUs", v.env, s)
				}
				*v.into = n
			}
		}
		if s := os.Getenv("SCX_SLO_BENCH_SAFE_OVER"); s != "" {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				b.Fatalf("SCX_SLO_BENCH_SAFE_OVER=%q: want a fraction like 0.01", s)
			}
			cfg.SafeMaxOver = f
		}
	case fidelity:
		// One host thread per vCPU unless the caller chose an accelerator.
		if os.Getenv("SCX_SLO_LAB_ACCEL") == "" {
			b.Setenv("SCX_SLO_LAB_ACCEL", labbench.FidelityAccel)
		}
	default:
		b.Fatalf("SCX_SLO_BENCH_MODE=%q: want empty (the load matrix), %q (the SLO-safe load search) or %q (each cell in its own boot)", mode, labbench.Safe, fidelity)
	}
	if v := os.Getenv("SCX_SLO_BENCH_REPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("SCX_SLO_BENCH_REPS=%q: want a number of repetitions", v)
		}
		cfg.Reps = n
	}
	if v := os.Getenv("SCX_SLO_BENCH_CELL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("SCX_SLO_BENCH_CELL=%q: want a duration like 3s", v)
		}
		cfg.Cell = d
	}
	for _, v := range []struct {
		env  string
		into *[]string
	}{{"SCX_SLO_BENCH_WORKLOADS", &cfg.Workloads}, {"SCX_SLO_BENCH_SCHEDULERS", &cfg.Schedulers}} {
		if s := os.Getenv(v.env); s != "" {
			*v.into = strings.Split(s, ",")
		}
	}
	if s := os.Getenv("SCX_SLO_BENCH_LOADS"); s != "" {
		cfg.Loads = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("SCX_SLO_BENCH_LOADS=%q: %q is not a whole percentage", s, f)
			}
			cfg.Loads = append(cfg.Loads, n)
		}
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	out := os.Getenv("SCX_SLO_BENCH_OUT")
	if out == "" {
		out = labbench.ResultsDir(".", time.Now())
		if mode != "" {
			out += "-" + mode
		}
	}
	var set *peers.Set
	var peersErr error
	if slices.ContainsFunc(cfg.Schedulers, labbench.IsPeer) {
		// Built on first use (about a minute); a failed build fails only
		// the peers' cells, and the report says why.
		if set, peersErr = peers.Ensure(b.Context(), "", k, b.Output()); peersErr != nil {
			b.Logf("sched_ext peers: %v", peersErr)
		}
	}
	for b.Loop() {
		run := labbench.Run
		if mode == fidelity {
			run = labbench.RunFidelity
		}
		r, err := run(b.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
			Kernel: k, Console: b.Output(), Timeout: 100 * time.Minute, Peers: set, PeersErr: peersErr})
		if r != nil {
			command := "make bench"
			if mode != "" {
				command = "SCX_SLO_BENCH_MODE=" + mode + " make bench"
			}
			if werr := labbench.WriteReport(out, r, command); werr != nil {
				b.Fatal(werr)
			}
			b.Logf("report in %s", out)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSchedCost is what scx-slo's callbacks cost per call
// (bpf_stats run time over run count, summed over the cells), at 2 vCPUs
// and at 8 in two sockets (two cache domains, where victim scans and
// stealing cross domains): the probe and msg workloads against 100 %
// batch, one boot per size. Each callback's figure is reported as
// <callback>-ns/run; the sizes run back to back, so compare them as a
// ratio (the 8-vCPU figure over the 2-vCPU one), not across hosts:
//
//	go test -run '^$' -bench SchedCost -benchtime 1x ./bench
func BenchmarkSchedCost(b *testing.B) {
	k, bin := prepare(b)
	for _, size := range []struct{ cpus, sockets int }{{2, 1}, {8, 2}} {
		b.Run(fmt.Sprintf("vcpus=%d", size.cpus), func(b *testing.B) {
			cfg := labbench.Full()
			cfg.Reps, cfg.Loads, cfg.PipeReps = 1, []int{100}, 0
			cfg.Schedulers, cfg.Workloads = []string{labbench.SCXSLO}, []string{labbench.Probe, labbench.Msg}
			for b.Loop() {
				r, err := labbench.Run(b.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
					Kernel: k, Console: b.Output(), Timeout: 15 * time.Minute, CPUs: size.cpus, Sockets: size.sockets})
				if err != nil {
					b.Fatal(err)
				}
				runs, ns := map[string]float64{}, map[string]float64{}
				for _, c := range r.Cells {
					for name, pc := range c.BPFCost {
						runs[name] += float64(pc.Runs)
						ns[name] += pc.NsPerRun * float64(pc.Runs)
					}
				}
				if len(runs) == 0 {
					b.Fatal("no scx-slo callback ran (bpf_stats empty)")
				}
				for name, n := range runs {
					b.ReportMetric(ns[name]/n, strings.TrimPrefix(name, "slo_")+"-ns/run")
				}
			}
		})
	}
}

// BenchmarkProbeWakeup splits the 1 ms probe's lateness (issue 11, "The
// 1 ms probe") with the kernel's tracepoints: sched_waking (the timer
// fires, on the waking CPU) to sched_wakeup (on the target's run queue,
// after the IPI when the target is another CPU) to the switch-in. The
// probe runs against 100 % batch under EEVDF and scx-slo, interleaved in
// one 2-vCPU boot, two repetitions; per setup it reports the p90s in µs,
// the share of wakeups sent to another CPU, and scx-slo over EEVDF for
// the wakeup-to-run p90:
//
//	go test -run '^$' -bench ProbeWakeup -benchtime 1x ./bench
func BenchmarkProbeWakeup(b *testing.B) {
	k, bin := prepare(b)
	cfg := labbench.Full()
	cfg.Reps, cfg.Loads, cfg.PipeReps, cfg.WakeTrace = 2, []int{100}, 0, true
	cfg.Schedulers, cfg.Workloads = []string{labbench.EEVDF, labbench.SCXSLO}, []string{labbench.Probe}
	for b.Loop() {
		r, err := labbench.Run(b.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
			Kernel: k, Console: b.Output(), Timeout: 15 * time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		run := map[string][]float64{}
		for _, c := range r.Cells {
			if c.Load == 0 || c.Wake == nil {
				continue
			}
			w, us := c.Wake, func(ns int64) float64 { return float64(ns) / 1e3 }
			b.Logf("%s rep %d: %+v", c.Scheduler, c.Rep, *w)
			b.ReportMetric(us(w.WakingP90Ns), c.Scheduler+fmt.Sprintf("-r%d-waking-to-wakeup-p90-us", c.Rep))
			b.ReportMetric(us(w.RunP90Ns), c.Scheduler+fmt.Sprintf("-r%d-wakeup-to-run-p90-us", c.Rep))
			b.ReportMetric(w.Remote, c.Scheduler+fmt.Sprintf("-r%d-remote", c.Rep))
			run[c.Scheduler] = append(run[c.Scheduler], us(w.RunP90Ns))
		}
		if len(run[labbench.EEVDF]) == 0 || len(run[labbench.SCXSLO]) == 0 {
			b.Fatalf("no traced probe cell for one of the setups: %v", run)
		}
		for i := range min(len(run[labbench.EEVDF]), len(run[labbench.SCXSLO])) {
			b.ReportMetric(run[labbench.SCXSLO][i]/run[labbench.EEVDF][i], fmt.Sprintf("r%d-run-p90-ratio", i))
		}
	}
}

// TestRender rewrites the report in $SCX_SLO_BENCH_RENDER from the
// results.json there (after a change to the report's layout).
func TestRender(t *testing.T) {
	dir := os.Getenv("SCX_SLO_BENCH_RENDER")
	if dir == "" {
		t.Skip("set SCX_SLO_BENCH_RENDER to a results directory to re-render its report")
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r labbench.Results
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s/results.json: %v", dir, err)
	}
	if err := labbench.WriteReport(dir, &r, ""); err != nil {
		t.Fatal(err)
	}
}
