// Package pingpong is a context-switch benchmark in the manner of
// `perf bench sched pipe`: two OS threads bounce a byte over a pair of
// pipes with blocking reads, so every round trip is two wakeups and two
// switches. Used to measure what the tracer costs the scheduler path.
package pingpong

import (
	"errors"
	"runtime"
	"syscall"
	"time"
)

// Run does n round trips and returns their mean duration.
func Run(n int) (time.Duration, error) {
	var ab, ba [2]int
	if err := syscall.Pipe(ab[:]); err != nil {
		return 0, err
	}
	if err := syscall.Pipe(ba[:]); err != nil {
		return 0, err
	}
	defer func() {
		for _, fd := range []int{ab[0], ab[1], ba[0], ba[1]} {
			syscall.Close(fd)
		}
	}()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		buf := make([]byte, 1)
		for i := 0; i < n; i++ {
			if _, err := syscall.Read(ab[0], buf); err != nil {
				errc <- err
				return
			}
			if _, err := syscall.Write(ba[1], buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 1)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := syscall.Write(ab[1], buf); err != nil {
			return 0, err
		}
		if _, err := syscall.Read(ba[0], buf); err != nil {
			return 0, err
		}
	}
	elapsed := time.Since(start)
	if err := <-errc; err != nil {
		return 0, err
	}
	return elapsed / time.Duration(n), nil
}

// RunPairs runs pairs ping-pongs of n round trips at once and returns the
// mean round trip over all of them. With as many pairs as CPUs every CPU
// always has a task to switch to: switching is saturated, the case where
// per-switch costs show most.
func RunPairs(pairs, n int) (time.Duration, error) {
	type result struct {
		d   time.Duration
		err error
	}
	results := make(chan result, pairs)
	for i := 0; i < pairs; i++ {
		go func() {
			d, err := Run(n)
			results <- result{d, err}
		}()
	}
	var sum time.Duration
	var errs []error
	for i := 0; i < pairs; i++ {
		r := <-results
		sum += r.d
		errs = append(errs, r.err)
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return sum / time.Duration(pairs), nil
}
