package enforcer

import (
	"bytes"
	"encoding/binary"
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

// exitLayout holds offsets of the .data.exit variables, taken from the
// program's BTF so the Go side never hard-codes them.
type exitLayout struct {
	size                           uint32
	kind, code, count, reason, msg uint32
	reasonLen, msgLen              uint32
}

func newExitLayout(spec *ebpf.CollectionSpec) (exitLayout, error) {
	var l exitLayout
	m, ok := spec.Maps[scheduler.ExitSection]
	if !ok {
		return l, fmt.Errorf("scheduler object has no %s section", scheduler.ExitSection)
	}
	l.size = m.ValueSize
	get := func(name string) (uint32, uint32, error) {
		v, ok := spec.Variables[name]
		if !ok || v.SectionName != scheduler.ExitSection {
			return 0, 0, fmt.Errorf("scheduler object has no %s in %s", name, scheduler.ExitSection)
		}
		return v.Offset, v.Size(), nil
	}
	var err error
	if l.kind, _, err = get("exit_kind"); err != nil {
		return l, err
	}
	if l.code, _, err = get("exit_code"); err != nil {
		return l, err
	}
	if l.count, _, err = get("exit_count"); err != nil {
		return l, err
	}
	if l.reason, l.reasonLen, err = get("exit_reason"); err != nil {
		return l, err
	}
	if l.msg, l.msgLen, err = get("exit_msg"); err != nil {
		return l, err
	}
	return l, nil
}

func (l exitLayout) read(m *ebpf.Map) (ExitInfo, error) {
	buf := make([]byte, l.size)
	if err := m.Lookup(uint32(0), &buf); err != nil {
		return ExitInfo{}, fmt.Errorf("reading exit record: %w", err)
	}
	cstr := func(off, n uint32) string {
		b := buf[off : off+n]
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return string(b)
	}
	le := binary.LittleEndian
	return ExitInfo{
		Count:  le.Uint64(buf[l.count:]),
		Kind:   exitKindName(le.Uint32(buf[l.kind:])),
		Code:   int64(le.Uint64(buf[l.code:])),
		Reason: cstr(l.reason, l.reasonLen),
		Msg:    cstr(l.msg, l.msgLen),
	}, nil
}
