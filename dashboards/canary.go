package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// The canary row compares the selected nodes by the mode their agent runs
// in (a node's scx-slo.io/mode label in Kubernetes, --enforce elsewhere),
// so one enforcing node can be judged against the observing rest.
//
// currentMode is one series per agent, labelled with its mode.
const currentMode = `(scx_slo_mode{` + selNode + `} == 1)`

// byMode gives each series of a per-node expression its node's mode label.
func byMode(expr string) string {
	return `(` + expr + `) * on (job, instance) group_left (mode) ` + currentMode
}

// sloOnly keeps the series of cgroups that have an SLO.
func sloOnly(expr string) string {
	return `(` + expr + ` and on (job, instance, cgroup) scx_slo_budget_seconds{` + selNode + `})`
}

// perNode divides a sum by mode by the number of nodes in that mode: one
// canary against many observing nodes compares per node, not in total.
func perNode(sumByMode string) string {
	return sumByMode + ` / on (mode) count by (mode) ` + currentMode
}

func canaryRow(d *dashboard.DashboardBuilder) {
	const rate = "[$__rate_interval]"
	half, quarter := size{12, 8}, size{6, 7}
	d.WithRow(row("Canary: enforcing vs observing nodes")).
		WithPanel(statValue("Nodes per mode", "How many agents run in each mode (scx_slo_mode): a canary is typically one node labelled scx-slo.io/mode=enforce among observing ones.", "short", quarter,
			q{`count by (mode) ` + currentMode, "{{mode}}"}).
			TextMode(common.BigValueTextModeValueAndName)).
		WithPanel(timeSeries("SLO attainment by node mode", "Share of SLO wakeups that ran within their budget, over all SLO cgroups of the nodes in each mode (1 - misses / deadlines). The enforcing canary should sit above the observing nodes.", "percentunit", size{18, 7},
			q{`1 - sum by (mode) (` + byMode(`rate(scx_slo_deadline_misses_total{`+selCgroup+`}`+rate+`)`) + `) / sum by (mode) (` + byMode(`rate(scx_slo_deadlines_total{`+selCgroup+`}`+rate+`)`) + `)`, "{{mode}}"}).
			Max(1)).
		WithPanel(timeSeries("p99 run-queue latency of SLO cgroups by node mode", "p99 wakeup-to-run latency of the cgroups with an SLO, pooled over the nodes in each mode (scx_slo_runqueue_latency_seconds).", "s", half,
			q{`histogram_quantile(0.99, sum by (mode, le) (` + byMode(sloOnly(`rate(scx_slo_runqueue_latency_seconds_bucket{`+selCgroup+`}`+rate+`)`)) + `))`, "{{mode}} p99"},
			q{`histogram_quantile(0.5, sum by (mode, le) (` + byMode(sloOnly(`rate(scx_slo_runqueue_latency_seconds_bucket{`+selCgroup+`}`+rate+`)`)) + `))`, "{{mode}} p50"})).
		WithPanel(timeSeries("Overloaded SLO cgroups by node mode", "Share of SLO cgroups whose overload bit is set (scx_slo_overloaded), per mode.", "percentunit", half,
			q{`avg by (mode) (` + byMode(`scx_slo_overloaded{`+selCgroup+`}`) + `)`, "{{mode}}"}).
			Max(1)).
		WithPanel(timeSeries("Preemptions of SLO cgroups per node, by node mode", "Times per second a runnable task of an SLO cgroup was switched out for another cgroup's task (scx_slo_runqueue_preemptions_total), averaged per node of each mode.", "ops", half,
			q{perNode(`sum by (mode) (` + byMode(sloOnly(`sum by (job, instance, cgroup) (rate(scx_slo_runqueue_preemptions_total{`+selCgroup+`}`+rate+`))`)) + `)`), "{{mode}}"})).
		WithPanel(timeSeries("Deadline misses per node, by node mode", "SLO wakeups per second that ran later than their budget (scx_slo_deadline_misses_total), averaged per node of each mode.", "ops", half,
			q{perNode(`sum by (mode) (` + byMode(`rate(scx_slo_deadline_misses_total{`+selCgroup+`}`+rate+`)`) + `)`), "{{mode}}"}))
}
