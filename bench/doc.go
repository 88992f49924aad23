// Package bench holds the lab benchmark: scx-slo against EEVDF for
// latency-sensitive work next to CPU batch load, in the sched_ext lab VM.
// The code lives in internal/testbed/labbench; this package is its entry points:
// BenchmarkLab (make bench, the full matrix, results in results/<date>/),
// TestSmoke (CI: every cell once, short) and TestGuest (the guest side).
// See README.md.
package bench
