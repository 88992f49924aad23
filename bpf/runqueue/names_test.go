package runqueue

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestDropReasonsMatchBPF: DropReasons names enum drop_reason's values in
// order, and the drops array has one slot per reason.
func TestDropReasonsMatchBPF(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("drop_reason", &e); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range e.Values {
		if v.Name == "DROP_MAX" {
			if v.Value != uint64(len(DropReasons)) {
				t.Errorf("DROP_MAX is %d, DropReasons has %d names", v.Value, len(DropReasons))
			}
			continue
		}
		if v.Value != uint64(len(names)) {
			t.Errorf("%s is %d, want %d (names are by position)", v.Name, v.Value, len(names))
		}
		names = append(names, strings.ToLower(strings.TrimPrefix(v.Name, "DROP_")))
	}
	if strings.Join(names, ",") != strings.Join(DropReasons, ",") {
		t.Errorf("enum drop_reason is %v, DropReasons %v", names, DropReasons)
	}
	if n := spec.Maps[tracerMapDrops].MaxEntries; n != uint32(len(DropReasons)) {
		t.Errorf("drops has %d slots, DropReasons %d names", n, len(DropReasons))
	}
}
