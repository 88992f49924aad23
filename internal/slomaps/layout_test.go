package slomaps_test

import (
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/bpf/scheduler"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// TestLayoutMatchesBPF compares the Go mirrors with the structs as compiled
// into both BPF objects (their BTF), so a field added on one side only
// fails here rather than as garbage in metrics.
func TestLayoutMatchesBPF(t *testing.T) {
	rq, err := runqueue.Spec()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scheduler.Spec()
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]*ebpf.CollectionSpec{"runqueue": rq, "scheduler": sc} {
		for _, c := range []struct {
			btfName string
			goSize  uintptr
		}{
			{"cg_stats", unsafe.Sizeof(slomaps.Stats{})},
			{"slo_entry", unsafe.Sizeof(slomaps.Entry{})},
		} {
			var st *btf.Struct
			if err := spec.Types.TypeByName(c.btfName, &st); err != nil {
				t.Fatalf("%s: %s: %v", name, c.btfName, err)
			}
			if uintptr(st.Size) != c.goSize {
				t.Errorf("%s: struct %s is %d bytes in BPF, %d in Go", name, c.btfName, st.Size, c.goSize)
			}
		}
	}
}
