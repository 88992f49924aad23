package main

import (
	"os"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

func TestMain(m *testing.M) {
	workload.Main()
	os.Exit(m.Run())
}
