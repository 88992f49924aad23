package workload

import (
	"time"

	"golang.org/x/sys/unix"
)

// MonotonicNs reads CLOCK_MONOTONIC, the clock the kernel's scheduler
// tracepoints and clock_nanosleep use.
func MonotonicNs() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// SleepUntil sleeps in clock_nanosleep until the absolute monotonic time
// ns: the Go runtime's own timers wake through the netpoller with coarser
// resolution and would hide sub-millisecond scheduling behaviour.
func SleepUntil(ns int64) {
	ts := unix.NsecToTimespec(ns)
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
	}
}

// Pacer runs a loop once per period. When the loop body overran the next
// slot, Wait skips the missed slots rather than running a burst of
// catch-up rounds, so one stall is measured once (as the wakeup's
// lateness), not again as the next rounds' lateness.
type Pacer struct {
	period int64
	next   int64
}

// NewPacer starts the schedule one period from now.
func NewPacer(period time.Duration) *Pacer {
	return &Pacer{period: int64(period), next: MonotonicNs() + int64(period)}
}

// Wait sleeps until the next slot and returns how late it woke (ns).
func (p *Pacer) Wait() int64 {
	if now := MonotonicNs(); now > p.next {
		p.next = now + p.period
	}
	slot := p.next
	SleepUntil(slot)
	p.next = slot + p.period
	return MonotonicNs() - slot
}
