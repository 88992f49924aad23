package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// TestBadConfigAtStartIsRefused: the exporter must not start half
// configured; the error names the file, line, field and value.
func TestBadConfigAtStartIsRefused(t *testing.T) {
	exportertest.RequireRoot(t)
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: /ls\n    latencyBudget: -3ms\n")
	e := exportertest.StartNoWait(t, "--slo.config-file="+cfg)
	err, exited := e.Wait(20 * time.Second)
	if !exited {
		t.Fatalf("exporter kept running with an invalid config\n%s", e.Log())
	}
	if err == nil {
		t.Errorf("exporter exited 0 on an invalid config")
	}
	for _, want := range []string{"slo.yaml:3", "latencyBudget", "-3ms"} {
		if !strings.Contains(e.Log(), want) {
			t.Errorf("error output lacks %q:\n%s", want, e.Log())
		}
	}
}

// TestReloadKeepsLastGoodConfig: a bad edit is rejected whole and reported
// in metrics, a good edit (SIGHUP or file change) takes effect.
func TestReloadKeepsLastGoodConfig(t *testing.T) {
	exportertest.RequireRoot(t)
	cg := exportertest.NewCgroups(t, "auto")
	ls := cg.Make(t, "ls")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+ls+"\n    latencyBudget: 2ms\n")
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--slo.resync-interval=200ms")
	ctx := context.Background()
	budget := func() float64 {
		v, _ := e.Scrape(t).Value("scx_slo_budget_seconds", map[string]string{"cgroup": ls})
		return v
	}
	if !exportertest.Eventually(ctx, 5*time.Second, func() bool { return budget() == 0.002 }) {
		t.Fatalf("budget never reported as 2ms")
	}

	// Two entries: one fine, one broken. Nothing of it may apply.
	writeSLO(t, cfg, "slos:\n  - cgroup: "+ls+"\n    latencyBudget: 5ms\n  - cgroup: /x\n    importance: 5000\n    latencyBudget: 1ms\n")
	_ = e.Signal(syscall.SIGHUP)
	rejected := exportertest.Eventually(ctx, 5*time.Second, func() bool {
		v, ok := e.Scrape(t).Value("scx_slo_config_last_reload_successful", nil)
		return ok && v == 0
	})
	if !rejected {
		t.Errorf("bad reload not reported by scx_slo_config_last_reload_successful")
	}
	if b := budget(); b != 0.002 {
		t.Errorf("budget after rejected reload = %v, want the last good 0.002", b)
	}
	if !strings.Contains(e.Log(), "importance") || !strings.Contains(e.Log(), "5000") {
		t.Errorf("rejection not logged with field and value:\n%s", e.Log())
	}

	writeSLO(t, cfg, "slos:\n  - cgroup: "+ls+"\n    latencyBudget: 5ms\n")
	if !exportertest.Eventually(ctx, 10*time.Second, func() bool { return budget() == 0.005 }) {
		t.Errorf("good edit not applied on file change; budget %v", budget())
	}
	if v, _ := e.Scrape(t).Value("scx_slo_config_last_reload_successful", nil); v != 1 {
		t.Errorf("reload success not reported after a good edit")
	}
}

// TestFIFOConfigIsRefused: a FIFO at the config path blocks a plain open
// until a writer comes. At start-up the exporter must exit with an error
// naming the path; on reload it must keep the last good config, report
// the failed reload, and stay responsive to edits and SIGTERM.
func TestFIFOConfigIsRefused(t *testing.T) {
	exportertest.RequireRoot(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	e := exportertest.StartNoWait(t, "--slo.config-file="+fifo)
	err, exited := e.Wait(20 * time.Second)
	if !exited {
		t.Fatalf("exporter hung on a FIFO config at start-up\n%s", e.Log())
	}
	if err == nil || !strings.Contains(e.Log(), fifo) || !strings.Contains(e.Log(), "not a regular file") {
		t.Errorf("exit %v; the error must name %s and say it is not a regular file:\n%s", err, fifo, e.Log())
	}

	cfg := filepath.Join(dir, "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: /scx-slo-fifo-test\n    latencyBudget: 2ms\n")
	e = exportertest.Start(t, "--slo.config-file="+cfg, "--no-collector.runqueue")
	ctx := context.Background()
	reloadOK := func() float64 {
		v, _ := e.Scrape(t).Value("scx_slo_config_last_reload_successful", nil)
		return v
	}
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = e.Signal(syscall.SIGHUP)
	if !exportertest.Eventually(ctx, 10*time.Second, func() bool { return reloadOK() == 0 }) {
		t.Fatalf("reload of a FIFO not reported as failed\n%s", e.Log())
	}
	if !strings.Contains(e.Log(), "not a regular file") {
		t.Errorf("log does not say why:\n%s", e.Log())
	}
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	writeSLO(t, cfg, "slos:\n  - cgroup: /scx-slo-fifo-test\n    latencyBudget: 3ms\n")
	if !exportertest.Eventually(ctx, 10*time.Second, func() bool { return reloadOK() == 1 }) {
		t.Errorf("a regular file put back was not loaded\n%s", e.Log())
	}
	_ = e.Signal(syscall.SIGTERM)
	if _, exited := e.Wait(15 * time.Second); !exited {
		t.Errorf("exporter did not exit on SIGTERM\n%s", e.Log())
	}
}

// TestSlotExhaustionReported: globs covering more cgroups than there are
// overload slots leave some without one. The exporter reports how many
// in scx_slo_cgroups_without_slot, logs it once (not every pass), and an
// exactly listed cgroup still gets its slot.
func TestSlotExhaustionReported(t *testing.T) {
	exportertest.RequireRoot(t)
	const slots, extra = 4096, 3
	cg := exportertest.NewCgroups(t, "auto")
	for i := range slots + extra {
		cg.Make(t, fmt.Sprintf("g%d", i))
	}
	ls := cg.Make(t, "ls")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, fmt.Sprintf("slos:\n  - cgroup: %s/g*\n    latencyBudget: 5ms\n  - cgroup: %s\n    latencyBudget: 1ms\n", cg.Parent, ls))
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--slo.resync-interval=100ms", "--no-collector.runqueue")
	var f exportertest.Families
	withoutSlot := func(want float64) bool {
		return exportertest.Eventually(context.Background(), 30*time.Second, func() bool {
			f = e.Scrape(t)
			v, _ := f.Value("scx_slo_cgroups_without_slot", nil)
			return v == want
		})
	}
	if !withoutSlot(extra + 1) {
		t.Fatalf("scx_slo_cgroups_without_slot never reached %d\n%s", extra+1, e.Log())
	}
	if b, _ := f.Value("scx_slo_budget_seconds", map[string]string{"cgroup": ls}); b != 0.001 {
		t.Errorf("the explicitly listed %s has no slot (budget series %v)", ls, b)
	}
	// One more glob cgroup: one more change, so one more log line; the
	// passes in between must not have logged anything.
	cg.Make(t, fmt.Sprintf("g%d", slots+extra))
	if !withoutSlot(extra + 2) {
		t.Fatalf("scx_slo_cgroups_without_slot did not follow a new cgroup\n%s", e.Log())
	}
	if n := strings.Count(e.Log(), "no overload slot"); n != 2 {
		t.Errorf("exhaustion logged %d times over two changes, want 2:\n%s", n, e.Log())
	}
}
