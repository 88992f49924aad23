package labbench

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Scheduler setups compared in every repetition.
const (
	EEVDF      = "eevdf"       // defaults: both cgroups cpu.weight 100
	EEVDFTuned = "eevdf-tuned" // latency cpu.weight 10000, batch cpu.weight 1
	EEVDFIdle  = "eevdf-idle"  // batch cpu.idle=1
	SCXSLO     = "scx-slo"     // the scx-slo scheduler with an SLO on the latency cgroup
)

// Latency workloads.
const (
	Probe = "probe" // 1 ms periodic wakeup, 100 us of work (cyclictest-like)
	HTTP  = "http"  // loopback HTTP server driven open-loop
	Msg   = "msg"   // message thread waking workers (schbench-like)
	// Wrk (wrk.go) is Debian's wrk, closed-loop, against the HTTP server.
)

// Config is one benchmark run. Zero fields take the full run's defaults
// (see withDefaults); Smoke returns the CI variant.
type Config struct {
	// Mode is "" for the load matrix, or Safe (safe.go): search each
	// workload and setup for the highest batch load that meets the SLO;
	// Loads are then unused and Reps are repetitions per search step.
	Mode string `json:"mode,omitempty"`

	Reps       int           `json:"reps"`       // repetitions of the whole matrix, interleaved
	Cell       time.Duration `json:"cell"`       // measured window of one cell
	Loads      []int         `json:"loads"`      // batch demand in percent of the vCPUs
	Schedulers []string      `json:"schedulers"` // setups under load; the floor is always EEVDF without batch
	Workloads  []string      `json:"workloads"`

	// Budgets judge "over budget" per workload; Budget is also the
	// run-queue budget of the SLO scx-slo enforces on the latency cgroup.
	Budget     time.Duration `json:"budget"`      // probe lateness and msg wakeup latency
	HTTPBudget time.Duration `json:"http_budget"` // request latency
	Target     float64       `json:"target"`      // SLO target given to scx-slo

	HTTPRate     int           `json:"http_rate"` // requests per second
	HTTPWork     time.Duration `json:"http_work"` // CPU per request (http and wrk)
	WrkConns     int           `json:"wrk_conns"` // connections wrk keeps busy
	MsgWorkers   int           `json:"msg_workers"`
	MsgPeriod    time.Duration `json:"msg_period"`
	MsgWork      time.Duration `json:"msg_work"`
	ForkExecRate int           `json:"forkexec_rate"` // spawns per second the fork/exec job aims at

	PipeRounds int `json:"pipe_rounds"` // round trips per ping-pong measurement
	PipeReps   int `json:"pipe_reps"`   // measurements per scheduler

	// The safe search (Mode Safe): coarse steps of SafeStep percent up to
	// SafeMax, then bisection until the bracket is at most SafeResolution
	// wide. A step meets the SLO when, in every repetition, at most
	// SafeMaxOver of the samples were over budget (the default 0.01 is
	// the 0.99 target's allowance).
	SafeStep       int     `json:"safe_step,omitempty"`
	SafeMax        int     `json:"safe_max,omitempty"`
	SafeResolution int     `json:"safe_resolution,omitempty"`
	SafeMaxOver    float64 `json:"safe_max_over,omitempty"`

	// Plan, when set, is the exact list of cells the guest runs instead
	// of the matrix (the fidelity mode sends one per boot).
	Plan []PlanCell `json:"plan,omitempty"`

	// WakeTrace traces the probe's wakeups (sched_waking, sched_wakeup,
	// switch-in) in every probe cell; tracing costs time, so off in make bench.
	WakeTrace bool `json:"wake_trace,omitempty"`

	// Set by the host for the guest.
	StressNG string                `json:"stress_ng,omitempty"` // guest directory holding ld.so, stress-ng and lib/
	Wrk      string                `json:"wrk,omitempty"`       // guest directory holding ld.so, wrk and lib/
	Peers    map[string]PeerBinary `json:"peers,omitempty"`     // peer schedulers by executable name
}

// Full is the on-demand benchmark.
func Full() Config {
	return Config{Reps: 4, Cell: 3 * time.Second, Loads: []int{50, 75, 100, 200},
		Schedulers: append([]string{EEVDF, EEVDFTuned, EEVDFIdle, SCXSLO}, PeerNames...), Workloads: []string{Probe, HTTP, Msg}}.withDefaults()
}

// Smoke is the CI variant: every scheduler but the peers (PeerWrkSmoke
// has one) and every workload at one load, one repetition, short cells.
func Smoke() Config {
	return Config{Reps: 1, Cell: time.Second, Loads: []int{200},
		Schedulers: []string{EEVDF, EEVDFTuned, EEVDFIdle, SCXSLO}, Workloads: []string{Probe, HTTP, Msg},
		PipeRounds: 2000, PipeReps: 1}.withDefaults()
}

// PeerWrkSmoke is the CI check of the peers and of wrk, in one boot: the
// probe and wrk, each alone (the plan's floor) and in one short cell of
// scx_simple under full batch load. Not scx_flatcg: with the batch
// cgroup at cpu.weight 1 the kernel's watchdog has ejected it during a
// 200 % cell (a runnable task not run for 30 s), a property of that peer
// the benchmark reports, not a failure of the build or of the harness.
func PeerWrkSmoke() Config {
	c := Config{Reps: 1, Cell: time.Second, Loads: []int{200}, Schedulers: []string{SCXSimple}, Workloads: []string{Probe, Wrk}}.withDefaults()
	c.PipeReps = 0
	return c
}

