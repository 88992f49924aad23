package enforcer

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/scx-slo/scx-slo/bpf/scheduler"
)

// ExitInfo is what ops.exit recorded when the kernel disabled the scheduler.
type ExitInfo struct {
	Count  uint64 // exits recorded by this load of the program
	Kind   string // e.g. "error_bpf", "unreg", "error_stall"
	Code   int64
	Reason string
	Msg    string
}

// exitKinds names enum scx_exit_kind (kernel/sched/ext_internal.h); the
// values have been stable since sched_ext was merged.
var exitKinds = map[uint32]string{
	0: "none", 1: "done",
	64: "unreg", 65: "unreg_bpf", 66: "unreg_kern", 67: "sysrq", 68: "parent", 69: "parent_kill",
	1024: "error", 1025: "error_bpf", 1026: "error_stall", 1027: "error_reenq", 1028: "error_rescue",
}

func exitKindName(k uint32) string {
	if n, ok := exitKinds[k]; ok {
		return n
	}
	return fmt.Sprintf("kind_%d", k)
}

// readExit reads the record ops.exit fills (struct user_exit_info, the
// whole .data.exit section).
func readExit(m *ebpf.Map) (ExitInfo, error) {
	var uei scheduler.UserExitInfo
	if err := m.Lookup(uint32(0), &uei); err != nil {
		return ExitInfo{}, fmt.Errorf("reading exit record: %w", err)
	}
	return ExitInfo{
		Count:  uei.Count,
		Kind:   exitKindName(uei.Kind),
		Code:   uei.ExitCode,
		Reason: cstr(uei.Reason[:]),
		Msg:    cstr(uei.Msg[:]),
	}, nil
}

// cstr is the NUL-terminated string at the start of b.
func cstr(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
