package collector

import (
	"os"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// TestMain lets TestE2EOutput re-run this binary as its probe and hog.
func TestMain(m *testing.M) {
	exportertest.RunWorkloadIfRequested()
	os.Exit(m.Run())
}
