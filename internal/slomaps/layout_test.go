package slomaps_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/bpf/scheduler"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// specs returns the compiled header alone and both programs that include it.
func specs(t *testing.T) map[string]*ebpf.CollectionSpec {
	t.Helper()
	out := map[string]*ebpf.CollectionSpec{}
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){
		"slo_account.h":    slomaps.AccountSpec,
		"runqueue":         runqueue.Spec,
		"scheduler":        func() (*ebpf.CollectionSpec, error) { return scheduler.Spec("v2") },
		"scheduler-compat": func() (*ebpf.CollectionSpec, error) { return scheduler.Spec("compat") },
	} {
		s, err := load()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = s
	}
	return out
}

func btfStruct(t *testing.T, spec *ebpf.CollectionSpec, object, name string) *btf.Struct {
	t.Helper()
	var st *btf.Struct
	if err := spec.Types.TypeByName(name, &st); err != nil {
		t.Fatalf("%s: struct %s: %v", object, name, err)
	}
	return st
}

// goName is bpf2go's name for a C member: last_judged_ns is LastJudgedNs.
func goName(c string) string {
	var b strings.Builder
	for _, part := range strings.Split(c, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// TestLayoutMatchesBPF checks the Go types against struct cg_stats,
// slo_entry, waiting_slot and hist_slot as compiled into the headers' own
// object and into both programs: every member's name, offset and size, so a field added,
// resized or reordered on one side fails here rather than as garbage in
// metrics.
func TestLayoutMatchesBPF(t *testing.T) {
	all := specs(t)
	for _, c := range []struct {
		name string
		goT  reflect.Type
	}{
		{"cg_stats", reflect.TypeFor[slomaps.Stats]()},
		{"slo_entry", reflect.TypeFor[slomaps.Entry]()},
		{"waiting_slot", reflect.TypeFor[slomaps.WaitingSlot]()},
		{"hist_slot", reflect.TypeFor[slomaps.HistSlot]()},
	} {
		var fields []reflect.StructField
		for i := 0; i < c.goT.NumField(); i++ {
			if f := c.goT.Field(i); f.Name != "_" {
				fields = append(fields, f)
			}
		}
		for object, spec := range all {
			st := btfStruct(t, spec, object, c.name)
			if uintptr(st.Size) != c.goT.Size() {
				t.Errorf("%s: struct %s is %d bytes, Go %s %d", object, c.name, st.Size, c.goT, c.goT.Size())
			}
			if len(st.Members) != len(fields) {
				t.Errorf("%s: struct %s has %d members, Go %s %d fields", object, c.name, len(st.Members), c.goT, len(fields))
				continue
			}
			for i, m := range st.Members {
				f := fields[i]
				size, err := btf.Sizeof(m.Type)
				if err != nil {
					t.Fatal(err)
				}
				if goName(m.Name) != f.Name || uintptr(m.Offset.Bytes()) != f.Offset || uintptr(size) != f.Type.Size() {
					t.Errorf("%s: %s.%s at %d (%d bytes), Go %s at %d (%d bytes)",
						object, c.name, m.Name, m.Offset.Bytes(), size, f.Name, f.Offset, f.Type.Size())
				}
			}
		}
	}
}

// TestMaxSlotsMatchesBPF: slos and overload have SLO_MAX_SLOTS entries in
// every object, the number slosync hands out slots up to.
func TestMaxSlotsMatchesBPF(t *testing.T) {
	for object, spec := range specs(t) {
		for _, m := range []string{"slos", "overload"} {
			ms, ok := spec.Maps[m]
			if !ok {
				t.Errorf("%s has no map %s", object, m)
				continue
			}
			if ms.MaxEntries != slomaps.MaxSlots {
				t.Errorf("%s: map %s has %d entries, slomaps.MaxSlots is %d", object, m, ms.MaxEntries, slomaps.MaxSlots)
			}
		}
	}
}
