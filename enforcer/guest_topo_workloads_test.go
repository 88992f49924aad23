package enforcer

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
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
}

// YieldReport: how long each sched_yield took and how often the task
// found itself on another CPU afterwards.
type YieldReport struct {
	N          int   `json:"n"`
	P50Ns      int64 `json:"p50_ns"`
	P99Ns      int64 `json:"p99_ns"`
	MaxNs      int64 `json:"max_ns"`
	Migrations int   `json:"migrations"`
}

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
	return p
}
