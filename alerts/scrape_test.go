package alerts_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/scx-slo/scx-slo/alerts"
	"github.com/scx-slo/scx-slo/dashboards"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// absentByDesign are series a healthy exporter only exports in some
// states, or that come from elsewhere.
var absentByDesign = map[string]string{
	"scx_slo_enforcer_exits_total":         "labelled by exit kind; appears with the first ejection",
	"scx_slo_enforce_incompatible_info":    "absent while the kernel is compatible",
	"scx_slo_enforce_degraded_info":        "absent on kernels with every scheduler feature (and on incompatible ones)",
	"scx_slo_scx_ops_info":                 "absent while no sched_ext scheduler is loaded",
	"scx_slo_scx_events_total":             "only where the kernel has /sys/kernel/sched_ext/root/events",
	"scx_slo_shed_requests_total":          "exported by the shedding sidecar",
	"scx_slo_shed_admitted_ratio":          "exported by the shedding sidecar",
	"scx_slo_shed_overloaded":              "exported by the shedding sidecar",
	"scx_slo_shed_state_read_errors_total": "exported by the shedding sidecar",
}

// scxOnly reads the metrics README marks † (exported only on kernels with
// sched_ext).
func scxOnly(t *testing.T) map[string]bool {
	b, err := os.ReadFile(filepath.Join(exportertest.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `scx_slo_") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		if strings.Contains(first, "†") {
			name := strings.Trim(strings.Fields(first)[0], "`")
			out[strings.SplitN(name, "{", 2)[0]] = true
		}
	}
	return out
}

