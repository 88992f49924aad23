package scheduler

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestStatNamesMatchBPF: StatNames names enum stat_idx's values in order,
// and the stats array has one slot per name.
func TestStatNamesMatchBPF(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
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
func TestObjectsTagsNameTheObject(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
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
