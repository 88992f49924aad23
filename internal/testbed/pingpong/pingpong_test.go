package pingpong

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRoundTrips(t *testing.T) {
	d, err := Run(1000)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("mean round trip %v", d)
	}
}

func TestMeasureInPairs(t *testing.T) {
	r, err := Measure(3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r.RoundTrip <= 0 || r.CPU <= 0 {
		t.Fatalf("mean round trip %v, CPU %v", r.RoundTrip, r.CPU)
	}
	// Two threads cannot use more than twice the wall time.
	if r.CPU > 2*r.RoundTrip {
		t.Errorf("CPU per round trip %v exceeds twice its wall time %v", r.CPU, r.RoundTrip)
	}
}

// TestMeasurePinned checks that each pair's threads run on its own CPU:
// every thread's affinity is one CPU, and the pairs cover the CPUs the
// process may use.
func TestMeasurePinned(t *testing.T) {
	r, err := MeasurePinned(1000)
	if err != nil {
		t.Fatal(err)
	}
	if r.RoundTrip <= 0 || r.CPU <= 0 {
		t.Fatalf("mean round trip %v, CPU %v", r.RoundTrip, r.CPU)
	}
	done := make(chan unix.CPUSet)
	go func() {
		runtime.LockOSThread() // pinned below: let the thread exit with the goroutine
		if err := pinThread(0); err != nil {
			t.Error(err)
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			t.Error(err)
		}
		done <- set
	}()
	if set := <-done; set.Count() != 1 || !set.IsSet(0) {
		t.Errorf("a thread pinned to CPU 0 may run on %d CPUs (CPU 0: %v)", set.Count(), set.IsSet(0))
	}
}
