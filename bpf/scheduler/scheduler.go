package scheduler

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/scx-slo/scx-slo/internal/scxcap"
)

// Spec returns the collection spec of the object built for variant (an
// scxcap.Variant name) for the loader (package enforcer) to patch and
// load. Both objects come from scheduler.bpf.c and have the same maps and
// programs.
func Spec(variant string) (*ebpf.CollectionSpec, error) {
	switch variant {
	case scxcap.VariantV2.Name:
		return loadSched()
	case scxcap.VariantCompat.Name:
		return loadSchedCompat()
	}
	return nil, fmt.Errorf("scheduler object: unknown variant %q", variant)
}

// ObjectFiles returns the object file of each variant (tests read their
// symbols).
func ObjectFiles() map[string]string {
	return map[string]string{scxcap.VariantV2.Name: "sched_bpfel.o", scxcap.VariantCompat.Name: "schedcompat_bpfel.o"}
}

// BandwidthProg is ops.cgroup_set_bandwidth, which the loader drops on
// kernels without that callback (scxcap.FeatureCPUMax).
const BandwidthProg = "slo_cgroup_set_bandwidth"

// Names in the object that the loader depends on.
const (
	OpsMap      = "scx_slo"          // the .struct_ops.link map
	OpsName     = "scx_slo"          // sched_ext_ops.name, shown in /sys/kernel/sched_ext/root/ops
	RmdirProg   = "slo_cgroup_rmdir" // tp_btf cleanup of stats of removed cgroups
	ExitSection = ".data.exit"       // ops.exit's record, read-only for userspace
	KnobSection = ".data.knob"       // test_error_knob
	StatsMap    = "stats"            // per-CPU counters, enum stat_idx order
)

// Objects are what the loader keeps of a loaded scheduler, tagged with
// their names in the object as bpf2go tags its own (Collection.Assign
// fills them; a test checks every tag against the object).
type Objects struct {
	Ops   *ebpf.Map     `ebpf:"scx_slo"`
	Rmdir *ebpf.Program `ebpf:"slo_cgroup_rmdir"`
	Maps
}

// Maps are the maps userspace reads and writes while the scheduler runs,
// and re-adopts from pins after a restart.
type Maps struct {
	CgroupStats *ebpf.Map `ebpf:"cgroup_stats"`
	Slos        *ebpf.Map `ebpf:"slos"`
	Overload    *ebpf.Map `ebpf:"overload"`
	Stats       *ebpf.Map `ebpf:"stats"`      // per-CPU counters, StatNames order
	Exit        *ebpf.Map `ebpf:".data.exit"` // ops.exit's record, read-only for userspace
	Knob        *ebpf.Map `ebpf:".data.knob"` // test_error_knob
	// The per-CPU part of cgroup_stats (bpf/include/wait_slots.h).
	WaitingSlots *ebpf.Map `ebpf:"waiting_slots"`
	HistSlots    *ebpf.Map `ebpf:"hist_slots"`
}

// StatNames names the stats array's slots in enum stat_idx order.
var StatNames = []string{
	"enq_slo", "enq_be", "direct", "kick_preempt", "kick_idle",
	"dispatch_slo", "dispatch_be", "be_bound", "throttle", "unthrottle", "no_ctx", "rescue",
	"preempt_local", "pinned", "kthread", "over_reserve", "steal", "be_guard",
	"keep_prev", "enq_last", "reenq", "early_overload", "hotplug", "pin_preempt",
}

// SwitchPartial is SCX_OPS_SWITCH_PARTIAL: schedule only SCHED_EXT tasks.
const SwitchPartial = 1 << 3

// UserExitInfo is struct user_exit_info (user_exit_info.h), the record
// ops.exit writes into .data.exit.
type UserExitInfo = schedUserExitInfo

// CgCtx mirrors struct cg_ctx, the per-cgroup state in the cg_ctxs map
// (tests inspect it).
type CgCtx = schedCgCtx
