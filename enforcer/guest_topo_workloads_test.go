package enforcer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// Workloads of the issue-11 tests (guest_topo_test.go), run like probe and
// hog by re-executing the test binary.
func init() {
	workload.Register("yielder", runYielder)
	workload.Register("rtspin", runRTSpin)
	workload.Register("stallprobe", runStallProbe)
	workload.Register("gaphog", runGapHog)
}

// GapHogReport: a gap hog's progress inside the window the test opened.
type GapHogReport struct {
	Chunks      uint64 `json:"chunks"`
	MaxGapNs    int64  `json:"max_gap_ns"` // longest stretch without progress
	CPUNs       int64  `json:"cpu_ns"`     // thread CPU time used
	WindowNs    int64  `json:"window_ns"`
	CPUsAllowed int    `json:"cpus_allowed"`
	// The spinning thread's context switches in the window: voluntary
	// ones are the Go runtime handing its P to another thread of the
	// process (GC, preemption), each a wait in the queues as a new task.
	Nvcsw  int64 `json:"nvcsw"`
	Nivcsw int64 `json:"nivcsw"`
	// Every stretch of at least gapRecordNs without progress, as
	// [start, end] monotonic times: with the other hogs' stretches they
	// say whether the CPU ran something else meanwhile (the scheduler's
	// doing) or nothing (the emulator did not run the vCPU).
	Gaps [][2]int64 `json:"gaps,omitempty"`
}

// gapRecordNs: shorter stretches are a context switch or two under TCG.
const gapRecordNs = int64(2 * time.Millisecond)

// Share is the fraction of one CPU it used in the window.
func (r GapHogReport) Share(t *testing.T) float64 {
	return cpuShare(t, time.Duration(r.CPUNs), time.Duration(r.WindowNs))
}

var clockRate struct {
	once sync.Once
	v    float64
}

// cpuClockRate is how fast CPU time (sched_clock, TSC-based) runs against
// CLOCK_MONOTONIC (hpet) in this guest: TSC calibration under emulation
// on a busy host is off by up to ~1.5x, differently in every boot. A
// SCHED_FIFO thread spins 300 ms (nothing sched_ext does can stop it) and
// compares its CPU time with the wall time; the thread then exits.
func cpuClockRate(t *testing.T) float64 {
	t.Helper()
	clockRate.once.Do(func() {
		done := make(chan float64)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread exits with its RT policy
			if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 30}, 0); err != nil {
				done <- 0
				return
			}
			c0, w0 := threadCPU(), workload.MonotonicNs()
			for workload.MonotonicNs()-w0 < int64(300*time.Millisecond) {
			}
			done <- float64(threadCPU()-c0) / float64(workload.MonotonicNs()-w0)
		}()
		clockRate.v = <-done
	})
	if clockRate.v <= 0 {
		t.Fatal("measuring the CPU clock rate: SCHED_FIFO refused")
	}
	return clockRate.v
}

// cpuShare is cpu (CPU time) as a fraction of one CPU over wall.
func cpuShare(t *testing.T, cpu, wall time.Duration) float64 {
	return float64(cpu) / float64(max(wall, 1)) / cpuClockRate(t)
}

// runGapHog spins and measures only inside a window the test sets with
// files in CTL_DIR (see hogCtl): it announces itself with ready.<pid>,
// counts from the time written to "open" and stops at the time written
// to "close", so hogs that started at different times (Go processes
// start slowly under TCG) are compared over the same span.
func runGapHog() (any, error) {
	dir := os.Getenv("CTL_DIR")
	if dir == "" {
		return nil, fmt.Errorf("CTL_DIR is empty")
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	rep := &GapHogReport{CPUsAllowed: set.Count()}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ready.%d", os.Getpid())), nil, 0o644); err != nil {
		return nil, err
	}
	var open, last, checked, cpu0 int64
	var ru0 unix.Rusage
	for {
		spinIters(20000)
		now := workload.MonotonicNs()
		// Look at the files every 10 ms, and after any long stretch
		// without the CPU, which may have crossed the close.
		if now-checked >= int64(10*time.Millisecond) || (open > 0 && now-last > int64(10*time.Millisecond)) {
			checked = now
			if open == 0 {
				if open = readNs(filepath.Join(dir, "open")); open > 0 {
					last, cpu0 = open, threadCPU()
					unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
				}
				continue
			}
			if closeAt := readNs(filepath.Join(dir, "close")); closeAt > 0 {
				rep.MaxGapNs = max(rep.MaxGapNs, closeAt-last)
				if closeAt-last >= gapRecordNs {
					rep.Gaps = append(rep.Gaps, [2]int64{last, closeAt})
				}
				rep.CPUNs = threadCPU() - cpu0
				rep.WindowNs = closeAt - open
				var ru unix.Rusage
				unix.Getrusage(unix.RUSAGE_THREAD, &ru)
				rep.Nvcsw, rep.Nivcsw = ru.Nvcsw-ru0.Nvcsw, ru.Nivcsw-ru0.Nivcsw
				return rep, nil
			}
		}
		if open > 0 {
			rep.Chunks++
			rep.MaxGapNs = max(rep.MaxGapNs, now-last)
			if now-last >= gapRecordNs {
				rep.Gaps = append(rep.Gaps, [2]int64{last, now})
			}
			last = now
		}
	}
}

