package alerts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

func TestCommittedRuleFileIsGenerated(t *testing.T) {
	want, err := Render(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(FileName)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go generate ./alerts/...` and commit the result", FileName)
	}
	// The YAML must read back into the same rules.
	var back File
	if err := yaml.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	built, _ := Build(DefaultConfig())
	if !slices.EqualFunc(back.Groups, built.Groups, func(a, b Group) bool {
		return a.Name == b.Name && len(a.Rules) == len(b.Rules)
	}) {
		t.Fatalf("rule file reads back as %d groups, built %d", len(back.Groups), len(built.Groups))
	}
}

// allowedMetrics is what a rule may read: the documented contract, the
// rules' own recorded series and Prometheus's up.
func allowedMetrics(t *testing.T, f File) map[string]bool {
	t.Helper()
	md, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"up": true}
	documented := DocumentedMetrics(md)
	if len(documented) < 20 {
		t.Fatalf("found only %d metrics in docs/metrics.md: %v; did its table layout change?", len(documented), documented)
	}
	for _, n := range documented {
		allowed[n] = true
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				allowed[r.Record] = true
			}
		}
	}
	return allowed
}

func TestRulesParseAndReadOnlyDocumentedMetrics(t *testing.T) {
	f, err := Build(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	allowed := allowedMetrics(t, f)
	exprs, err := Expressions(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) != 21 {
		t.Errorf("got %d rules, want 21 (7 recording + 14 alerting); update this count with the rules", len(exprs))
	}
	for _, e := range exprs {
		names, err := MetricNames(e)
		if err != nil {
			t.Errorf("rule does not parse: %v", err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("rule %q reads no metric", e)
		}
		for _, n := range names {
			if !allowed[n] {
				t.Errorf("rule %q reads %s, which is neither in docs/metrics.md nor recorded by a rule", e, n)
			}
		}
	}
}

func TestMetricNames(t *testing.T) {
	got, err := MetricNames(`sum by (cgroup) (rate(scx_slo_deadlines_total{cgroup="/a"}[5m])) / on() group_left {__name__="up"} and scx_slo_deadlines_total offset 1h`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"scx_slo_deadlines_total", "up"}
	if !slices.Equal(got, want) {
		t.Fatalf("MetricNames = %v, want %v", got, want)
	}
	if _, err := MetricNames(`rate(x[5m]`); err == nil || !strings.Contains(err.Error(), `rate(x[5m]`) {
		t.Fatalf("want a parse error quoting the expression, got %v", err)
	}
}

func TestDocumentedMetricsExpandsHistograms(t *testing.T) {
	md := []byte("| metric | type |\n|---|---|\n| `scx_slo_a_seconds` | histogram | cgroup | x |\n| `scx_slo_b_total` | counter | | y |\n")
	got := DocumentedMetrics(md)
	want := []string{"scx_slo_a_seconds_bucket", "scx_slo_a_seconds_count", "scx_slo_a_seconds_sum", "scx_slo_b_total"}
	if !slices.Equal(got, want) {
		t.Fatalf("DocumentedMetrics = %v, want %v", got, want)
	}
}

// Every alert needs a runbook section that its runbook_url points at, and a
// promtool unit test that fires it.
func TestEveryAlertHasRunbookSectionAndUnitTest(t *testing.T) {
	runbook, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{2,3} +(\S.*?)\s*$`).FindAllSubmatch(runbook, -1) {
		anchors[githubAnchor(string(m[1]))] = true
	}
	var tests []byte
	files, _ := filepath.Glob("testdata/*.test.yml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, b...)
	}
	f, _ := Build(DefaultConfig())
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			url := r.Annotations["runbook_url"]
			_, anchor, ok := strings.Cut(url, "#")
			if !ok || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q has no matching section in docs/runbook.md", r.Alert, url)
			}
			for _, k := range []string{"summary", "description"} {
				if r.Annotations[k] == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, k)
				}
			}
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s: no severity label", r.Alert)
			}
			if !regexp.MustCompile(`(?m)alertname: ` + r.Alert + `\n\s+exp_alerts:\n\s+- exp_labels`).Match(tests) {
				t.Errorf("alert %s: no promtool test in testdata/ expects it to fire", r.Alert)
			}
		}
	}
}

