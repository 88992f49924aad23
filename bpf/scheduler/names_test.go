package scheduler

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/scx-slo/scx-slo/internal/scxcap"
)

// TestStatNamesMatchBPF: StatNames names enum stat_idx's values in order,
// and the stats array has one slot per name.
func TestStatNamesMatchBPF(t *testing.T) { forEachVariant(t, checkStatNamesMatchBPF) }

func checkStatNamesMatchBPF(t *testing.T, spec *ebpf.CollectionSpec) {
	var e *btf.Enum
	if err := spec.Types.TypeByName("stat_idx", &e); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range e.Values {
		if v.Name == "STAT_NR" {
			if v.Value != uint64(len(StatNames)) {
				t.Errorf("STAT_NR is %d, StatNames has %d names", v.Value, len(StatNames))
			}
			continue
		}
		if v.Value != uint64(len(names)) {
			t.Errorf("%s is %d, want %d (names are by position)", v.Name, v.Value, len(names))
		}
		names = append(names, strings.ToLower(strings.TrimPrefix(v.Name, "STAT_")))
	}
	if strings.Join(names, ",") != strings.Join(StatNames, ",") {
		t.Errorf("enum stat_idx is %v, StatNames %v", names, StatNames)
	}
	if n := spec.Maps[StatsMap].MaxEntries; n != uint32(len(StatNames)) {
		t.Errorf("%s has %d slots, StatNames %d names", StatsMap, n, len(StatNames))
	}
}

// TestObjectsTagsNameTheObject: every ebpf tag of Objects names a map or
// program of the compiled scheduler, so Collection.Assign cannot fail on a
// rename.
func TestObjectsTagsNameTheObject(t *testing.T) { forEachVariant(t, checkObjectsTagsNameTheObject) }

func checkObjectsTagsNameTheObject(t *testing.T, spec *ebpf.CollectionSpec) {
	var check func(reflect.Type)
	check = func(typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Anonymous {
				check(f.Type)
				continue
			}
			name := f.Tag.Get("ebpf")
			switch f.Type {
			case reflect.TypeFor[*ebpf.Map]():
				if spec.Maps[name] == nil {
					t.Errorf("%s: the scheduler has no map %q", f.Name, name)
				}
			case reflect.TypeFor[*ebpf.Program]():
				if spec.Programs[name] == nil {
					t.Errorf("%s: the scheduler has no program %q", f.Name, name)
				}
			default:
				t.Errorf("%s: unexpected field type %s", f.Name, f.Type)
			}
		}
	}
	check(reflect.TypeFor[Objects]())
}

// TestExitRecordLayout: .data.exit holds exactly one struct
// user_exit_info, at the offsets the separate variables of earlier
// releases had, so an exporter reads the record of a scheduler that an
// older one pinned.
func TestExitRecordLayout(t *testing.T) { forEachVariant(t, checkExitRecordLayout) }

func checkExitRecordLayout(t *testing.T, spec *ebpf.CollectionSpec) {
	v, ok := spec.Variables["uei"]
	if !ok || v.SectionName != ExitSection || v.Offset != 0 {
		t.Fatalf("uei: %+v, want the start of %s", v, ExitSection)
	}
	if size, goSize := spec.Maps[ExitSection].ValueSize, reflect.TypeFor[UserExitInfo]().Size(); uintptr(size) != goSize {
		t.Errorf("%s is %d bytes, UserExitInfo %d", ExitSection, size, goSize)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("user_exit_info", &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"kind": 0, "exit_code": 8, "count": 16, "reason": 24, "msg": 152}
	for _, m := range st.Members {
		if off, ok := want[m.Name]; !ok || m.Offset.Bytes() != off {
			t.Errorf("user_exit_info.%s at %d, want %d", m.Name, m.Offset.Bytes(), off)
		}
		delete(want, m.Name)
	}
	for name := range want {
		t.Errorf("user_exit_info has no member %s", name)
	}
}

// forEachVariant runs check on the object of every scxcap.Variant.
func forEachVariant(t *testing.T, check func(*testing.T, *ebpf.CollectionSpec)) {
	for _, v := range scxcap.Variants {
		t.Run(v.Name, func(t *testing.T) {
			spec, err := Spec(v.Name)
			if err != nil {
				t.Fatal(err)
			}
			check(t, spec)
		})
	}
}