// readNs reads a monotonic time a test wrote to path; 0 if not there yet.
func readNs(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func threadCPU() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

var sink uint64

func spinIters(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink = x
}

// hogCtl opens and closes the measuring window of a set of gap hogs.
type hogCtl struct{ dir string }

func newHogCtl(t *testing.T) *hogCtl { return &hogCtl{dir: t.TempDir()} }

func (c *hogCtl) params() map[string]string { return map[string]string{"CTL_DIR": c.dir} }

// waitReady waits until n gap hogs run.
func (c *hogCtl) waitReady(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d gap hogs to start", n), time.Minute, func() bool {
		m, _ := filepath.Glob(filepath.Join(c.dir, "ready.*"))
		return len(m) >= n
	})
}

func (c *hogCtl) mark(t *testing.T, name string) {
	t.Helper()
	tmp := filepath.Join(c.dir, name+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(workload.MonotonicNs(), 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, name)); err != nil {
		t.Fatal(err)
	}
}

func (c *hogCtl) open(t *testing.T)  { c.mark(t, "open") }
func (c *hogCtl) close(t *testing.T) { c.mark(t, "close") }

func waitGapHog(t *testing.T, p *proc) GapHogReport {
	t.Helper()
	var r GapHogReport
	if err := p.wait(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// YieldReport: how long each sched_yield took and how often the task
// found itself on another CPU afterwards.
type YieldReport struct {
	N          int   `json:"n"`
	P50Ns      int64 `json:"p50_ns"`
	P99Ns      int64 `json:"p99_ns"`
	MaxNs      int64 `json:"max_ns"`
	Slow       int   `json:"slow"` // yields that took over slowYield
	Migrations int   `json:"migrations"`
}

// slowYield: a sched_yield with nothing else runnable takes a few
// microseconds under TCG (EEVDF: p50 3-4 us); one that took longer than
// this waited for something, e.g. an interrupt to wake its idle CPU.
const slowYield = 100 * time.Microsecond

// runYielder calls sched_yield YIELDS times on one locked thread. With
// nothing else runnable on its CPU every call should return at once.
func runYielder() (any, error) {
	n, err := workload.IntParam("YIELDS")
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	d := make([]int64, n)
	rep := &YieldReport{N: n}
	cpu := getcpu()
	for i := range d {
		t0 := workload.MonotonicNs()
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		d[i] = workload.MonotonicNs() - t0
		if d[i] > int64(slowYield) {
			rep.Slow++
		}
		if c := getcpu(); c != cpu {
			rep.Migrations++
			cpu = c
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	rep.P50Ns, rep.P99Ns, rep.MaxNs = d[n/2], d[min(n-1, n*99/100)], d[n-1]
	return rep, nil
}

func getcpu() int {
	var cpu uint32
	unix.Syscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0)
	return int(cpu)
}

// setAffinity confines the calling thread to the CPUs in list ("1" or "1,2").
func setAffinity(list string) error {
	var set unix.CPUSet
	for _, f := range strings.Split(list, ",") {
		c, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("CPU list %q: %v", list, err)
		}
		set.Set(c)
	}
	return unix.SchedSetaffinity(0, &set)
}

// alignedSlot is the first multiple of period after now, plus offset:
// two workloads with the same period wake at the same instants.
func alignedSlot(now, period, offset int64) int64 {
	return (now/period+1)*period + offset
}

// runRTSpin is a SCHED_FIFO task on RT_CPU that, once per RT_PERIOD (at
// multiples of it, plus RT_OFFSET), spins for RT_BURST; RUN_FOR in total.
func runRTSpin() (any, error) {
	p := &workload.Params{}
	period, burst, offset := p.Duration("RT_PERIOD"), p.Duration("RT_BURST"), p.Duration("RT_OFFSET")
	total := p.Duration("RUN_FOR")
	if err := p.Err(); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	if err := setAffinity(os.Getenv("RT_CPU")); err != nil {
		return nil, err
	}
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 50}, 0); err != nil {
		return nil, fmt.Errorf("SCHED_FIFO: %w", err)
	}
	bursts := 0
	for end := workload.MonotonicNs() + int64(total); workload.MonotonicNs() < end; bursts++ {
		workload.SleepUntil(alignedSlot(workload.MonotonicNs(), int64(period), int64(offset)))
		for stop := workload.MonotonicNs() + int64(burst); workload.MonotonicNs() < stop; {
		}
	}
	return map[string]int{"bursts": bursts}, nil
}

