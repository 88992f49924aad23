// Package enforcer loads the scx-slo sched_ext scheduler (bpf/scheduler),
// attaches it, keeps it attached and takes it away again.
//
// Typical use by the exporter:
//
//	e, err := enforcer.New(enforcer.Options{Logger: logger, OnChange: followMode})
//	if err != nil { ... }
//	if err := e.Start(ctx); err != nil { ... } // first attach (or re-adoption) happened
//	defer e.Stop()                             // detaches unless KeepPinned
//	maps, ok := e.Maps()                        // the shared slo maps while attached
//	registry.MustRegister(e)                    // scx_slo_enforcer_* counters
//
// and `scx-slo detach` (or --enforce=false) calls Detach(pinDir).
//
// Options.Guard (optional) is the attainment guard: given the observe-mode
// baseline, it detaches for good when SLO attainment under the scheduler
// stays below it for Guard.Sustain windows (scx_slo_enforcer_guard_detaches_total).
// Stats returns the scheduler's own event counters (enum stat_idx), and
// LastExit what ops.exit recorded at the last ejection.
//
// Pinning: the struct_ops link and the maps userspace uses are pinned
// under Options.PinDir. A new process finding a pinned link whose
// scheduler is still enabled re-adopts it instead of attaching again, so
// an exporter restart does not flap the scheduler (enable_seq unchanged).
//
// Ejection: the kernel may disable the scheduler (watchdog stall, BPF
// error, sysrq). poll(2) on the link does not report that, so a watcher
// polls /sys/kernel/sched_ext/state, root/ops and the exit record that
// ops.exit writes; on ejection it logs the exit kind/reason/message,
// counts it, and re-attaches with exponential backoff (1 s doubling, up to
// MaxReattach attempts in a row; a scheduler that stays up for a minute
// resets the count). A detach from userspace (Detach, i.e. `scx-slo
// detach`, forcing the pinned link off) is the operator's rollback: the
// enforcer then stays detached and the exporter keeps observing.
package enforcer
