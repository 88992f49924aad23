// Package monoclock reads CLOCK_MONOTONIC in nanoseconds: the clock
// bpf_ktime_get_ns uses, so userspace can compare its readings with
// timestamps the BPF programs store (last judged wakeup, heartbeat).
package monoclock

import "golang.org/x/sys/unix"

// Now returns CLOCK_MONOTONIC in nanoseconds.
func Now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
