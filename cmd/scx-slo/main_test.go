package main

import (
	"os"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

func TestMain(m *testing.M) {
	exportertest.RunWorkloadIfRequested()
	os.Exit(m.Run())
}
