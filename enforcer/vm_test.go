package enforcer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
)

// guestEnv is set inside the VM: the TestGuest* tests run only there.
const guestEnv = "SCX_SLO_ENFORCER_GUEST"

// inGuest skips t unless it runs inside the lab VM.
func inGuest(t *testing.T) {
	t.Helper()
	if os.Getenv(guestEnv) == "" {
		t.Skip("runs inside the lab VM, started by TestVM")
	}
	if _, err := os.Stat("/sys/kernel/sched_ext/state"); err != nil {
		t.Fatalf("guest kernel has no sched_ext: %v", err)
	}
}

// guestResult is what guest tests write to /out/<name>.json for TestVM.
func writeResult(t *testing.T, name string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("/out", name+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVM builds this package's tests as a static binary and runs the
// TestGuest* tests inside the lab's sched_ext kernel, in one boot.
func TestVM(t *testing.T) {
	if os.Getenv(guestEnv) != "" {
		t.Skip("already inside the guest")
	}
	if testing.Short() {
		t.Skip("boots a qemu guest; skipped in -short mode")
	}
	if err := lab.Available(""); err != nil {
		if os.Getenv("SCX_SLO_LAB_REQUIRED") != "" {
			t.Fatalf("lab required but unavailable: %v", err)
		}
		t.Skipf("lab unavailable: %v", err)
	}
	ctx := t.Context()
	k, err := lab.EnsureKernel(ctx, "", t.Output())
	if err != nil {
		t.Fatalf("EnsureKernel: %v", err)
	}
	bin, err := lab.BuildTest(ctx, "github.com/scx-slo/scx-slo/enforcer", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	run := os.Getenv("SCX_SLO_GUEST_RUN")
	if run == "" {
		run = "^TestGuest"
	}
	out := t.TempDir()
	res, err := lab.Run(ctx, lab.Options{
		Kernel:  k,
		Files:   []lab.Copy{{Host: bin, Guest: "/bin/enforcer.test"}},
		Command: []string{"/bin/enforcer.test", "-test.v", "-test.count=1", "-test.run", run},
		Env:     map[string]string{guestEnv: "1"},
		Console: t.Output(),
		OutDir:  out,
		Timeout: 8 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest boot %s, total %s", res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			b, _ := os.ReadFile(filepath.Join(out, e.Name()))
			t.Logf("%s: %s", e.Name(), b)
		}
	}
	if res.ExitCode != 0 {
		t.Fatalf("guest tests failed (exit status %d); see the console above", res.ExitCode)
	}
}