// StallReport: per period, how long after its slot the stall probe
// finished PROBE_WORK of spinning; a task left waiting in a CPU's local
// queue behind an RT task finishes late even if it woke on time.
type StallReport struct {
	N        int   `json:"n"`
	P50Ns    int64 `json:"p50_done_ns"`
	P90Ns    int64 `json:"p90_done_ns"`
	MaxNs    int64 `json:"max_done_ns"`
	OnFirst  int   `json:"on_first_cpu"` // periods that ended on the first CPU of PROBE_CPUS
	WorkNs   int64 `json:"work_ns"`
	PeriodNs int64 `json:"period_ns"`
}

// runStallProbe wakes at multiples of PROBE_PERIOD and spins PROBE_WORK
// (CPU time, not wall time). It starts on the first CPU of PROBE_CPUS,
// then may use all of them. Timer slack 1 ns: it must wake at its slot.
func runStallProbe() (any, error) {
	p := &workload.Params{}
	period, work, total := p.Duration("PROBE_PERIOD"), p.Duration("PROBE_WORK"), p.Duration("RUN_FOR")
	if err := p.Err(); err != nil {
		return nil, err
	}
	cpus := os.Getenv("PROBE_CPUS")
	first, _, _ := strings.Cut(cpus, ",")
	runtime.LockOSThread()
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	if err := setAffinity(first); err != nil {
		return nil, err
	}
	firstCPU, _ := strconv.Atoi(first)
	rep := &StallReport{WorkNs: int64(work), PeriodNs: int64(period)}
	var done []int64
	widened := false
	for end := workload.MonotonicNs() + int64(total); workload.MonotonicNs() < end; {
		slot := alignedSlot(workload.MonotonicNs(), int64(period), 0)
		workload.SleepUntil(slot)
		if !widened {
			// The timer of the first period was armed on the first CPU.
			if err := setAffinity(cpus); err != nil {
				return nil, err
			}
			widened = true
		}
		spinCPU(work)
		done = append(done, workload.MonotonicNs()-slot)
		if getcpu() == firstCPU {
			rep.OnFirst++
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	rep.N = len(done)
	if rep.N > 0 {
		rep.P50Ns, rep.P90Ns, rep.MaxNs = done[rep.N/2], done[rep.N*9/10], done[rep.N-1]
	}
	return rep, nil
}

// spinCPU spins until the thread has used d of CPU time.
func spinCPU(d time.Duration) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	for end := ts.Nano() + int64(d); ts.Nano() < end; unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) {
	}
}

// startOn is start with the workload confined to cpus (a taskset -c list)
// from its first instruction: every thread it makes inherits that.
func startOn(t *testing.T, name string, cg *cgroup, cpus string, params map[string]string) *proc {
	t.Helper()
	cmd, err := workload.Command(name, cg.fd, params)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		t.Fatalf("taskset (busybox) in the guest: %v", err)
	}
	cmd.Args = append([]string{"taskset", "-c", cpus, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = ts
	p := &proc{cmd: cmd}
	cmd.Stdout = &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s on CPUs %s in %s: %v", name, cpus, cg.path, err)
	}
	// A test that failed before its window closed leaves gap hogs
	// spinning: the next tests would run beside them.
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// intersect is the overlap of two sorted lists of disjoint [start, end] intervals.
func intersect(x, y [][2]int64) [][2]int64 {
	var out [][2]int64
	for i, j := 0, 0; i < len(x) && j < len(y); {
		if lo, hi := max(x[i][0], y[j][0]), min(x[i][1], y[j][1]); lo < hi {
			out = append(out, [2]int64{lo, hi})
		}
		if x[i][1] < y[j][1] {
			i++
		} else {
			j++
		}
	}
	return out
}

// busyGap is the longest of r's gaps counted only where at least one of
// the others (hogs sharing its CPU) made progress: how long the scheduler
// kept r waiting while it ran their work, with the stretches where none
// of them ran (the emulator did not run the vCPU) left out. The second
// result is that gap's wall-clock length.
func busyGap(r GapHogReport, others []GapHogReport) (busy, wall int64) {
	for _, g := range r.Gaps {
		if b := g[1] - g[0] - stalledIn(g, others); b > busy {
			busy, wall = b, g[1]-g[0]
		}
	}
	return busy, wall
}

// maxGap is r's longest gap.
func maxGap(r GapHogReport) [2]int64 {
	var m [2]int64
	for _, g := range r.Gaps {
		if g[1]-g[0] > m[1]-m[0] {
			m = g
		}
	}
	return m
}

// stalledIn is how much of g every one of rs spent in a gap too.
func stalledIn(g [2]int64, rs []GapHogReport) int64 {
	idle := [][2]int64{g}
	for _, r := range rs {
		idle = intersect(idle, r.Gaps)
	}
	var n int64
	for _, iv := range idle {
		n += iv[1] - iv[0]
	}
	return n
}
