package dashboards

import (
	"fmt"
	"strconv"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// CgroupUID is the per-cgroup drill-down's UID suffix.
const CgroupUID = "-cgroup"

func cgroupDashboard(cfg Config) *dashboard.DashboardBuilder {
	const rate = "[$__rate_interval]"
	tile, half, full := size{4, 4}, size{12, 8}, size{24, 8}
	misses := func(window string) string {
		return `sum(rate(scx_slo_deadline_misses_total{` + selOneCgroup + `}[` + window + `]))`
	}
	deadlines := func(window string) string {
		return `sum(rate(scx_slo_deadlines_total{` + selOneCgroup + `}[` + window + `]))`
	}
	budget := `(1 - max(scx_slo_target_ratio{` + selOneCgroup + `}))`
	missRatioRange := `(sum(increase(scx_slo_deadline_misses_total{` + selOneCgroup + `}[$__range])) / sum(increase(scx_slo_deadlines_total{` + selOneCgroup + `}[$__range])))`

	d := base(cfg, "scx-slo / cgroup", cfg.UIDPrefix+CgroupUID,
		"One cgroup on one node: its SLO, latency distribution, error budget burn and who preempts it. See docs/dashboards.md.").
		WithVariable(labelVar("job", "Job", "scx_slo_build_info", "job", true)).
		WithVariable(labelVar("instance", "Instance", `scx_slo_build_info{job=~"$job"}`, "instance", false)).
		// namespace and pod only narrow the cgroup list (Kubernetes mode).
		WithVariable(labelVar("namespace", "Namespace", `scx_slo_runqueue_latency_seconds_count{`+selOneNode+`}`, "namespace", true)).
		WithVariable(labelVar("pod", "Pod", `scx_slo_runqueue_latency_seconds_count{`+selOneNode+`,namespace=~"$namespace"}`, "pod", true)).
		WithVariable(labelVar("cgroup", "Cgroup", `scx_slo_runqueue_latency_seconds_count{`+selOneNode+`,namespace=~"$namespace",pod=~"$pod"}`, "cgroup", false))

	d.WithRow(row("SLO")).
		WithPanel(statValue("Budget", "scx_slo_budget_seconds: the latency a wakeup may wait before it counts as a miss.", "s", tile,
			q{`max(scx_slo_budget_seconds{` + selOneCgroup + `})`, "budget"})).
		WithPanel(statValue("Target", "scx_slo_target_ratio: the share of wakeups that must meet the budget.", "percentunit", tile,
			q{`max(scx_slo_target_ratio{` + selOneCgroup + `})`, "target"}).Decimals(3)).
		WithPanel(statValue("Importance", "scx_slo_importance (1-1000): how strongly the scheduler favours this cgroup's deadlines.", "none", tile,
			q{`max(scx_slo_importance{` + selOneCgroup + `})`, "importance"})).
		WithPanel(statValue("Attainment (range)", "Share of wakeups within budget over the dashboard time range.", "percentunit", tile,
			q{`1 - ` + missRatioRange, "attainment"}).Decimals(3)).
		WithPanel(statValue("Error budget left (range)", "Share of the error budget (1 - target) not spent over the dashboard time range; below zero the SLO is missed.", "percentunit", tile,
			q{`1 - ` + missRatioRange + ` / ` + budget, "budget left"}).
			Thresholds(thresholds(step(nil, "red"), step(cog.ToPtr(0.0), "orange"), step(cog.ToPtr(0.25), "green")))).
		WithPanel(statValue("Overloaded", "scx_slo_overloaded now.", "none", tile,
			q{`max(scx_slo_overloaded{` + selOneCgroup + `})`, "overloaded"}).
			Mappings(noYes("no", "yes")))

	var burnQueries []q
	for _, w := range []string{"5m", "1h", "6h"} {
		burnQueries = append(burnQueries, q{`(` + misses(w) + ` / ` + deadlines(w) + `) / ` + budget, w})
	}
	burn := timeSeries("Error budget burn rate", "Miss ratio divided by the error budget (1 - target) over three windows; 1 spends the budget exactly over the SLO period. Dashed lines mark the alert rules' burn-rate factors.", "x", half, burnQueries...)
	steps := []dashboard.Threshold{step(nil, "transparent")}
	for _, r := range cfg.BurnRates {
		steps = append(steps, step(cog.ToPtr(r), burnColor(r, cfg.BurnRates)))
	}
	burn.Thresholds(thresholds(steps...)).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		ScaleDistribution(common.NewScaleDistributionConfigBuilder().Type(common.ScaleDistributionLog).Log(10))

	d.WithRow(row("Latency")).
		WithPanel(heatmapOf("Run-queue latency", "Wakeup-to-run latency of this cgroup (scx_slo_runqueue_latency_seconds), per bucket.", half,
			`sum by (le) (increase(scx_slo_runqueue_latency_seconds_bucket{`+selOneCgroup+`}`+rate+`))`)).
		WithPanel(timeSeries("Latency quantiles vs budget", "p50, p90, p99 and p99.9 wakeup-to-run latency against the budget (dashed). Quantiles are interpolated inside histogram buckets.", "s", half,
			quantile("0.5"), quantile("0.9"), quantile("0.99"), quantile("0.999"),
			q{`max(scx_slo_budget_seconds{` + selOneCgroup + `})`, "budget"}).
			ScaleDistribution(common.NewScaleDistributionConfigBuilder().Type(common.ScaleDistributionLog).Log(10)).
			WithOverride(dashed("E"))).
		WithPanel(burn).
		WithPanel(timeSeries("Wakeups judged and missed", "scx_slo_deadlines_total (wakeups judged against the budget) and scx_slo_deadline_misses_total (those that missed it), per second.", "ops", half,
			q{deadlines("$__rate_interval"), "judged"},
			q{misses("$__rate_interval"), "missed"})).
		WithPanel(stateTimeline("Overloaded", "scx_slo_overloaded: 1 while the recent miss rate is above 1 - target (with hysteresis).", size{12, 5},
			noYes("ok", "overloaded"),
			q{`max(scx_slo_overloaded{` + selOneCgroup + `})`, "overloaded"})).
		WithPanel(timeSeries("Waiting tasks", "scx_slo_runqueue_waiting_tasks: this cgroup's tasks runnable but not running, sampled at scrape.", "short", size{12, 5},
			q{`sum(scx_slo_runqueue_waiting_tasks{` + selOneCgroup + `})`, "waiting"}))

	d.WithRow(row("Interference")).
		WithPanel(timeSeries("Preempted by (top 10)", "scx_slo_runqueue_preemptions_total: how often a runnable task of this cgroup was switched out, by the cgroup whose task took the CPU.", "ops", half,
			q{`topk(10, sum by (by_cgroup) (rate(scx_slo_runqueue_preemptions_total{` + selOneCgroup + `}` + rate + `)))`, "{{by_cgroup}}"})).
		WithPanel(timeSeries("Preempts (top 10)", "The other direction: cgroups whose runnable tasks this cgroup's tasks switched out.", "ops", half,
			q{`topk(10, sum by (cgroup) (rate(scx_slo_runqueue_preemptions_total{` + selOneNode + `,by_cgroup="$cgroup"}` + rate + `)))`, "{{cgroup}}"})).
		WithPanel(timeSeries("Node CPU queue by cgroup", "scx_slo_runqueue_waiting_tasks of every cgroup on this node, for context: is the node full, or only this cgroup?", "short", full,
			q{`sum by (cgroup) (scx_slo_runqueue_waiting_tasks{` + selOneNode + `})`, "{{cgroup}}"}).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal).Group("A")))
	return d
}

func quantile(phi string) q {
	p, _ := strconv.ParseFloat(phi, 64)
	return q{
		`histogram_quantile(` + phi + `, sum by (le) (rate(scx_slo_runqueue_latency_seconds_bucket{` + selOneCgroup + `}[$__rate_interval])))`,
		fmt.Sprintf("p%g", p*100),
	}
}

// burnColor shades the threshold lines: the highest factor (the fast page)
// red, the lowest (budget spent exactly over the period) yellow.
func burnColor(r float64, all []float64) string {
	switch r {
	case all[len(all)-1]:
		return "red"
	case all[0]:
		return "yellow"
	}
	return "orange"
}
