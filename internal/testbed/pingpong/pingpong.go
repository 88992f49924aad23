// Package pingpong is a context-switch benchmark in the manner of
// `perf bench sched pipe`: two OS threads bounce a byte over a pair of
// pipes with blocking reads, so every round trip is two wakeups and two
// switches. Used to measure what the tracer costs the scheduler path.
package pingpong

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Result is one measurement, as means per round trip.
type Result struct {
	// RoundTrip is wall time: what the workload sees, including waits
	// behind anything else running on the machine.
	RoundTrip time.Duration
	// CPU is the two threads' user and system time. The kernel's work at
	// each wakeup and switch (tracepoints included) runs on these threads
	// while they are busy; waits behind other processes do not count, so
	// it is steadier than RoundTrip on a shared host.
	CPU time.Duration
}

// Run does n round trips and returns their mean duration.
func Run(n int) (time.Duration, error) {
	r, err := Measure(1, n)
	return r.RoundTrip, err
}

// Measure runs pairs ping-pongs of n round trips at once and returns the
// means over all of them. With as many pairs as CPUs every CPU always has
// a task to switch to: switching is saturated, the case where per-switch
// costs show most.
func Measure(pairs, n int) (Result, error) {
	return measure(make([]int, pairs), n, false)
}

// MeasurePinned runs one ping-pong pair of n round trips on each CPU the
// process may use, both threads of a pair pinned to its CPU, and returns
// the means over all of them: saturated switching where every switch is
// local. Unpinned, where the scheduler puts the threads (a pair on one
// CPU or split over two, the latter adding cross-CPU wakeups) changes the
// round trip by a third from one measurement to the next.
func MeasurePinned(n int) (Result, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return Result{}, err
	}
	var cpus []int
	for cpu := 0; cpu < len(set)*64 && len(cpus) < set.Count(); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return measure(cpus, n, true)
}

func measure(cpus []int, n int, pin bool) (Result, error) {
	pairs := len(cpus)
	results := make(chan pairResult, pairs)
	for _, cpu := range cpus {
		go func() {
			if !pin {
				cpu = -1
			}
			results <- runPair(n, cpu)
		}()
	}
	var sum Result
	var errs []error
	for i := 0; i < pairs; i++ {
		r := <-results
		sum.RoundTrip += r.RoundTrip
		sum.CPU += r.CPU
		errs = append(errs, r.err)
	}
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	return Result{RoundTrip: sum.RoundTrip / time.Duration(pairs), CPU: sum.CPU / time.Duration(pairs)}, nil
}

type pairResult struct {
	Result
	err error
}

// runPair runs one ping-pong, both threads on cpu if it is not -1. It
// runs on a goroutine of its own and never unlocks its thread, so no
// thread it pinned goes back to the Go runtime.
func runPair(n, cpu int) pairResult {
	var ab, ba [2]int
	if err := syscall.Pipe(ab[:]); err != nil {
		return pairResult{err: err}
	}
	if err := syscall.Pipe(ba[:]); err != nil {
		syscall.Close(ab[0])
		syscall.Close(ab[1])
		return pairResult{err: err}
	}
	defer func() {
		for _, fd := range []int{ab[0], ab[1], ba[0], ba[1]} {
			syscall.Close(fd)
		}
	}()
	type echoResult struct {
		cpu time.Duration
		err error
	}
	echoed := make(chan echoResult, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := pinThread(cpu); err != nil {
			echoed <- echoResult{err: err}
			return
		}
		start := threadCPU()
		buf := make([]byte, 1)
		for i := 0; i < n; i++ {
			if _, err := syscall.Read(ab[0], buf); err != nil {
				echoed <- echoResult{err: err}
				return
			}
			if _, err := syscall.Write(ba[1], buf); err != nil {
				echoed <- echoResult{err: err}
				return
			}
		}
		echoed <- echoResult{cpu: threadCPU() - start}
	}()
	runtime.LockOSThread() // never unlocked, as above
	if err := pinThread(cpu); err != nil {
		return pairResult{err: err}
	}
	buf := make([]byte, 1)
	cpu0 := threadCPU()
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := syscall.Write(ab[1], buf); err != nil {
			return pairResult{err: err}
		}
		if _, err := syscall.Read(ba[0], buf); err != nil {
			return pairResult{err: err}
		}
	}
	elapsed := time.Since(start)
	used := threadCPU() - cpu0
	e := <-echoed
	if e.err != nil {
		return pairResult{err: e.err}
	}
	per := time.Duration(max(n, 1))
	return pairResult{Result: Result{RoundTrip: elapsed / per, CPU: (used + e.cpu) / per}}
}

// pinThread binds the calling thread to cpu, unless cpu is -1.
func pinThread(cpu int) error {
	if cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pinning a ping-pong thread to CPU %d: %w", cpu, err)
	}
	return nil
}

// threadCPU is the calling thread's user and system time.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
