package labbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/enforcer"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// Cell is one measured combination of workload, batch load and scheduler.
type Cell struct {
	Index     int                 `json:"index"`
	Rep       int                 `json:"rep"`
	Workload  string              `json:"workload"`
	Load      int                 `json:"load"` // percent of the vCPUs; 0 is the floor (no batch)
	Scheduler string              `json:"scheduler"`
	Latency   Summary             `json:"latency"`
	Errors    int                 `json:"errors,omitempty"` // failed HTTP requests
	Batch     Batch               `json:"batch"`
	SchedStat map[string]uint64   `json:"sched_stats,omitempty"` // scx-slo's counters at the end of the cell
	BPFCost   map[string]ProgCost `json:"bpf_cost,omitempty"`    // scx-slo's callbacks: runs and ns per run over the cell
	Wake      *WakeBreakdown      `json:"wake,omitempty"`        // the probe's wakeups from the kernel's tracepoints (Config.WakeTrace)
	Kernel    *KernelView         `json:"kernel,omitempty"`      // the kernel's view of the latency cgroup's waits
	Peer      *PeerRun            `json:"peer,omitempty"`        // the peer scheduler attached for the cell
	Wrk       *WrkRun             `json:"wrk,omitempty"`         // wrk's own figures (workload wrk)
	Err       string              `json:"error,omitempty"`
	Host      *HostSample         `json:"host,omitempty"`  // filled in on the host
	Boots     int                 `json:"boots,omitempty"` // fidelity mode: boots the cell took (retries after the text-patching oops + 1)
}

// Batch is the batch side of a cell.
type Batch struct {
	Workers       int     `json:"workers"`        // stress-ng CPU workers
	WorkerLoad    int     `json:"worker_load"`    // --cpu-load of each, percent
	CPUSeconds    float64 `json:"cpu_seconds"`    // batch cgroup CPU time in the measured window
	WindowSeconds float64 `json:"window_seconds"` // the measured window
	BogoOps       float64 `json:"bogo_ops"`       // stress-ng, whole run
	BogoOpsPerSec float64 `json:"bogo_ops_per_sec"`
	Spawns        int     `json:"spawns"`
	SpawnsPerSec  float64 `json:"spawns_per_sec"`
}

// KernelView is what the kernel side measured for the latency cgroup in
// a cell: every runnable-to-running wait, judged against the SLO budget,
// by scx-slo itself or, under EEVDF, by the observe-mode tracer. Next to
// the workload's own figures it tells run-queue waits (the scheduler's
// doing) from delays outside them (timer and IPI delivery, and under TCG
// the emulator switching between vCPUs).
type KernelView struct {
	Waits     uint64  `json:"waits"`
	MeanNs    uint64  `json:"mean_ns"`
	MissRatio float64 `json:"miss_ratio"`
}

// Pipe is one ping-pong measurement.
type Pipe struct {
	Rep         int    `json:"rep"`
	Scheduler   string `json:"scheduler"`
	RoundTripNs int64  `json:"round_trip_ns"`
	Err         string `json:"error,omitempty"`
}

// Results is everything one boot measured.
type Results struct {
	Config Config `json:"config"`
	Kernel string `json:"kernel"`
	VCPUs  int    `json:"vcpus"`
	Cells  []Cell `json:"cells"`
	Pipe   []Pipe `json:"pipe"`
	Host   *Host  `json:"host,omitempty"`
	// Partial: the guest died before finishing; these are the cells it
	// echoed on the console.
	Partial bool        `json:"partial,omitempty"`
	Command string      `json:"command,omitempty"` // what produced this, for the report
	Peers   *PeerReport `json:"peers,omitempty"`   // how the peer schedulers were built (host side)
	// Fidelity: each cell ran in its own boot (RunFidelity).
	Fidelity bool `json:"fidelity,omitempty"`
}

// cellMarker is printed on the console around each measured window so
// the host can sample its own load for exactly that stretch.
const cellMarker = "labbench: cell "

