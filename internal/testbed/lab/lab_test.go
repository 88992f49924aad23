package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// testKernel returns the lab kernel, skipping when the machine cannot run
// the lab at all (fails instead under SCX_SLO_LAB_REQUIRED=1).
func testKernel(t *testing.T) *Kernel {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a qemu guest; skipped in -short mode")
	}
	needs.Part(t, "the lab VM", Available(""))
	start := time.Now()
	k, err := EnsureKernel(t.Context(), "", testWriter{t})
	if err != nil {
		t.Fatalf("EnsureKernel: %v", err)
	}
	t.Logf("kernel %s ready in %s", k.Release, time.Since(start).Round(time.Millisecond))
	return k
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestGuestReportsStateAndFiles(t *testing.T) {
	k := testKernel(t)
	res, err := Run(t.Context(), Options{
		Kernel: k,
		Command: []string{`
cat /sys/kernel/sched_ext/state > /out/sched_ext_state
cat /sys/fs/cgroup/cgroup.controllers > /out/controllers
cat /sys/fs/cgroup/cgroup.subtree_control > /out/subtree_control
mkdir -p /out/nested
echo "$GREETING" > /out/nested/greeting
exit 7`},
		Env:     map[string]string{"GREETING": "it's here"},
		Console: t.Output(),
		OutDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot-to-command %s, total %s", res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	if res.ExitCode != 7 {
		t.Errorf("ExitCode = %d, want 7", res.ExitCode)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(res.OutDir, name))
		if err != nil {
			t.Error(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := read("sched_ext_state"); got != "disabled" {
		t.Errorf("/sys/kernel/sched_ext/state = %q, want disabled", got)
	}
	if got := strings.Fields(read("controllers")); !contains(got, "cpu") {
		t.Errorf("cgroup.controllers = %q, want cpu among them", got)
	}
	if got := strings.Fields(read("subtree_control")); !contains(got, "cpu") {
		t.Errorf("cgroup.subtree_control = %q, want cpu enabled", got)
	}
	if got := read("nested/greeting"); got != "it's here" {
		t.Errorf("nested/greeting = %q, want the Env value", got)
	}
}

func TestGuestRunsStaticArgv(t *testing.T) {
	k := testKernel(t)
	// A real static Go binary, passed as an argv with awkward quoting.
	bin, err := BuildStatic(t.Context(), "./testdata/writeargs", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), Options{
		Kernel:  k,
		Files:   []Copy{{Host: bin, Guest: "/usr/local/bin/writeargs"}},
		Command: []string{"/usr/local/bin/writeargs", "/out/args.json", "a b", `it's "quoted"`},
		Console: t.Output(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(res.OutDir)
	if res.ExitCode != 0 {
		t.Fatalf("ExitCode = %d, want 0", res.ExitCode)
	}
	got, err := os.ReadFile(filepath.Join(res.OutDir, "args.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `["a b","it's \"quoted\""]`; strings.TrimSpace(string(got)) != want {
		t.Errorf("args.json = %s, want %s", got, want)
	}
}

func TestGuestTimeoutKillsQemu(t *testing.T) {
	k := testKernel(t)
	start := time.Now()
	_, err := Run(context.Background(), Options{Kernel: k, Command: []string{"sleep 600"}, Timeout: 3 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "Options.Timeout") {
		t.Fatalf("Run error = %v, want a timeout naming Options.Timeout", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("timeout took %s to return, want about 3s", d)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A guest that never reaches the command (here: no init at all, so the
// kernel panics) is retried once and then reported, not taken for exit 0.
func TestGuestPanicIsAnError(t *testing.T) {
	k := testKernel(t)
	var console strings.Builder
	_, err := Run(t.Context(), Options{
		Kernel:     k,
		Command:    []string{"true"},
		KernelArgs: []string{"rdinit=/missing", "init=/missing"},
		Console:    &console,
	})
	if err == nil || !strings.Contains(err.Error(), "without reporting") {
		t.Fatalf("Run error = %v, want one saying the guest ended without reporting", err)
	}
	if !strings.Contains(console.String(), "booting again") || !strings.Contains(console.String(), "Kernel panic") {
		t.Errorf("console lacks the panic and the retry note:\n%s", console.String())
	}
}

// The BTF copied out of the guest must be the guest kernel's and describe
// sched_ext, which the scheduler's headers are generated from.
func TestKernelBTFHasSchedExt(t *testing.T) {
	k := testKernel(t)
	p, err := k.BTF(t.Context(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpec(p)
	if err != nil {
		t.Fatalf("parsing %s: %v", p, err)
	}
	var ops *btf.Struct
	if err := spec.TypeByName("sched_ext_ops", &ops); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if len(ops.Members) < 10 {
		t.Errorf("struct sched_ext_ops has %d members, want the full ops table", len(ops.Members))
	}
}