// startExporter runs the real exporter with an SLO on a real cgroup that
// a shell loop keeps waking up beside CPU hogs, and waits until that
// cgroup has deadlines and has preempted a hog and been preempted by one.
func startExporter(t *testing.T, args ...string) (e *exportertest.Exporter, f exportertest.Families, sloCgroup string) {
	if testing.Short() {
		t.Skip("starts the real exporter (root, BPF); skipped with -short")
	}
	exportertest.RequireRoot(t)
	cg := exportertest.NewCgroups(t, "auto")
	web := cg.Make(t, "web")
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	if err := os.WriteFile(cfg, []byte("slos:\n  - cgroup: "+web+"\n    latencyBudget: 2ms\n    target: 0.99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e = exportertest.Start(t, append([]string{"--slo.config-file=" + cfg}, args...)...)
	// A loop that keeps waking in the SLO cgroup, and CPU hogs beside it
	// for its wakeups to preempt (the preemption panels need that).
	batch := cg.Make(t, "batch")
	start := func(cgroup, script string) {
		p := exec.Command("sh", "-c", script)
		p.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			_ = p.Wait()
		})
		if err := cg.Move(cgroup, p.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	// The loop spins a little between sleeps so hogs preempt it too.
	start(web, "while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.01; done")
	for i := 0; i < 2; i++ {
		start(batch, "while :; do :; done")
	}
	for i := 0; i < 80; i++ {
		f = e.Scrape(t)
		d, _ := f.Value("scx_slo_deadlines_total", map[string]string{"cgroup": web})
		by, _ := f.Value("scx_slo_runqueue_preemptions_total", map[string]string{"by_cgroup": web})
		of, _ := f.Value("scx_slo_runqueue_preemptions_total", map[string]string{"cgroup": web})
		if d > 0 && by > 0 && of > 0 {
			return e, f, web
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("no deadlines for %s, or no preemption by or of it, after 20s\n%s", web, e.Log())
	return nil, nil, ""
}

// Every metric the rules and dashboards read is one the real exporter
// exports, or is known to appear only in some states.
func TestRealExporterExportsWhatRulesAndDashboardsRead(t *testing.T) {
	_, f, _ := startExporter(t)
	_, err := os.Stat("/sys/kernel/sched_ext")
	haveScx := err == nil
	scx := scxOnly(t)

	ruleExprs, err := alerts.Expressions(alerts.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := alerts.Build(alerts.DefaultConfig())
	recorded := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			recorded[r.Record] = true
		}
	}
	dashExprs, err := dashboards.Expressions(dashboards.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range append(ruleExprs, dashExprs...) {
		names, err := alerts.MetricNames(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if n == "up" || recorded[n] {
				continue
			}
			family := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base := strings.TrimSuffix(n, suf); base != n && f[base] != nil && f[base].GetType() == dto.MetricType_HISTOGRAM {
					family = base
				}
			}
			checked++
			if f[family] != nil || absentByDesign[n] != "" || (scx[family] && !haveScx) {
				continue
			}
			t.Errorf("%q reads %s, which the real exporter does not export", e, n)
		}
	}
	if checked < 50 {
		t.Errorf("checked only %d metric references", checked)
	}
}

// series turns a real scrape into promtool input series, each value held
// for n minutes, under the given job and instance labels.
func series(f exportertest.Families, job, instance string, n int) []string {
	var out []string
	add := func(name string, labels []*dto.LabelPair, extra map[string]string, v float64) {
		ls := []string{fmt.Sprintf("job=%q", job), fmt.Sprintf("instance=%q", instance)}
		for _, l := range labels {
			ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		for k, val := range extra {
			ls = append(ls, fmt.Sprintf("%s=%q", k, val))
		}
		sel := name + "{" + strings.Join(ls, ",") + "}"
		out = append(out, fmt.Sprintf("      - series: %s\n        values: '%gx%d'\n", yamlQuote(sel), v, n))
	}
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, m := range f[name].Metric {
			switch {
			case m.Gauge != nil:
				add(name, m.Label, nil, m.Gauge.GetValue())
			case m.Counter != nil:
				add(name, m.Label, nil, m.Counter.GetValue())
			case m.Untyped != nil:
				add(name, m.Label, nil, m.Untyped.GetValue())
			case m.Histogram != nil:
				for _, b := range m.Histogram.Bucket {
					add(name+"_bucket", m.Label, map[string]string{"le": fmt.Sprint(b.GetUpperBound())}, float64(b.GetCumulativeCount()))
				}
				add(name+"_count", m.Label, nil, float64(m.Histogram.GetSampleCount()))
				add(name+"_sum", m.Label, nil, m.Histogram.GetSampleSum())
			}
		}
	}
	out = append(out, fmt.Sprintf("      - series: %s\n        values: '1x%d'\n", yamlQuote(fmt.Sprintf("up{job=%q,instance=%q}", job, instance)), n))
	return out
}

func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// runPromtool evaluates the committed rules on the series with promtool
// and the given test sections (alert_rule_test, promql_expr_test).
func runPromtool(t *testing.T, input []string, sections string) {
	p := needs.Command(t, "promtool", "prometheus")
	rules, err := filepath.Abs(alerts.FileName)
	if err != nil {
		t.Fatal(err)
	}
	test := "rule_files:\n  - " + rules + "\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n" +
		strings.Join(input, "") + sections
	path := filepath.Join(t.TempDir(), "real.test.yml")
	if err := os.WriteFile(path, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, "test", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules on the real exporter's series: %v\n%s", err, out)
	}
}

func quiet(alertnames ...string) string {
	var b strings.Builder
	b.WriteString("    alert_rule_test:\n")
	for _, a := range alertnames {
		fmt.Fprintf(&b, "      - eval_time: 30m\n        alertname: %s\n        exp_alerts: []\n", a)
	}
	return b.String()
}

// A healthy exporter in observe mode, held steady for an hour, must not
// trip any of the health alerts: the rules' label matching works on the
// real series, and their thresholds agree with what the exporter reports
// when all is well.
func TestRealExporterInObserveModeIsQuiet(t *testing.T) {
	_, f, _ := startExporter(t)
	runPromtool(t, series(f, "scx-slo", "real:9817", 60), quiet(
		alerts.AlertCollectorFailing, alerts.AlertConfigReloadFailed, alerts.AlertExporterDown,
		alerts.AlertNotAttached, alerts.AlertKernelIncompatible, alerts.AlertEnforcerEjected,
		alerts.AlertGuardDetached, alerts.AlertEventsDropped, alerts.AlertBudgetBurn))
}

// --enforce on a kernel without sched_ext: the real exporter keeps
// observing, and ScxSloKernelIncompatible (not NotAttached) fires on its
// real series.
func TestRealExporterEnforcingOnIncompatibleKernelAlerts(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/sched_ext"); err == nil {
		t.Skip("this kernel has sched_ext; --enforce would replace the host's scheduler (the enforcer's VM tests cover attaching)")
	}
	_, f, _ := startExporter(t, "--enforce")
	if v, _ := f.Value("scx_slo_enforcer_requested", nil); v != 1 {
		t.Fatalf("scx_slo_enforcer_requested = %v with --enforce, want 1", v)
	}
	runPromtool(t, series(f, "scx-slo", "real:9817", 60), quiet(alerts.AlertNotAttached, alerts.AlertCollectorFailing)+`      - eval_time: 30m
        alertname: ScxSloKernelIncompatible
        exp_alerts:
          - exp_labels: {severity: ticket, job: scx-slo, instance: "real:9817"}
            exp_annotations:
              summary: scx-slo runs with --enforce on real:9817 but the kernel can't run its scheduler
              description: Enforcement was requested on a kernel that can't run the scx-slo scheduler; scx_slo_enforce_incompatible_info on this instance names the reasons.
              runbook_url: https://github.com/scx-slo/scx-slo/blob/main/docs/runbook.md#scxslokernelincompatible
`)
}

// Every dashboard query whose metrics the real exporter exports returns
// data when promtool evaluates it on the exporter's real series: label
// matchers, aggregations and vector matching fit what is really exported.
func TestRealExporterFillsDashboardPanels(t *testing.T) {
	_, f, web := startExporter(t)
	files, err := dashboards.Build(dashboards.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	// What a user would pick: this exporter's job and node, the SLO cgroup.
	pick := map[string]string{"job": "scx-slo", "instance": "real:9817", "cgroup": web}
	var exprs []string
	for _, file := range files {
		queries, err := dashboards.DashboardQueries(file.Dashboard)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range queries {
			exprs = append(exprs, dashboards.ExpandVariables(q, pick))
		}
	}
	var b strings.Builder
	b.WriteString("    promql_expr_test:\n")
	n := 0
	for _, e := range exprs {
		names, err := alerts.MetricNames(e)
		if err != nil {
			t.Fatal(err)
		}
		exported := true
		for _, name := range names {
			if name == "up" {
				continue
			}
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if f[name] == nil && f[base] == nil {
				exported = false
			}
		}
		if !exported {
			continue
		}
		n++
		fmt.Fprintf(&b, "      - expr: %s\n        eval_time: 30m\n        exp_samples:\n          - labels: '{}'\n            value: 1\n",
			yamlQuote("count("+e+") > bool 0"))
	}
	if n < 30 {
		t.Fatalf("only %d dashboard queries read metrics this exporter exports", n)
	}
	t.Logf("%d of %d dashboard queries read exported metrics; promtool checks each returns data", n, len(exprs))
	runPromtool(t, series(f, "scx-slo", "real:9817", 60), b.String())
}
