package peers

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

func TestCheckStatic(t *testing.T) {
	static := needs.Command(t, "busybox", "busybox-static")
	if err := CheckStatic(static); err != nil {
		t.Errorf("busybox-static: %v", err)
	}
	dynamic, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckStatic(dynamic); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("%s: %v; want it refused as dynamically linked", dynamic, err)
	}
}

// TestBuild: the cached build (built here under SCX_SLO_LAB_REQUIRED=1,
// as .ci/run does beforehand) comes from the lab kernel's own source
// version, holds both peers as static executables, and build.json names
// their ops and slicing as read from the source.
func TestBuild(t *testing.T) {
	k := labtest.Kernel(t)
	var s *Set
	var err error
	if needs.Required() {
		s, err = Ensure(t.Context(), "", k, t.Output())
	} else {
		s, err = Cached(t.Context(), "", k)
	}
	if errors.Is(err, ErrNotBuilt) || errors.Is(err, exec.ErrNotFound) {
		needs.Part(t, "the sched_ext peers", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.Info.Version != k.PackageVersion() || s.Info.Kernel != k.Release || !strings.HasPrefix(s.Info.Source, "linux-source-") {
		t.Errorf("built from %s %s for %s; want the source package of kernel %s (%s)", s.Info.Source, s.Info.Version, s.Info.Kernel, k.Release, k.Package)
	}
	if s.Info.SliceDflNs <= 0 || s.Info.RecipeSHA256 == "" || !strings.Contains(s.Info.Recipe, "CLANG=clang-19") {
		t.Errorf("build.json lacks the slice default or the recipe: %+v", s.Info)
	}
	for _, n := range Names {
		p, ok := s.Peer(n)
		if !ok || p.Ops == "" || p.Slice == "" {
			t.Errorf("build.json on %s: %+v", n, p)
		}
		if err := CheckStatic(s.Binary(n)); err != nil {
			t.Error(err)
		}
	}
	again, err := Cached(t.Context(), "", k)
	if err != nil || again.Dir != s.Dir {
		t.Errorf("second lookup: %v, dir %v; want the same cache entry %s", err, again, s.Dir)
	}
}
