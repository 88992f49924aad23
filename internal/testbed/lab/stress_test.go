package lab

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestBootStress boots the guest SCX_SLO_LAB_STRESS times in a row to catch
// rare boot failures (it found the multi-threaded TCG oops, see accel).
// Off by default: each boot costs seconds of CPU.
func TestBootStress(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SCX_SLO_LAB_STRESS"))
	if n <= 0 {
		t.Skip("set SCX_SLO_LAB_STRESS=N to boot the guest N times")
	}
	k := testKernel(t)
	var worst time.Duration
	for i := range n {
		res, err := Run(t.Context(), Options{Kernel: k, Command: []string{"true"}, OutDir: t.TempDir()})
		if err != nil {
			t.Errorf("boot %d of %d: %v", i+1, n, err)
			continue
		}
		if res.ExitCode != 0 {
			t.Errorf("boot %d of %d: true exited with %d", i+1, n, res.ExitCode)
		}
		if res.Attempts > 1 {
			t.Errorf("boot %d of %d: guest died before the command and was booted again", i+1, n)
		}
		worst = max(worst, res.Boot)
	}
	t.Logf("%d boots, slowest boot-to-command %s", n, worst.Round(time.Millisecond))
}
