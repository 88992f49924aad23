package collector

import (
	"os"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestMain lets TestE2EOutput re-run this binary as its probe and hog.
func TestMain(m *testing.M) {
	workload.Main()
	os.Exit(m.Run())
}
