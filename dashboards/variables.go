package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Label matchers the panels use; the variables fill them in. Grafana
// regex-escapes the values of multi-value variables for =~, but not of
// single-value ones, so those use = (cgroup paths can hold regex
// metacharacters, e.g. systemd's \x2d escapes).
const (
	selNode      = `job=~"$job",instance=~"$instance"`
	selPod       = selNode + `,namespace=~"$namespace",pod=~"$pod"`
	selCgroup    = selPod + `,cgroup=~"$cgroup"`
	selShed      = `job=~"$shed_job"`
	selOneNode   = `job=~"$job",instance="$instance"`
	selOneCgroup = selOneNode + `,cgroup="$cgroup"`
)

func datasourceVar() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("datasource").
		Label("Data source").
		Type("prometheus")
}

// labelVar lists the values of label on metric. A multi-value variable
// defaults to All and sends ".*" for it rather than every value.
func labelVar(name, label, metric, labelName string, multi bool) *dashboard.QueryVariableBuilder {
	query := "label_values(" + metric + ", " + labelName + ")"
	b := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(multi).
		IncludeAll(multi)
	if multi {
		all := dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")}
		b.AllValue(".*").Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{String: cog.ToPtr("All")},
			Value:    all,
		})
	}
	return b
}
