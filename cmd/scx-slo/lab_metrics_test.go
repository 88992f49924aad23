package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
)

// TestEnforceModeMetricsInVM boots the sched_ext kernel, runs the real
// exporter with --enforce there, and checks what this host cannot show:
// every README metric (the † ones included) in a real scrape, mode
// "enforce", the scheduler named in root/ops, and `scx-slo status`.
func TestEnforceModeMetricsInVM(t *testing.T) {
	k := labtest.Kernel(t) // skips (or fails with SCX_SLO_LAB_REQUIRED=1) without a lab
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: /ls\n    latencyBudget: 2ms\n")
	// A cgroup with an SLO and a little work in it, a scrape, the status
	// table, and root/ops, all written to /out.
	script := `set -e
mkdir -p /sys/fs/cgroup/ls
/usr/local/bin/scx-slo --enforce --slo.config-file=/etc/scx-slo/slo.yaml --web.listen-address=127.0.0.1:9817 >/out/exporter.log 2>&1 &
for i in $(seq 1 100); do
  [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && break
  sleep 0.2
done
sh -c 'echo $$ > /sys/fs/cgroup/ls/cgroup.procs; for i in $(seq 1 200); do sleep 0.01; done'
# The exporter may still be starting on a loaded emulator: poll its
# endpoint rather than guess how long that takes.
for i in $(seq 1 300); do
  wget -qO /out/metrics.txt http://127.0.0.1:9817/metrics && break
  sleep 0.2
done
/usr/local/bin/scx-slo status > /out/status.txt
cat /sys/kernel/sched_ext/root/ops > /out/ops.txt
`
	var console bytes.Buffer
	res, err := lab.Run(ctx, lab.Options{
		Kernel: k, Command: []string{script}, Console: &console,
		Files:  []lab.Copy{{Host: exportertest.Binary(t), Guest: "/usr/local/bin/scx-slo"}, {Host: cfg, Guest: "/etc/scx-slo/slo.yaml"}},
		OutDir: filepath.Join(dir, "out"),
	})
	if err != nil {
		t.Fatalf("lab run: %v\n%s", err, console.String())
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(res.OutDir, name))
		return string(b)
	}
	if res.ExitCode != 0 {
		t.Fatalf("guest script exited %d\n%s\nexporter log:\n%s", res.ExitCode, console.String(), read("exporter.log"))
	}
	if ops := strings.TrimSpace(read("ops.txt")); !strings.HasPrefix(ops, "scx_slo") {
		t.Errorf("root/ops = %q, want the scx-slo scheduler", ops)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(read("metrics.txt")))
	if err != nil {
		t.Fatalf("parsing the guest scrape: %v", err)
	}
	f := exportertest.Families(fams)
	readme, _ := documentedMetrics(t, "README.md")
	// Series that appear once something happened (no exit or guard
	// detach happens in this run), or only where the kernel lacks a
	// feature (the lab's 7.3 lacks none).
	eventOnly := map[string]bool{"scx_slo_enforcer_exits_total": true, "scx_slo_enforcer_guard_detaches_total": true, "scx_slo_enforce_incompatible_info": true, "scx_slo_enforce_degraded_info": true, "scx_slo_scx_events_total": true}
	for _, name := range readme {
		if _, ok := f[name]; !ok && !eventOnly[name] {
			t.Errorf("documented metric %s missing from the enforce-mode scrape", name)
		}
	}
	if v, _ := f.Value("scx_slo_mode", map[string]string{"mode": "enforce"}); v != 1 {
		t.Errorf("scx_slo_mode{mode=enforce} = %v", v)
	}
	if v, _ := f.Value("scx_slo_scx_state", map[string]string{"state": "enabled"}); v != 1 {
		t.Errorf("scx_slo_scx_state{state=enabled} = %v", v)
	}
	if v, _ := f.Value("scx_slo_deadlines_total", map[string]string{"cgroup": "/ls"}); v < 1 {
		t.Errorf("no deadlines judged for /ls by the scheduler")
	}
	if st := read("status.txt"); !strings.Contains(st, "mode:        enforce") || !strings.Contains(st, "/ls") {
		t.Errorf("status in the guest:\n%s", st)
	}
	t.Logf("guest boot %v, total %v", res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
}
