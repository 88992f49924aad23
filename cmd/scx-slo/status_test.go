package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/nodestatus"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
)

// TestStatusCommand runs `scx-slo status` against a real exporter, as a
// person at the node would, in both output formats, and checks the
// landing page shows the same table.
func TestStatusCommand(t *testing.T) {
	exportertest.RequireRoot(t)
	cg := exportertest.NewCgroups(t, "auto")
	ls := cg.Make(t, "ls")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+ls+"\n    latencyBudget: 3ms\n")
	e := exportertest.Start(t, "--slo.config-file="+cfg)
	w := cg.StartWorkload(t, ls, "probe", 1)
	defer w.Stop()

	// status -o json, and the row for ls in it (nil until the first walk
	// that sees ls).
	read := func() (nodestatus.Status, *nodestatus.Cgroup) {
		t.Helper()
		out, err := exec.Command(exportertest.Binary(t), "status", "--address", e.Addr, "-o", "json").Output()
		if err != nil {
			t.Fatalf("status -o json: %v", err)
		}
		var st nodestatus.Status
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		for i := range st.Cgroups {
			if st.Cgroups[i].Path == ls {
				return st, &st.Cgroups[i]
			}
		}
		return st, nil
	}
	// Wait until the probe has run a few hundred times (1 ms period).
	var st nodestatus.Status
	var row *nodestatus.Cgroup
	exportertest.Eventually(context.Background(), 20*time.Second, func() bool {
		st, row = read()
		return row != nil && row.Wakeups >= 300
	})
	if st.Mode != "observe" || st.KernelRelease == "" {
		t.Errorf("mode %q kernel %q", st.Mode, st.KernelRelease)
	}
	if row == nil {
		t.Fatalf("no row for %s in %+v", ls, st.Cgroups)
	}
	if row.Budget != 0.003 || row.Wakeups < 300 || row.P50 <= 0 || row.P99 < row.P50 {
		t.Errorf("row for %s: %+v", ls, row)
	}
	// With the probe stopped, the lifetime counters are the scrape's.
	w.Stop()
	var d, m float64
	if !exportertest.Eventually(context.Background(), 20*time.Second, func() bool {
		_, row = read()
		f := e.Scrape(t)
		d, _ = f.Value("scx_slo_deadlines_total", map[string]string{"cgroup": ls})
		m, _ = f.Value("scx_slo_deadline_misses_total", map[string]string{"cgroup": ls})
		return row != nil && row.DeadlinesTotal > 0 && float64(row.DeadlinesTotal) == d && float64(row.MissesTotal) == m
	}) {
		t.Errorf("row for %s: %+v; the scrape says %v deadlines, %v misses", ls, row, d, m)
	}

	table, err := exec.Command(exportertest.Binary(t), "status", "--address", "http://"+e.Addr).Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, want := range []string{"mode:        observe", "CGROUP", ls, "3ms"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
	_, page, err := e.Get("/")
	if err != nil || !strings.Contains(string(page), ls) || !strings.Contains(string(page), "/metrics") {
		t.Errorf("landing page lacks the cgroup table or metrics link (err %v)", err)
	}

	// No exporter: a clear error, not a hang.
	out, err := exec.Command(exportertest.Binary(t), "status", "--address", exportertest.FreeAddr(t), "--timeout", "2s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is `scx-slo` running?") {
		t.Errorf("status without exporter: err %v, output %s", err, out)
	}
}