// The guest also echoes every result as one JSON console line. /out is
// the record; the echo is what survives a guest that dies mid-run (under
// multi-threaded TCG a guest can oops), so a long run is not all lost.
const (
	headerJSONMarker = "labbench: header-json "
	cellJSONMarker   = "labbench: cell-json "
	pipeJSONMarker   = "labbench: pipe-json "
)

func echo(marker string, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		fmt.Printf("%s%s\n", marker, b)
	}
}

const cgroupRoot = "/sys/fs/cgroup"

type guest struct {
	cfg        Config
	lat, batch cgroup
	vcpus      int
	wake       *WakeBreakdown // the last probe's, with Config.WakeTrace
}

type cgroup struct {
	path string
	id   uint64
	fd   int
}

func openCgroup(name string) (cgroup, error) {
	p := filepath.Join(cgroupRoot, name)
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return cgroup{}, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return cgroup{}, err
	}
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return cgroup{}, err
	}
	return cgroup{path: p, id: st.Ino, fd: fd}, nil
}

func (c cgroup) set(file, value string) error {
	if err := os.WriteFile(filepath.Join(c.path, file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("writing %s to %s/%s: %w", value, c.path, file, err)
	}
	return nil
}

// usage is the cgroup's CPU time so far (cpu.stat usage_usec).
func (c cgroup) usage() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(c.path, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(n) * time.Microsecond, err
		}
	}
	return 0, fmt.Errorf("%s/cpu.stat has no usage_usec", c.path)
}

func (c cgroup) procs() int {
	b, _ := os.ReadFile(filepath.Join(c.path, "cgroup.procs"))
	return len(strings.Fields(string(b)))
}

// RunGuest runs the matrix inside the lab guest and writes Results as
// JSON to out after every cell, so a crash leaves what was measured.
func RunGuest(ctx context.Context, cfg Config, out string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	lat, err := openCgroup("bench-lat")
	if err != nil {
		return err
	}
	batch, err := openCgroup("bench-batch")
	if err != nil {
		return err
	}
	g := &guest{cfg: cfg, lat: lat, batch: batch, vcpus: runtime.NumCPU()}
	var uts unix.Utsname
	unix.Uname(&uts)
	res := &Results{Config: cfg, Kernel: unix.ByteSliceToString(uts.Release[:]), VCPUs: g.vcpus}
	echo(headerJSONMarker, Results{Config: cfg, Kernel: res.Kernel, VCPUs: res.VCPUs})
	save := func() error {
		b, err := json.MarshalIndent(res, "", " ")
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	}
	measure := func(spec cellSpec) (Cell, error) {
		if err := ctx.Err(); err != nil {
			return Cell{}, err
		}
		c := Cell{Index: len(res.Cells), Rep: spec.rep, Workload: spec.workload, Load: spec.load, Scheduler: spec.sched}
		if err := g.cell(ctx, &c); err != nil {
			c.Err = err.Error()
		}
		fmt.Printf("labbench: rep %d %-5s load %3d%% %-11s n=%d p50=%s p90=%s p99=%s over=%.3f batch cpu=%.2fs bogo/s=%.1f spawns/s=%.1f %s\n",
			c.Rep, c.Workload, c.Load, c.Scheduler, c.Latency.N, time.Duration(c.Latency.P50Ns), time.Duration(c.Latency.P90Ns),
			time.Duration(c.Latency.P99Ns), c.Latency.OverBudget, c.Batch.CPUSeconds, c.Batch.BogoOpsPerSec, c.Batch.SpawnsPerSec, c.Err)
		if c.SchedStat != nil {
			fmt.Printf("labbench: scx-slo stats %v\n", c.SchedStat)
		}
		if c.Wake != nil {
			fmt.Printf("labbench: probe wakeups %+v\n", *c.Wake)
		}
		if c.BPFCost != nil {
			fmt.Printf("labbench: scx-slo callbacks (runs, ns/run) %v\n", c.BPFCost)
		}
		if c.Kernel != nil {
			fmt.Printf("labbench: kernel view %+v\n", *c.Kernel)
		}
		res.Cells = append(res.Cells, c)
		echo(cellJSONMarker, c)
		return c, save()
	}
	if cfg.Mode == Safe {
		if err := searchSafe(cfg, measure); err != nil {
			return err
		}
		return save()
	}
	specs := plan(cfg)
	if len(cfg.Plan) > 0 {
		specs = nil
		for _, p := range cfg.Plan {
			specs = append(specs, cellSpec{p.Rep, p.Workload, p.Load, p.Scheduler})
		}
	}
	for _, spec := range specs {
		if _, err := measure(spec); err != nil {
			return err
		}
	}
	for rep := range cfg.PipeReps {
		order := []string{EEVDF, SCXSLO}
		if rep%2 == 1 {
			order = []string{SCXSLO, EEVDF}
		}
		for _, s := range order {
			p := Pipe{Rep: rep, Scheduler: s}
			if err := g.pipe(ctx, &p); err != nil {
				p.Err = err.Error()
			}
			fmt.Printf("labbench: pipe rep %d %-7s round trip %s %s\n", rep, s, time.Duration(p.RoundTripNs), p.Err)
			res.Pipe = append(res.Pipe, p)
			echo(pipeJSONMarker, p)
		}
	}
	return save()
}

