// Package workload holds the small programs the scheduler tests run in
// the lab VM: a periodic latency probe and a CPU hog. A test binary calls
// Main from TestMain, then starts copies of itself with Command, each in
// the cgroup it names, and reads their JSON report from stdout.
package workload

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// env names the workload a re-executed binary should run.
const env = "SCX_SLO_WORKLOAD"

// GateEnv, set to 1 in a workload's parameters, makes it wait until its
// stdin closes before it starts, so the parent can move it into a cgroup
// first (cgroup v1 has no clone-into-cgroup; see Start).
const GateEnv = "SCX_SLO_WORKLOAD_GATE"

// ProbeReport is the probe's output: how late each periodic wakeup was.
type ProbeReport struct {
	LatenessNs []int64 `json:"lateness_ns"`
}

// HogReport is the hog's output: work done and the longest stretch
// without any progress (its worst wait for a CPU, roughly).
type HogReport struct {
	Chunks   uint64 `json:"chunks"`
	MaxGapNs int64  `json:"max_gap_ns"`
	CPUNs    int64  `json:"cpu_ns"` // CPU time used, from getrusage
	TID      int    `json:"tid"`
}

// registered holds workloads other packages add with Register.
var registered = map[string]func() (any, error){}

// Register adds a workload Main can run, under name; it reads its
// parameters from the environment and returns its JSON report. Call it
// from an init function.
func Register(name string, run func() (any, error)) {
	if name == "probe" || name == "hog" || registered[name] != nil {
		panic("workload: " + name + " registered twice")
	}
	registered[name] = run
}

// Main runs the workload named in the environment and exits; without it,
// it returns and the caller goes on (the test binary's normal path).
func Main() {
	name := os.Getenv(env)
	if name == "" {
		return
	}
	if os.Getenv(GateEnv) == "1" {
		io.Copy(io.Discard, os.Stdin) // returns when the parent closes the pipe
	}
	var out any
	var err error
	switch name {
	case "probe":
		out, err = runProbe()
	case "hog":
		out, err = runHog()
	default:
		run, ok := registered[name]
		if !ok {
			err = fmt.Errorf("%s=%q: no such workload", env, name)
			break
		}
		out, err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

// Command returns a command that re-runs this binary as the named
// workload inside the cgroup open at cgroupFD, with one Go P (fewer
// runtime threads competing with the workload itself). Parameters travel
// as environment variables (see Probe and Hog).
func Command(name string, cgroupFD int, params map[string]string) (*exec.Cmd, error) {
	return CommandWith(name, cgroupFD, 1, params)
}

// CommandWith is Command with procs Go Ps; a negative cgroupFD leaves the
// workload in this process's cgroup.
func CommandWith(name string, cgroupFD, procs int, params map[string]string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), env+"="+name, "GOMAXPROCS="+strconv.Itoa(procs))
	for k, v := range params {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if cgroupFD >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	}
	cmd.Stderr = os.Stderr
	return cmd, nil
}

// DurationParam reads a positive duration parameter from the environment.
func DurationParam(name string) (time.Duration, error) {
	v := os.Getenv(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration like 1ms", name, v)
	}
	return d, nil
}

// IntParam reads a positive integer parameter from the environment.
func IntParam(name string) (int, error) {
	v := os.Getenv(name)
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

// Params reads several parameters and keeps the first error, so a
// workload reads them all and checks once.
type Params struct{ err error }

// Duration is DurationParam; 0 after an earlier error.
func (p *Params) Duration(name string) time.Duration {
	if p.err != nil {
		return 0
	}
	d, err := DurationParam(name)
	p.err = err
	return d
}

// Int is IntParam; 0 after an earlier error.
func (p *Params) Int(name string) int {
	if p.err != nil {
		return 0
	}
	n, err := IntParam(name)
	p.err = err
	return n
}

// Err is the first error met, if any.
func (p *Params) Err() error { return p.err }

// Probe parameters: PROBE_PERIOD (wake every), PROBE_WORK (spin after
// each wakeup), RUN_FOR (total).
func runProbe() (*ProbeReport, error) {
	p := &Params{}
	period := p.Duration("PROBE_PERIOD")
	work := p.Duration("PROBE_WORK")
	total := p.Duration("RUN_FOR")
	if err := p.Err(); err != nil {
		return nil, err
	}
	// Sleep in clock_nanosleep on a locked thread: the Go runtime's own
	// timers wake through epoll with millisecond resolution, which would
	// hide the scheduler's sub-millisecond behaviour.
	runtime.LockOSThread()
	// Long-running probes (exporter tests run one for as long as the test
	// lasts) grow the slice as they go instead of reserving it all.
	rep := &ProbeReport{LatenessNs: make([]int64, 0, min(total/period, 1<<16))}
	pace := NewPacer(period)
	for end := MonotonicNs() + int64(total); MonotonicNs() < end; {
		rep.LatenessNs = append(rep.LatenessNs, pace.Wait())
		spin(work)
	}
	return rep, nil
}

// Hog parameters: RUN_FOR, NICE (optional, -20..19) and HOG_THREADS
// (optional, default 1: more threads spin alongside the measured one;
// start the hog with that many Go Ps, see CommandWith).
func runHog() (*HogReport, error) {
	total, err := DurationParam("RUN_FOR")
	if err != nil {
		return nil, err
	}
	if os.Getenv("HOG_THREADS") != "" {
		threads, err := IntParam("HOG_THREADS")
		if err != nil {
			return nil, err
		}
		for i := 1; i < threads; i++ {
			go func() {
				for {
					spinIters(20000)
				}
			}()
		}
	}
	if v := os.Getenv("NICE"); v != "" {
		nice, err := strconv.Atoi(v)
		if err != nil || nice < -20 || nice > 19 {
			return nil, fmt.Errorf("NICE=%q: want an integer in [-20, 19]", v)
		}
		// Nice is per thread on Linux: pin the spinning goroutine to this one.
		runtime.LockOSThread()
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, nice); err != nil {
			return nil, fmt.Errorf("setpriority(%d): %w", nice, err)
		}
	}
	rep := &HogReport{TID: unix.Gettid()}
	start := time.Now()
	last := start
	for {
		spinIters(20000)
		now := time.Now()
		rep.Chunks++
		if gap := int64(now.Sub(last)); gap > rep.MaxGapNs {
			rep.MaxGapNs = gap
		}
		last = now
		if now.Sub(start) >= total {
			break
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		rep.CPUNs = ru.Utime.Nano() + ru.Stime.Nano()
	}
	return rep, nil
}

var sink uint64

func spinIters(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
}

func spin(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		spinIters(100)
	}
}

// Summary condenses a probe run.
type Summary struct {
	N          int     `json:"n"`
	OverBudget float64 `json:"over_budget"` // fraction of wakeups later than the budget
	P50Ns      int64   `json:"p50_ns"`
	P99Ns      int64   `json:"p99_ns"`
	MaxNs      int64   `json:"max_ns"`
}

// Summarize computes the fraction over budget and percentiles.
func Summarize(lateness []int64, budget time.Duration) Summary {
	s := Summary{N: len(lateness)}
	if len(lateness) == 0 {
		return s
	}
	v := append([]int64(nil), lateness...)
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	over := 0
	for _, x := range v {
		if x > int64(budget) {
			over++
		}
	}
	s.OverBudget = float64(over) / float64(len(v))
	s.P50Ns = v[len(v)/2]
	s.P99Ns = v[min(len(v)-1, len(v)*99/100)]
	s.MaxNs = v[len(v)-1]
	return s
}
