package enforcer

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// loaderEnv makes this binary a bare loader process ("keep" pins the
// scheduler, anything else does not) for the SIGKILL test.
const loaderEnv = "SCX_SLO_ENFORCER_LOADER"

// TestMain lets guest tests re-run this binary as a probe, hog or loader.
func TestMain(m *testing.M) {
	workload.Main()
	if mode := os.Getenv(loaderEnv); mode != "" {
		os.Exit(loaderMain(mode == "keep"))
	}
	os.Exit(m.Run())
}

func loaderMain(keep bool) int {
	e, err := New(Options{KeepPinned: keep})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := e.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("attached")
	time.Sleep(time.Hour) // until SIGKILLed
	return 0
}