func (c Config) withDefaults() Config {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	def(&c.Budget, time.Millisecond)
	def(&c.HTTPBudget, 20*time.Millisecond)
	def(&c.HTTPWork, 200*time.Microsecond)
	def(&c.MsgPeriod, 2*time.Millisecond)
	def(&c.MsgWork, 100*time.Microsecond)
	defInt(&c.HTTPRate, 50)
	defInt(&c.WrkConns, 4)
	defInt(&c.MsgWorkers, 2)
	defInt(&c.ForkExecRate, 50)
	defInt(&c.PipeRounds, 20000)
	defInt(&c.PipeReps, 3)
	if c.Target == 0 {
		c.Target = 0.99
	}
	if c.Mode == Safe {
		defInt(&c.SafeStep, 25)
		defInt(&c.SafeMax, 200)
		defInt(&c.SafeResolution, 10)
		if c.SafeMaxOver == 0 {
			c.SafeMaxOver = 0.01
		}
	}
	return c
}

// Validate names the first bad field and its value.
func (c Config) Validate() error {
	switch {
	case c.Reps < 1 || c.Reps > 100:
		return fmt.Errorf("labbench: Reps = %d: want 1..100", c.Reps)
	case c.Cell < 200*time.Millisecond || c.Cell > time.Minute:
		return fmt.Errorf("labbench: Cell = %s: want 200ms..1m", c.Cell)
	case c.Mode != "" && c.Mode != Safe:
		return fmt.Errorf("labbench: Mode = %q: want \"\" (the load matrix) or %q (the SLO-safe load search)", c.Mode, Safe)
	case c.Mode == "" && len(c.Loads) == 0 && len(c.Schedulers) > 0:
		return fmt.Errorf("labbench: Loads is empty: give at least one batch load in percent of the vCPUs")
	case len(c.Workloads) == 0:
		return fmt.Errorf("labbench: Workloads is empty: want some of %s, %s, %s, %s", Probe, HTTP, Msg, Wrk)
	case c.Budget <= 0 || c.HTTPBudget <= 0:
		return fmt.Errorf("labbench: Budget = %s, HTTPBudget = %s: both must be positive", c.Budget, c.HTTPBudget)
	case c.Target <= 0 || c.Target >= 1:
		return fmt.Errorf("labbench: Target = %v: want a fraction between 0 and 1, e.g. 0.99", c.Target)
	case c.HTTPRate < 1 || c.HTTPRate > 100000:
		return fmt.Errorf("labbench: HTTPRate = %d: want 1..100000 requests per second", c.HTTPRate)
	case c.WrkConns < 1 || c.WrkConns > 1000:
		return fmt.Errorf("labbench: WrkConns = %d: want 1..1000 connections", c.WrkConns)
	case c.MsgWorkers < 1 || c.MsgWorkers > 64:
		return fmt.Errorf("labbench: MsgWorkers = %d: want 1..64", c.MsgWorkers)
	case c.MsgPeriod <= 0 || c.MsgWork <= 0 || c.HTTPWork <= 0:
		return fmt.Errorf("labbench: MsgPeriod = %s, MsgWork = %s, HTTPWork = %s: all must be positive", c.MsgPeriod, c.MsgWork, c.HTTPWork)
	case c.ForkExecRate < 1:
		return fmt.Errorf("labbench: ForkExecRate = %d: want at least 1 spawn per second", c.ForkExecRate)
	case c.PipeRounds < 1 || c.PipeReps < 0:
		return fmt.Errorf("labbench: PipeRounds = %d, PipeReps = %d: want PipeRounds >= 1 and PipeReps >= 0", c.PipeRounds, c.PipeReps)
	}
	if c.Mode == Safe {
		if err := c.validateSafe(); err != nil {
			return err
		}
	}
	for i, l := range c.Loads {
		if l < 1 || l > 1000 {
			return fmt.Errorf("labbench: Loads[%d] = %d: want a percentage of the vCPUs in 1..1000", i, l)
		}
	}
	setups := append([]string{EEVDF, EEVDFTuned, EEVDFIdle, SCXSLO}, PeerNames...)
	for i, s := range c.Schedulers {
		if !slices.Contains(setups, s) {
			return fmt.Errorf("labbench: Schedulers[%d] = %q: want one of %s", i, s, strings.Join(setups, ", "))
		}
	}
	for i, p := range c.Plan {
		if !slices.Contains(c.Workloads, p.Workload) || (p.Load != 0 && !slices.Contains(c.Schedulers, p.Scheduler)) || p.Load < 0 || p.Load > 1000 || p.Rep < 0 {
			return fmt.Errorf("labbench: Plan[%d] = %+v: want a rep >= 0, one of Workloads, a load 0..1000 and (loaded) one of Schedulers", i, p)
		}
	}
	for i, w := range c.Workloads {
		if !slices.Contains([]string{Probe, HTTP, Msg, Wrk}, w) {
			return fmt.Errorf("labbench: Workloads[%d] = %q: want %s, %s, %s or %s", i, w, Probe, HTTP, Msg, Wrk)
		}
	}
	return nil
}

// budgetOf is the latency budget a workload's samples are judged by.
func (c Config) budgetOf(workload string) time.Duration {
	if workload == HTTP || workload == Wrk {
		return c.HTTPBudget
	}
	return c.Budget
}