// githubAnchor turns a heading into the fragment GitHub gives it.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

func promtool(t *testing.T) string {
	t.Helper()
	p := needs.Command(t, "promtool", "prometheus")
	return p
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", FileName).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS: 21 rules found") {
		t.Fatalf("unexpected promtool output:\n%s", out)
	}
}

func TestPromtoolUnitTests(t *testing.T) {
	files, err := filepath.Glob("testdata/*.test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests in testdata/: %v", err)
	}
	out, err := exec.Command(promtool(t), append([]string{"test", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "SUCCESS"); n != len(files) {
		t.Fatalf("%d of %d rule test files passed:\n%s", n, len(files), out)
	}
}

// A site-specific file with a scoping selector and other thresholds must
// still be a valid rule file with the selector on every series it reads.
func TestCustomConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Selector = `cluster="prod",env!="dev"`
	cfg.JobSelector = `job=~"scx-slo|kubernetes-pods"`
	w, err := ParseBurnWindow("2h:10m:10:critical")
	if err != nil {
		t.Fatal(err)
	}
	cfg.BurnWindows = []BurnWindow{w}
	f, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			node, err := promql.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s%s: %v", r.Record, r.Alert, err)
			}
			parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && (!hasMatcherOn(vs, "cluster") || !hasMatcherOn(vs, "env")) {
					t.Errorf("%s%s: selector %s lacks the configured selector", r.Record, r.Alert, vs)
				}
				return nil
			})
		}
	}
	if got := f.Groups[0].Rules; len(got) != 3 || got[0].Record != "cgroup:scx_slo_deadline_miss_ratio:rate10m" || got[1].Record != "cgroup:scx_slo_deadline_miss_ratio:rate2h" {
		t.Errorf("SLO group = %+v, want rate10m and rate2h recorded, then one burn alert", got)
	}
	if burn := f.Groups[0].Rules[2]; !strings.Contains(burn.Expr, "10 * (1 - scx_slo_target_ratio") || burn.Labels["severity"] != "critical" {
		t.Errorf("burn alert = %+v, want factor 10 and severity critical", burn)
	}
	data, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := promtool(t)
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on custom config: %v\n%s", err, out)
	}
}

func TestBadConfigIsRejectedNamingFieldAndValue(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.JobSelector = "" }, `job selector ""`},
		{func(c *Config) { c.JobSelector = `job="x` }, `job selector "job=\"x"`},
		{func(c *Config) { c.Selector = `__name__="up"` }, `selector "__name__=\"up\""`},
		{func(c *Config) { c.BurnWindows = nil }, "burn windows"},
		{func(c *Config) { c.BurnWindows[0].Short = c.BurnWindows[0].Long }, "long window 1h must be longer than short window 1h"},
		{func(c *Config) { c.BurnWindows[1].Factor = -1 }, "factor -1 must be positive"},
		{func(c *Config) { c.BurnWindows[2].Severity = "" }, "burn window 1d/2h: severity"},
		{func(c *Config) { c.TicketSeverity = "" }, "ticket severity"},
		{func(c *Config) { c.OverloadFor = 0 }, "overload for 0s"},
		{func(c *Config) { c.EventWindow = 0 }, "event window 0s"},
		{func(c *Config) { c.RunbookBaseURL = "docs/runbook.md" }, `runbook base URL "docs/runbook.md"`},
		{func(c *Config) { c.RunbookBaseURL = "https://x/runbook.md#top" }, `runbook base URL "https://x/runbook.md#top"`},
	} {
		cfg := DefaultConfig()
		c.edit(&cfg)
		_, err := Render(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error containing %q, got %v", c.want, err)
		}
	}
	for s, want := range map[string]string{
		"1h:5m:14.4":      `burn window "1h:5m:14.4": want LONG:SHORT:FACTOR:SEVERITY`,
		"1x:5m:14.4:page": `long window "1x"`,
		"1h:5q:14.4:page": `short window "5q"`,
		"1h:5m:fast:page": `factor "fast" is not a number`,
		"5m:1h:14.4:page": "long window 5m must be longer than short window 1h",
		"1h:5m:14.4:":     "severity must not be empty",
	} {
		if _, err := ParseBurnWindow(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBurnWindow(%q): want error containing %q, got %v", s, want, err)
		}
	}
}