type cellSpec struct {
	rep      int
	workload string
	load     int
	sched    string
}

// plan orders the cells: each repetition runs the whole matrix (ABAB
// across repetitions), and the scheduler order rotates per repetition so
// no setup always runs first after a load change.
func plan(cfg Config) []cellSpec {
	var out []cellSpec
	for rep := range cfg.Reps {
		for _, w := range cfg.Workloads {
			out = append(out, cellSpec{rep, w, 0, EEVDF})
			for _, l := range cfg.Loads {
				n := len(cfg.Schedulers)
				for k := range n {
					out = append(out, cellSpec{rep, w, l, cfg.Schedulers[(k+rep)%n]})
				}
			}
		}
	}
	return out
}

func (g *guest) cell(ctx context.Context, c *Cell) error {
	teardown, err := g.setup(ctx, c.Scheduler)
	if err != nil {
		return err
	}
	defer func() {
		if err := teardown(c); err != nil && c.Err == "" {
			c.Err = err.Error()
		}
	}()
	var b *batchRun
	if c.Load > 0 {
		if b, err = g.startBatch(c.Load); err != nil {
			return err
		}
		defer b.kill()
	}
	before, err := g.batch.usage()
	if err != nil {
		return err
	}
	fmt.Printf("%s%d start\n", cellMarker, c.Index)
	start := time.Now()
	g.wake = nil
	var samples []int64
	var errs int
	var runErr error
	if c.Workload == Wrk {
		runErr = g.wrkCell(c)
	} else {
		samples, errs, runErr = g.latency(c.Workload)
	}
	c.Wake = g.wake
	window := time.Since(start)
	fmt.Printf("%s%d end\n", cellMarker, c.Index)
	after, err := g.batch.usage()
	if err != nil {
		return err
	}
	if c.Workload != Wrk {
		c.Latency, c.Errors = Summarize(samples, g.cfg.budgetOf(c.Workload)), errs
	}
	c.Batch.CPUSeconds, c.Batch.WindowSeconds = (after - before).Seconds(), window.Seconds()
	if b != nil {
		if err := b.stop(&c.Batch); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// setup configures the cgroups (and the scheduler) for one setup and
// returns what undoes it.
func (g *guest) setup(ctx context.Context, sched string) (func(*Cell) error, error) {
	latW, batchW, idle := "100", "100", "0"
	switch sched {
	case EEVDFTuned:
		latW, batchW = "10000", "1"
	case EEVDFIdle:
		idle = "1"
	}
	if ps, ok := peerSetups[sched]; ok {
		latW, batchW = ps.latW, ps.batchW
	}
	// cpu.idle first: an idle group ignores its weight.
	err := errors.Join(g.batch.set("cpu.idle", "0"), g.lat.set("cpu.weight", latW),
		g.batch.set("cpu.weight", batchW), g.batch.set("cpu.idle", idle))
	if err != nil {
		return nil, err
	}
	slo := map[uint64]slomaps.Entry{g.lat.id: slomaps.NewEntry(uint64(g.cfg.Budget), g.cfg.Target, 100, 0)}
	if sched != SCXSLO {
		// The observe-mode tracer gives the EEVDF setups the same kernel
		// view scx-slo keeps itself, so run-queue waits compare directly.
		tr, err := runqueue.Load(runqueue.Options{Hierarchy: cgroupfs.Hierarchy{Root: "/sys/fs/cgroup", V2: true}})
		if err != nil {
			return nil, fmt.Errorf("loading the run-queue tracer: %w", err)
		}
		if err := tr.Maps().SyncSLOs(slo); err != nil {
			tr.Close()
			return nil, err
		}
		var peer *attachedPeer
		if IsPeer(sched) {
			// Weights are set first: scx_flatcg reads them as it attaches.
			if peer, err = g.startPeer(sched); err != nil {
				tr.Close()
				return nil, err
			}
		}
		return func(c *Cell) error {
			var perr error
			if peer != nil {
				perr = peer.check()
				c.Peer = &peer.run
			}
			c.Kernel = kernelView(tr.Maps(), g.lat.id)
			if peer != nil {
				perr = errors.Join(perr, peer.stop())
			}
			return errors.Join(perr, tr.Close())
		}, nil
	}
	e, err := enforcer.New(enforcer.Options{MaxReattach: -1, PinDir: "/sys/fs/bpf/labbench",
		OnChange: func(m slomaps.Maps, attached bool) {
			if attached {
				m.SyncSLOs(slo)
			}
		}})
	if err != nil {
		return nil, err
	}
	if err := e.Start(ctx); err != nil {
		return nil, fmt.Errorf("attaching scx-slo: %w", err)
	}
	if err := waitSchedExt("enabled", 10*time.Second); err != nil {
		e.Stop()
		return nil, err
	}
	cost, err := startBPFCost()
	if err != nil {
		e.Stop()
		return nil, err
	}
	return func(c *Cell) error {
		c.BPFCost, _ = cost.stop()
		c.SchedStat, _ = e.Stats()
		if m, ok := e.Maps(); ok {
			c.Kernel = kernelView(m, g.lat.id)
		}
		attached := e.Attached()
		e.Stop()
		if !attached {
			return fmt.Errorf("the kernel ejected scx-slo during the cell: %+v", e.LastExit())
		}
		return waitSchedExt("disabled", 10*time.Second)
	}, nil
}

// kernelView reads the latency cgroup's waits from the shared maps; nil
// if there were none.
func kernelView(m slomaps.Maps, id uint64) *KernelView {
	st, ok, err := m.StatsOf(id)
	if err != nil || !ok || st.Deadlines == 0 {
		return nil
	}
	return &KernelView{Waits: st.Deadlines, MeanNs: st.MeanWaitNs(), MissRatio: st.MissRatio()}
}

func waitSchedExt(state string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile("/sys/kernel/sched_ext/state")
		got := strings.TrimSpace(string(b))
		if got == state {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sched_ext state is %q after %s, want %q", got, limit, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const probePeriod = time.Millisecond

// latency runs one latency workload in the latency cgroup for a cell.
func (g *guest) latency(name string) (samples []int64, errs int, err error) {
	run := g.cfg.Cell.String()
	var cmd *exec.Cmd
	switch name {
	case Probe:
		cmd, err = workload.Command("probe", g.lat.fd, map[string]string{"RUN_FOR": run, "PROBE_PERIOD": probePeriod.String(), "PROBE_WORK": "100us"})
	case HTTP:
		cmd, err = command("http", g.lat.fd, 2, map[string]string{"RUN_FOR": run,
			"HTTP_RATE": strconv.Itoa(g.cfg.HTTPRate), "HTTP_WORK": g.cfg.HTTPWork.String()})
	case Msg:
		cmd, err = command("msg", g.lat.fd, g.cfg.MsgWorkers+1, map[string]string{"RUN_FOR": run,
			"MSG_PERIOD": g.cfg.MsgPeriod.String(), "MSG_WORK": g.cfg.MsgWork.String(), "MSG_WORKERS": strconv.Itoa(g.cfg.MsgWorkers)})
	default:
		err = fmt.Errorf("workload %q: want %s, %s or %s", name, Probe, HTTP, Msg)
	}
	if err != nil {
		return nil, 0, err
	}
	var out []byte
	if name == Probe && g.cfg.WakeTrace {
		var wt *wakeTrace
		if wt, err = startWakeTrace(); err != nil {
			return nil, 0, err
		}
		var tids map[string]bool
		out, tids, err = runTracingThreads(cmd)
		if wb, terr := wt.stop(tids); terr == nil {
			g.wake = wb
		} else if err == nil {
			err = fmt.Errorf("probe wakeup trace: %w", terr)
		}
	} else {
		out, err = cmd.Output()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s workload: %w", name, err)
	}
	if name == Probe {
		var r workload.ProbeReport
		if err := json.Unmarshal(out, &r); err != nil {
			return nil, 0, fmt.Errorf("probe report: %w", err)
		}
		return r.LatenessNs, 0, nil
	}
	var r LatencyReport
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, 0, fmt.Errorf("%s report: %w", name, err)
	}
	return r.SamplesNs, r.Errors, nil
}

// batchRun is the batch cgroup's load: stress-ng CPU stressors sized to
// the load, plus the paced fork/exec job.
type batchRun struct {
	sng, fork       *exec.Cmd
	sngOut, forkOut bytes.Buffer
	yaml            string
	workers, pct    int
	cgroup          string // the batch cgroup's path
}

// workersFor splits a load (percent of vcpus) into stress-ng workers and
// the --cpu-load of each: 75% of 2 vCPUs is 2 workers at 75%.
func workersFor(load, vcpus int) (workers, pct int) {
	demand := float64(load) * float64(vcpus) / 100
	workers = int(math.Ceil(demand - 1e-9))
	return workers, int(math.Round(demand / float64(workers) * 100))
}

func (g *guest) startBatch(load int) (*batchRun, error) {
	if g.cfg.StressNG == "" {
		return nil, errors.New("Config.StressNG is empty: the host must copy stress-ng into the guest")
	}
	b := &batchRun{yaml: filepath.Join(os.TempDir(), "stress-ng.yaml"), cgroup: g.batch.path}
	os.Remove(b.yaml)
	b.workers, b.pct = workersFor(load, g.vcpus)
	d := g.cfg.StressNG
	// stress-ng is dynamically linked and the guest has no libc: run it
	// through the loader copied beside it.
	b.sng = exec.Command(filepath.Join(d, "ld.so"), "--library-path", filepath.Join(d, "lib"), filepath.Join(d, "stress-ng"),
		"--cpu", strconv.Itoa(b.workers), "--cpu-load", strconv.Itoa(b.pct), "--cpu-method", "int64",
		"--timeout", "300", "--metrics-brief", "--yaml", b.yaml) // not --quiet: it drops the metrics from the YAML too
	b.sng.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.batch.fd}
	b.sng.Stdout, b.sng.Stderr = &b.sngOut, &b.sngOut
	fork, err := command("forkexec", g.batch.fd, 1, map[string]string{"RUN_FOR": "5m",
		"FORKEXEC_RATE": strconv.Itoa(g.cfg.ForkExecRate), "FORKEXEC_BIN": "/bin/true"})
	if err != nil {
		return nil, err
	}
	b.fork = fork
	b.fork.Stdout = &b.forkOut
	if err := b.sng.Start(); err != nil {
		return nil, fmt.Errorf("starting stress-ng: %w", err)
	}
	if err := b.fork.Start(); err != nil {
		b.kill()
		return nil, fmt.Errorf("starting the fork/exec job: %w", err)
	}
	// Measure only once every stressor runs: stress-ng's start-up takes
	// about a second under TCG.
	want := b.workers + 2
	deadline := time.Now().Add(15 * time.Second)
	for g.batch.procs() < want {
		if time.Now().After(deadline) {
			b.kill()
			return nil, fmt.Errorf("batch cgroup has %d processes after 15s, want %d (stress-ng output: %s)", g.batch.procs(), want, b.sngOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return b, nil
}

// stop ends the batch and reads its reports into out.
func (b *batchRun) stop(out *Batch) error {
	out.Workers, out.WorkerLoad = b.workers, b.pct
	// stress-ng reports metrics only when its workers end by their own
	// timer: SIGALRM to each worker is that timer going off (SIGINT to the
	// parent would skip the metrics).
	for _, pid := range children(b.sng.Process.Pid) {
		syscall.Kill(pid, syscall.SIGALRM)
	}
	b.fork.Process.Signal(syscall.SIGTERM)
	var errs []error
	if err := waitFor(b.sng, 30*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("stress-ng: %w: %s", err, b.sngOut.String()))
	}
	if err := waitFor(b.fork, 30*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("fork/exec job: %w", err))
	}
	if y, err := os.ReadFile(b.yaml); err != nil {
		errs = append(errs, fmt.Errorf("stress-ng wrote no metrics: %w", err))
	} else {
		ops, okOps := yamlNumber(string(y), "bogo-ops")
		rate, okRate := yamlNumber(string(y), "bogo-ops-per-second-real-time")
		if !okOps || !okRate {
			errs = append(errs, fmt.Errorf("stress-ng metrics lack bogo-ops: %s", y))
		}
		out.BogoOps, out.BogoOpsPerSec = ops, rate
	}
	var sr SpawnReport
	if err := json.Unmarshal(b.forkOut.Bytes(), &sr); err != nil {
		errs = append(errs, fmt.Errorf("fork/exec report: %w", err))
	} else if sr.Seconds > 0 {
		out.Spawns, out.SpawnsPerSec = sr.Spawns, float64(sr.Spawns)/sr.Seconds
	}
	return errors.Join(errs...)
}

// kill is the error path: nothing of the batch may outlive its cell.
func (b *batchRun) kill() {
	for _, c := range []*exec.Cmd{b.sng, b.fork} {
		if c != nil && c.Process != nil && c.ProcessState == nil {
			c.Process.Kill()
		}
	}
	// stress-ng's workers are its children: kill what is left in the cgroup.
	os.WriteFile(filepath.Join(b.cgroup, "cgroup.kill"), []byte("1"), 0o644)
}

func waitFor(c *exec.Cmd, limit time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		c.Process.Kill()
		<-done
		return fmt.Errorf("did not exit within %s of the stop signal", limit)
	}
}

// yamlNumber finds "key: number" in stress-ng's YAML (one stressor).
func yamlNumber(y, key string) (float64, bool) {
	for _, l := range strings.Split(y, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && k == key {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// children lists pid's child processes (every thread's).
func children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, v := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(v); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// pipe measures ping-pong round trips under one setup, in the latency
// cgroup, with no batch load.
func (g *guest) pipe(ctx context.Context, p *Pipe) error {
	teardown, err := g.setup(ctx, p.Scheduler)
	if err != nil {
		return err
	}
	runErr := func() error {
		cmd, err := command("pipe", g.lat.fd, 2, map[string]string{"PIPE_ROUNDS": strconv.Itoa(g.cfg.PipeRounds)})
		if err != nil {
			return err
		}
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("pipe workload: %w", err)
		}
		var r PipeReport
		if err := json.Unmarshal(out, &r); err != nil {
			return fmt.Errorf("pipe report: %w", err)
		}
		p.RoundTripNs = r.RoundTripNs
		return nil
	}()
	return errors.Join(runErr, teardown(&Cell{}))
}
