package dashboards

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/scx-slo/scx-slo/alerts"
)

func TestCommittedJSONIsGenerated(t *testing.T) {
	files, err := Render(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("rendered %d dashboards, want 2", len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `go generate ./dashboards/...` and commit the result", name)
		}
	}
}

// The committed JSON must read back through the SDK's own types into the
// same dashboard, and write out byte for byte the same again.
func TestJSONRoundTripsThroughSDK(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	built, err := Build(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range built {
		raw, err := os.ReadFile(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		var back dashboard.Dashboard
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("%s: SDK can't unmarshal it: %v", f.Name, err)
		}
		if !back.Equals(f.Dashboard) {
			t.Errorf("%s: unmarshalled dashboard differs from the built one", f.Name)
		}
		if err := back.Validate(); err != nil {
			t.Errorf("%s: SDK validation: %v", f.Name, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), raw) {
			t.Errorf("%s: re-marshalling the unmarshalled dashboard changes the JSON", f.Name)
		}
		// And the checks below must see the same queries in the file as in
		// the model: nothing lost in the JSON.
		fromFile, err := DashboardQueries(back)
		if err != nil {
			t.Fatal(err)
		}
		fromModel, _ := DashboardQueries(f.Dashboard)
		if !slices.Equal(fromFile, fromModel) || len(fromFile) == 0 {
			t.Errorf("%s: %d queries in the file, %d in the model", f.Name, len(fromFile), len(fromModel))
		}
	}
}

// shedMetrics come from the load-shedding sidecar (a later issue); they are
// allowed until docs/metrics.md lists them, after which the docs cover them.
var shedMetrics = []string{
	"scx_slo_shed_requests_total",
	"scx_slo_shed_admitted_ratio",
	"scx_slo_shed_overloaded",
	"scx_slo_shed_state_read_errors_total",
}

func TestQueriesParseAndReadOnlyDocumentedMetrics(t *testing.T) {
	md, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"up": true}
	documented := alerts.DocumentedMetrics(md)
	if len(documented) < 20 {
		t.Fatalf("found only %d metrics in docs/metrics.md; did its table layout change?", len(documented))
	}
	for _, n := range append(documented, shedMetrics...) {
		allowed[n] = true
	}
	exprs, err := Expressions(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names, err := alerts.MetricNames(e)
		if err != nil {
			t.Errorf("query does not parse: %v", err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("query %q reads no metric", e)
		}
		for _, n := range names {
			used[n] = true
			if !allowed[n] {
				t.Errorf("query %q reads %s, which docs/metrics.md does not list", e, n)
			}
		}
	}
	// The overview should show every documented metric somewhere, except
	// the few that only matter to the exporter's internals.
	for _, n := range documented {
		if !used[n] && !strings.HasSuffix(n, "_sum") && n != "scx_slo_scx_supported" && n != "scx_slo_scx_enable_seq" && n != "scx_slo_enforce_compatible" && n != "scx_slo_config_last_reload_success_timestamp_seconds" {
			t.Errorf("no panel shows %s", n)
		}
	}
}

func TestExpandVariables(t *testing.T) {
	got := ExpandVariables(`rate(x{a=~"$job",b=~"${instance}"}[$__rate_interval]) + increase(y[$__range])`, nil)
	want := `rate(x{a=~".*",b=~".*"}[5m]) + increase(y[5m])`
	if got != want {
		t.Fatalf("ExpandVariables = %s, want %s", got, want)
	}
	got = ExpandVariables(`x{cgroup="$cgroup",job=~"$job"}`, map[string]string{"cgroup": "/a.slice"})
	want = `x{cgroup="/a.slice",job=~".*"}`
	if got != want {
		t.Fatalf("ExpandVariables with values = %s, want %s", got, want)
	}
}

// Every query honours the dashboard's node selection, so picking an
// instance never shows another node's data.
func TestQueriesFollowTheVariables(t *testing.T) {
	built, _ := Build(DefaultConfig())
	for _, f := range built {
		for _, p := range panels(f.Dashboard) {
			for _, raw := range rawExprs(p) {
				if !strings.Contains(raw, `instance=~"$instance"`) && !strings.Contains(raw, `instance="$instance"`) && !strings.Contains(raw, `job=~"$shed_job"`) {
					t.Errorf("%s / %s: query ignores the instance variable: %s", f.Name, *p.Title, raw)
				}
				if f.Name == "scx-slo-cgroup.json" && strings.Contains(raw, "cgroup") && !strings.Contains(raw, `"$cgroup"`) && !strings.Contains(raw, "sum by (cgroup) (scx_slo_runqueue_waiting_tasks") {
					t.Errorf("%s / %s: query ignores the cgroup variable: %s", f.Name, *p.Title, raw)
				}
			}
		}
	}
}

// On the overview, picking pods narrows every per-cgroup panel, and
// per-cgroup legends name the pod (issue 12: pods, not cgroup paths).
func TestOverviewFollowsPods(t *testing.T) {
	built, _ := Build(DefaultConfig())
	for _, f := range built {
		if f.Name != "scx-slo-node.json" {
			continue
		}
		for _, p := range panels(f.Dashboard) {
			for i, raw := range rawExprs(p) {
				if strings.Contains(raw, `"$cgroup"`) && !strings.Contains(raw, `namespace=~"$namespace",pod=~"$pod"`) {
					t.Errorf("%s: query follows $cgroup but not $namespace and $pod: %s", *p.Title, raw)
				}
				b, _ := json.Marshal(p.Targets[i])
				var x struct{ LegendFormat string }
				_ = json.Unmarshal(b, &x)
				if strings.Contains(x.LegendFormat, "{{cgroup}}") && !strings.Contains(x.LegendFormat, "{{namespace}}/{{pod}}") {
					t.Errorf("%s: legend %q names the cgroup but not the pod", *p.Title, x.LegendFormat)
				}
			}
		}
		return
	}
	t.Fatal("no scx-slo-node.json built")
}

func TestLayoutAndDescriptions(t *testing.T) {
	doc, err := os.ReadFile("../docs/dashboards.md")
	if err != nil {
		t.Fatal(err)
	}
	built, _ := Build(DefaultConfig())
	for _, f := range built {
		type cell struct{ x, y uint32 }
		taken := map[cell]string{}
		ids := map[uint32]bool{}
		for _, pr := range f.Dashboard.Panels {
			var title string
			var pos *dashboard.GridPos
			var id uint32
			if pr.RowPanel != nil {
				title, pos, id = *pr.RowPanel.Title, pr.RowPanel.GridPos, pr.RowPanel.Id
			} else {
				p := pr.Panel
				title, pos, id = *p.Title, p.GridPos, *p.Id
				if p.Description == nil || *p.Description == "" {
					t.Errorf("%s / %s: no description", f.Name, title)
				}
				if p.Datasource == nil || *p.Datasource.Uid != "${datasource}" {
					t.Errorf("%s / %s: does not use the datasource variable", f.Name, title)
				}
				if !regexp.MustCompile(`(?m)^[-*] \*\*` + regexp.QuoteMeta(title) + `\*\*`).Match(doc) {
					t.Errorf("%s / %s: not described in docs/dashboards.md (want a line \"- **%s**: ...\")", f.Name, title, title)
				}
			}
			if ids[id] {
				t.Errorf("%s / %s: duplicate panel id %d", f.Name, title, id)
			}
			ids[id] = true
			if pos == nil || pos.X+pos.W > 24 || pos.W == 0 || pos.H == 0 {
				t.Errorf("%s / %s: bad grid position %+v", f.Name, title, pos)
				continue
			}
			for x := pos.X; x < pos.X+pos.W; x++ {
				for y := pos.Y; y < pos.Y+pos.H; y++ {
					if other, ok := taken[cell{x, y}]; ok {
						t.Errorf("%s: panels %q and %q overlap at %d,%d", f.Name, other, title, x, y)
					}
					taken[cell{x, y}] = title
				}
			}
		}
	}
}

func TestCustomConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UIDPrefix = "site-a"
	cfg.Tags = []string{"site-a", "latency"}
	cfg.BurnRates = []float64{2, 10}
	files, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	node := string(files["scx-slo-node.json"])
	if !strings.Contains(node, `"uid": "site-a-node"`) || !strings.Contains(node, `"latency"`) {
		t.Errorf("custom uid prefix or tags missing from node dashboard")
	}
	var d dashboard.Dashboard
	plugins.RegisterDefaultPlugins()
	if err := json.Unmarshal(files["scx-slo-cgroup.json"], &d); err != nil {
		t.Fatal(err)
	}
	var steps []float64
	for _, p := range panels(d) {
		if *p.Title == "Error budget burn rate" {
			for _, s := range p.FieldConfig.Defaults.Thresholds.Steps {
				if s.Value != nil {
					steps = append(steps, *s.Value)
				}
			}
		}
	}
	if !slices.Equal(steps, []float64{2, 10}) {
		t.Errorf("burn-rate thresholds = %v, want [2 10]", steps)
	}
}

