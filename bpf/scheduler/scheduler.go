package scheduler

import "github.com/cilium/ebpf"

// Spec returns the compiled scheduler's collection spec for the loader
// (package enforcer) to patch and load.
func Spec() (*ebpf.CollectionSpec, error) { return loadSched() }

// Names in the object that the loader depends on.
const (
	OpsMap      = "scx_slo"          // the .struct_ops.link map
	OpsName     = "scx_slo"          // sched_ext_ops.name, shown in /sys/kernel/sched_ext/root/ops
	RmdirProg   = "slo_cgroup_rmdir" // tp_btf cleanup of stats of removed cgroups
	ExitSection = ".data.exit"       // ops.exit's record, read-only for userspace
	KnobSection = ".data.knob"       // test_error_knob
	StatsMap    = "stats"            // per-CPU counters, enum stat_idx order
)

// StatNames names the stats array's slots in enum stat_idx order.
var StatNames = []string{
	"enq_slo", "enq_be", "direct", "kick_preempt", "kick_idle",
	"dispatch_slo", "dispatch_be", "be_bound", "throttle", "unthrottle", "no_ctx", "rescue",
	"preempt_local", "pinned", "kthread", "over_reserve", "steal", "be_guard",
	"keep_prev", "enq_last", "reenq", "early_overload", "hotplug", "pin_preempt",
}

// SwitchPartial is SCX_OPS_SWITCH_PARTIAL: schedule only SCHED_EXT tasks.
const SwitchPartial = 1 << 3

// CgCtx mirrors struct cg_ctx, the per-cgroup state in the cg_ctxs map
// (tests inspect it).
type CgCtx = schedCgCtx
