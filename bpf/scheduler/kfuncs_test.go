package scheduler

import (
	"debug/elf"
	"slices"
	"testing"

	"github.com/scx-slo/scx-slo/internal/scxcap"
)

// TestRequiredKfuncsMatchObject keeps scxcap.RequiredKfuncs (what the
// capability check looks for) equal to the kfuncs the object really
// calls, so the enforcer never loads on a kernel that lacks one.
func TestRequiredKfuncsMatchObject(t *testing.T) {
	f, err := elf.Open("sched_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, s := range syms {
		// Extern kfuncs are the object's undefined global symbols.
		if s.Section == elf.SHN_UNDEF && elf.ST_BIND(s.Info) == elf.STB_GLOBAL && s.Name != "" {
			used = append(used, s.Name)
		}
	}
	required := slices.Clone(scxcap.RequiredKfuncs)
	slices.Sort(used)
	slices.Sort(required)
	if !slices.Equal(used, required) {
		t.Errorf("kfuncs called by the scheduler:\n  %v\nscxcap.RequiredKfuncs:\n  %v", used, required)
	}
}
