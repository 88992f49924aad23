package policystatus

import (
	"os"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestMain lets the test binary run as a workload (exportertest's probes).
func TestMain(m *testing.M) {
	workload.Main()
	os.Exit(m.Run())
}
