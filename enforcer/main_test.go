package enforcer

import (
	"os"
	"testing"

	"github.com/scx-slo/scx-slo/internal/workload"
)

// TestMain lets guest tests re-run this binary as a probe or hog.
func TestMain(m *testing.M) {
	workload.Main()
	os.Exit(m.Run())
}
