package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// File is one generated dashboard: its file name inside dashboards/ and
// the SDK model it is rendered from.
type File struct {
	Name      string
	Dashboard dashboard.Dashboard
}

// Build returns every dashboard for cfg.
func Build(cfg Config) ([]File, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var out []File
	for _, x := range []struct {
		name  string
		build func(Config) *dashboard.DashboardBuilder
	}{
		{"scx-slo-node.json", nodeDashboard},
		{"scx-slo-cgroup.json", cgroupDashboard},
	} {
		d, err := x.build(cfg).Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", x.name, err)
		}
		numberPanels(&d)
		out = append(out, File{Name: x.name, Dashboard: d})
	}
	return out, nil
}

// base sets what every scx-slo dashboard shares.
func base(cfg Config, title, uid, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags(cfg.Tags).
		Editable().
		Refresh(cfg.Refresh).
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(datasourceVar()).
		Link(dashboard.NewDashboardLinkBuilder("scx-slo").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags(cfg.Tags[:1]).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true))
}

// numberPanels gives panels and rows stable ids in layout order; Grafana
// needs unique ids for links to single panels.
func numberPanels(d *dashboard.Dashboard) {
	for i, p := range d.Panels {
		id := uint32(i + 1)
		switch {
		case p.Panel != nil:
			p.Panel.Id = &id
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
}

// Render returns each dashboard's file name and JSON.
func Render(cfg Config) (map[string][]byte, error) {
	files, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range files {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		// PromQL is full of <, > and &; keep the JSON readable.
		enc.SetEscapeHTML(false)
		if err := enc.Encode(f.Dashboard); err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", f.Name, err)
		}
		out[f.Name] = buf.Bytes()
	}
	return out, nil
}

// Expressions returns the PromQL of every panel query and every variable
// query of the dashboards built from cfg, with Grafana's variables replaced
// (see ExpandVariables) so that each parses as plain PromQL. Use it to check
// the dashboards against what the exporter really exports.
func Expressions(cfg Config) ([]string, error) {
	files, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		queries, err := DashboardQueries(f.Dashboard)
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", f.Name, err)
		}
		for _, q := range queries {
			out = append(out, ExpandVariables(q, nil))
		}
	}
	return out, nil
}

// labelValues matches the Grafana Prometheus variable query
// label_values(<selector>, <label>).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// DashboardQueries returns the PromQL of one dashboard model's panel
// queries and variable queries (the selector of label_values), with
// Grafana's variables still in them.
func DashboardQueries(d dashboard.Dashboard) ([]string, error) {
	var out []string
	var panels []dashboard.Panel
	for _, p := range d.Panels {
		if p.Panel != nil {
			panels = append(panels, *p.Panel)
		}
		if p.RowPanel != nil {
			panels = append(panels, p.RowPanel.Panels...)
		}
	}
	for _, p := range panels {
		title := ""
		if p.Title != nil {
			title = *p.Title
		}
		for _, t := range p.Targets {
			var expr string
			switch x := t.(type) {
			case prometheus.Dataquery:
				expr = x.Expr
			case *prometheus.Dataquery:
				expr = x.Expr
			default:
				return nil, fmt.Errorf("panel %q: query of type %T is not a Prometheus query", title, t)
			}
			out = append(out, expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != dashboard.VariableTypeQuery || v.Query == nil || v.Query.String == nil {
			continue
		}
		m := labelValues.FindStringSubmatch(*v.Query.String)
		if m == nil {
			return nil, fmt.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, *v.Query.String)
		}
		out = append(out, m[1])
	}
	return out, nil
}

// grafanaVar matches $name and ${name} references.
var grafanaVar = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?`)

// ExpandVariables replaces Grafana's variables in a query to make it plain
// PromQL: interval variables with 5m, others (which only appear inside
// label matchers) with their entry in values, or ".*" without one.
func ExpandVariables(expr string, values map[string]string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(ref string) string {
		name := strings.Trim(ref, "${}")
		if v, ok := values[name]; ok {
			return v
		}
		if strings.HasPrefix(name, "__") && (strings.HasSuffix(name, "interval") || name == "__range") {
			return "5m"
		}
		return ".*"
	})
}
