package enforcer

import (
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/scxcap"
)

// TestGuestKernelCompatible: every kernel of the lab's matrix is one the
// scheduler supports, so the compatibility gate must accept it and name
// the object it loads. Before the compat object, 6.12-6.18 were refused
// for lacking the ___v2 kfuncs. TestGuestAttachDetach then proves the
// object loads and schedules.
func TestGuestKernelCompatible(t *testing.T) {
	inGuest(t)
	capab, err := scxcap.Probe(scxcap.DefaultPaths)
	if err != nil {
		t.Fatal(err)
	}
	ok, why := capab.Compatible()
	t.Logf("kernel %s: variant %q, degraded %v, refused for %v", capab.KernelRelease, capab.Variant, capab.Degraded, why)
	if !ok || capab.Variant == "" {
		t.Fatalf("kernel %s refused: %v", capab.KernelRelease, why)
	}
	e := startEnforcer(t, Options{Logger: testLogger(t)})
	defer e.Stop()
	waitState(t, "enabled", 5*time.Second)
}