func TestBadConfigIsRejectedNamingFieldAndValue(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.UIDPrefix = "" }, `uid prefix ""`},
		{func(c *Config) { c.UIDPrefix = "a/b" }, `uid prefix "a/b"`},
		{func(c *Config) { c.UIDPrefix = strings.Repeat("x", 34) }, `uid prefix "xxxx`},
		{func(c *Config) { c.Tags = nil }, "tags: need at least one"},
		{func(c *Config) { c.Tags = []string{"a", ""} }, `tags ["a" ""]`},
		{func(c *Config) { c.Refresh = "soon" }, `refresh "soon"`},
		{func(c *Config) { c.Refresh = "0s" }, `refresh "0s"`},
		{func(c *Config) { c.BurnRates = []float64{6, 3} }, "burn rates [6 3]: want positive, increasing values; 3 is not"},
		{func(c *Config) { c.BurnRates = []float64{0} }, "burn rates [0]"},
	} {
		cfg := DefaultConfig()
		c.edit(&cfg)
		_, err := Render(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want error containing %q, got %v", c.want, err)
		}
	}
}

func panels(d dashboard.Dashboard) []dashboard.Panel {
	var out []dashboard.Panel
	for _, p := range d.Panels {
		if p.Panel != nil {
			out = append(out, *p.Panel)
		}
	}
	return out
}

func rawExprs(p dashboard.Panel) []string {
	var out []string
	for _, t := range p.Targets {
		b, _ := json.Marshal(t)
		var x struct{ Expr string }
		_ = json.Unmarshal(b, &x)
		out = append(out, x.Expr)
	}
	return out
}
