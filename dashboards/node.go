package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// NodeUID is the node overview's UID suffix.
const NodeUID = "-node"

func nodeDashboard(cfg Config) *dashboard.DashboardBuilder {
	const rate = "[$__rate_interval]"
	full, half, third, quarter := size{24, 8}, size{12, 8}, size{8, 7}, size{6, 7}
	tile := size{6, 4}

	d := base(cfg, "scx-slo / node overview", cfg.UIDPrefix+NodeUID,
		"Per node: scheduler state and mode, run-queue latency against each cgroup's SLO, CPU queue length, load shedding and the exporter's own health. See docs/dashboards.md.").
		WithVariable(labelVar("job", "Job", "scx_slo_build_info", "job", true)).
		WithVariable(labelVar("instance", "Instance", `scx_slo_build_info{job=~"$job"}`, "instance", true)).
		// Pods (Kubernetes mode) narrow the cgroups; outside Kubernetes
		// both lists are empty and All (".*") matches the empty labels.
		WithVariable(labelVar("namespace", "Namespace", `scx_slo_runqueue_latency_seconds_count{`+selNode+`}`, "namespace", true)).
		WithVariable(labelVar("pod", "Pod", `scx_slo_runqueue_latency_seconds_count{`+selNode+`,namespace=~"$namespace"}`, "pod", true)).
		WithVariable(labelVar("cgroup", "Cgroup", `scx_slo_runqueue_latency_seconds_count{`+selPod+`}`, "cgroup", true)).
		WithVariable(labelVar("shed_job", "Shedding job", "scx_slo_shed_admitted_ratio", "job", true))

	d.WithRow(row("Scheduler")).
		WithPanel(statNames("Mode", "scx_slo_mode: off (no BPF loaded), observe (measure only) or enforce (--enforce given, or the node labelled scx-slo.io/mode=enforce).", "no data", tile,
			q{`scx_slo_mode{` + selNode + `} == 1`, "{{instance}}: {{mode}}"})).
		WithPanel(statNames("sched_ext state", "scx_slo_scx_state: the kernel's sched_ext state (/sys/kernel/sched_ext/state).", "no data", tile,
			q{`scx_slo_scx_state{` + selNode + `} == 1`, "{{instance}}: {{state}}"})).
		WithPanel(statNames("Loaded BPF scheduler", "scx_slo_scx_ops_info: the sched_ext scheduler the kernel runs, whether ours or another.", "none", tile,
			q{`scx_slo_scx_ops_info{` + selNode + `}`, "{{instance}}: {{ops}}"})).
		WithPanel(statNames("Enforcement unavailable or degraded because", "scx_slo_enforce_incompatible_info: why this kernel can't run the scx-slo scheduler (empty when it can); scx_slo_enforce_degraded_info: scheduler features it runs without on this kernel (docs/metrics.md).", "compatible", tile,
			q{`scx_slo_enforce_incompatible_info{` + selNode + `}`, "{{instance}}: {{reason}}"},
			q{`scx_slo_enforce_degraded_info{` + selNode + `}`, "{{instance}}: without {{feature}}"})).
		WithPanel(stateTimeline("Enforcer requested / attached", "scx_slo_enforcer_requested (--enforce given) and scx_slo_enforcer_attached (our scheduler is running). Requested but not attached for long fires ScxSloEnforcerNotAttached.", half,
			valueText("0", "no", "transparent", "1", "yes", "green"),
			q{`scx_slo_enforcer_requested{` + selNode + `}`, "{{instance}} requested"},
			q{`scx_slo_enforcer_attached{` + selNode + `}`, "{{instance}} attached"})).
		WithPanel(timeSeries("Ejections, guard detaches, failed attaches", "How often the kernel ejected the scheduler (scx_slo_enforcer_exits_total by kind), the attainment guard detached it, or an attach failed.", "short", half,
			q{`sum by (instance, kind) (increase(scx_slo_enforcer_exits_total{` + selNode + `}` + rate + `))`, "{{instance}} ejected: {{kind}}"},
			q{`sum by (instance) (increase(scx_slo_enforcer_guard_detaches_total{` + selNode + `}` + rate + `))`, "{{instance}} guard detach"},
			q{`sum by (instance) (increase(scx_slo_enforcer_attach_attempts_total{` + selNode + `,result="error"}` + rate + `))`, "{{instance}} attach failed"}).
			DrawStyle(common.GraphDrawStyleBars)).
		WithPanel(timeSeries("sched_ext kernel events", "scx_slo_scx_events_total: the kernel's sched_ext event counters, and scx_slo_scx_nr_rejected, tasks the kernel refused to a BPF scheduler.", "short", half,
			q{`sum by (instance, event) (rate(scx_slo_scx_events_total{` + selNode + `}` + rate + `))`, "{{instance}} {{event}}"},
			q{`sum by (instance) (rate(scx_slo_scx_nr_rejected{` + selNode + `}` + rate + `))`, "{{instance}} rejected"})).
		WithPanel(timeSeries("scx-slo scheduler decisions", "scx_slo_enforcer_scheduler_events_total while our scheduler is attached: SLO wakeups that preempted later work (kick_preempt, preempt_local without an IPI), picks by class, best-effort work let in by the starvation bound (be_bound) or rescued, cpu.max parking. See docs/metrics.md.", "ops", half,
			q{`sum by (instance, event) (rate(scx_slo_enforcer_scheduler_events_total{` + selNode + `}` + rate + `))`, "{{instance}} {{event}}"}))

	canaryRow(d)

	d.WithRow(row("Latency SLOs")).
		WithPanel(heatmapOf("Run-queue latency", "Wakeup-to-run latency of the selected cgroups on the selected nodes (scx_slo_runqueue_latency_seconds), per bucket.", half,
			`sum by (le) (increase(scx_slo_runqueue_latency_seconds_bucket{`+selCgroup+`}`+rate+`))`)).
		WithPanel(timeSeries("p99 latency vs budget", "p99 wakeup-to-run latency per cgroup (solid) against its budget scx_slo_budget_seconds (dashed).", "s", half,
			q{`histogram_quantile(0.99, sum by (instance, namespace, pod, cgroup, le) (rate(scx_slo_runqueue_latency_seconds_bucket{` + selCgroup + `}` + rate + `)))`, "{{instance}} {{namespace}}/{{pod}} {{cgroup}} p99"},
			q{`scx_slo_budget_seconds{` + selCgroup + `}`, "{{instance}} {{namespace}}/{{pod}} {{cgroup}} budget"}).
			ScaleDistribution(common.NewScaleDistributionConfigBuilder().Type(common.ScaleDistributionLog).Log(10)).
			WithOverride(dashed("B"))).
		WithPanel(timeSeries("SLO attainment", "Share of wakeups that ran within the budget (1 - misses / deadlines), solid, against the target scx_slo_target_ratio, dashed.", "percentunit", half,
			q{`1 - (sum by (instance, namespace, pod, cgroup) (rate(scx_slo_deadline_misses_total{` + selCgroup + `}` + rate + `)) / sum by (instance, namespace, pod, cgroup) (rate(scx_slo_deadlines_total{` + selCgroup + `}` + rate + `)))`, "{{instance}} {{namespace}}/{{pod}} {{cgroup}}"},
			q{`scx_slo_target_ratio{` + selCgroup + `}`, "{{instance}} {{namespace}}/{{pod}} {{cgroup}} target"}).
			Max(1).
			WithOverride(dashed("B"))).
		WithPanel(timeSeries("Deadline misses", "Wakeups per second that ran later than the cgroup's budget (scx_slo_deadline_misses_total).", "ops", half,
			q{`sum by (instance, namespace, pod, cgroup) (rate(scx_slo_deadline_misses_total{` + selCgroup + `}` + rate + `))`, "{{instance}} {{namespace}}/{{pod}} {{cgroup}}"})).
		WithPanel(tableOf("SLO summary over the time range", "Per cgroup over the whole dashboard time range: attainment, target, and the share of the error budget (1 - target) left. Negative means the budget is spent.", full,
			[]string{"attainment", "target", "error budget left"},
			q{`1 - (sum by (instance, namespace, pod, cgroup) (increase(scx_slo_deadline_misses_total{` + selCgroup + `}[$__range])) / sum by (instance, namespace, pod, cgroup) (increase(scx_slo_deadlines_total{` + selCgroup + `}[$__range])))`, ""},
			q{`max by (instance, namespace, pod, cgroup) (scx_slo_target_ratio{` + selCgroup + `})`, ""},
			q{`1 - (sum by (instance, namespace, pod, cgroup) (increase(scx_slo_deadline_misses_total{` + selCgroup + `}[$__range])) / sum by (instance, namespace, pod, cgroup) (increase(scx_slo_deadlines_total{` + selCgroup + `}[$__range]))) / (1 - max by (instance, namespace, pod, cgroup) (scx_slo_target_ratio{` + selCgroup + `}))`, ""}).
			Unit("percentunit")).
		WithPanel(stateTimeline("Overloaded cgroups", "scx_slo_overloaded: 1 while a cgroup's recent miss rate is above 1 - target (with hysteresis). Held for long it fires ScxSloCgroupOverloaded.", half,
			noYes("ok", "overloaded"),
			q{`scx_slo_overloaded{` + selCgroup + `}`, "{{instance}} {{namespace}}/{{pod}} {{cgroup}}"})).
		WithPanel(timeSeries("CPU queue length", "scx_slo_runqueue_waiting_tasks: tasks runnable but not running, per cgroup, sampled at scrape; stacked per node.", "short", half,
			q{`sum by (instance, namespace, pod, cgroup) (scx_slo_runqueue_waiting_tasks{` + selCgroup + `})`, "{{instance}} {{namespace}}/{{pod}} {{cgroup}}"}).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal).Group("A")))

	d.WithRow(row("Load shedding (sidecar)")).
		WithPanel(timeSeries("Shed (429) requests", "Requests per second the shedding sidecar answered with 429 (scx_slo_shed_requests_total{outcome=\"shed\"}), by class and reason.", "reqps", quarter,
			q{`sum by (instance, class, reason) (rate(scx_slo_shed_requests_total{` + selShed + `,outcome="shed"}` + rate + `))`, "{{instance}} {{class}} {{reason}}"})).
		WithPanel(timeSeries("Shed fraction", "Share of requests shed, per class.", "percentunit", quarter,
			q{`sum by (instance, class) (rate(scx_slo_shed_requests_total{` + selShed + `,outcome="shed"}` + rate + `)) / sum by (instance, class) (rate(scx_slo_shed_requests_total{` + selShed + `}` + rate + `))`, "{{instance}} {{class}}"}).
			Max(1)).
		WithPanel(timeSeries("Admitted ratio and overload", "scx_slo_shed_admitted_ratio (share of requests the sidecar admits) and scx_slo_shed_overloaded (1 while it sheds).", "percentunit", quarter,
			q{`scx_slo_shed_admitted_ratio{` + selShed + `}`, "{{instance}} admitted ratio"},
			q{`scx_slo_shed_overloaded{` + selShed + `}`, "{{instance}} overloaded"}).
			Max(1)).
		WithPanel(timeSeries("Sidecar state read errors", "scx_slo_shed_state_read_errors_total: times the sidecar failed to read the exporter's overload state; while it can't, its shedding decisions are stale.", "ops", quarter,
			q{`sum by (instance) (rate(scx_slo_shed_state_read_errors_total{` + selShed + `}` + rate + `))`, "{{instance}}"}))

	d.WithRow(row("Exporter health")).
		WithPanel(stateTimeline("Scrape health", "up: whether Prometheus could scrape the exporter. Down for long fires ScxSloExporterDown.", third,
			yesNo("down", "up"),
			q{`up{job=~"$job",instance=~"$instance"}`, "{{instance}}"})).
		WithPanel(stateTimeline("Collector success", "scx_slo_scrape_collector_success per collector. Failing for long fires ScxSloCollectorFailing.", third,
			yesNo("failed", "ok"),
			q{`scx_slo_scrape_collector_success{` + selNode + `}`, "{{instance}} {{collector}}"})).
		WithPanel(timeSeries("Collector duration", "scx_slo_scrape_collector_duration_seconds: time each collector took per scrape.", "s", third,
			q{`scx_slo_scrape_collector_duration_seconds{` + selNode + `}`, "{{instance}} {{collector}}"})).
		WithPanel(timeSeries("Dropped events and series", "scx_slo_runqueue_dropped_events_total: events the BPF side could not record, by reason; non-zero means latency data undercounts. scx_slo_scrape_dropped_series_total: series a collector dropped (a cgroup label colliding after escaping, or rejected by the client library), by collector.", "ops", third,
			q{`sum by (instance, reason) (rate(scx_slo_runqueue_dropped_events_total{` + selNode + `}` + rate + `))`, "{{instance}} {{reason}}"},
			q{`sum by (instance, collector) (rate(scx_slo_scrape_dropped_series_total{` + selNode + `}` + rate + `))`, "{{instance}} {{collector}} series"})).
		WithPanel(timeSeries("Tracked cgroups", "scx_slo_runqueue_tracked_cgroups: cgroups with an entry in the BPF map. scx_slo_cgroups_without_slot: cgroups under an SLO that got no overload slot (neither judged nor enforced; above 0 for long fires ScxSloSlotsExhausted).", "short", third,
			q{`scx_slo_runqueue_tracked_cgroups{` + selNode + `}`, "{{instance}}"},
			q{`scx_slo_cgroups_without_slot{` + selNode + `}`, "{{instance}} without slot"})).
		WithPanel(stateTimeline("SLO config reloads", "scx_slo_config_last_reload_successful: whether the last reload of the SLO config was accepted.", third,
			yesNo("rejected", "ok"),
			q{`scx_slo_config_last_reload_successful{` + selNode + `}`, "{{instance}}"})).
		WithPanel(tableOf("Versions", "scx-slo build (scx_slo_build_info) and kernel release (scx_slo_kernel_info) per node, and whether the kernel has BTF (scx_slo_btf_present).", full,
			[]string{"", "", "BTF"},
			q{`scx_slo_build_info{` + selNode + `}`, ""},
			q{`scx_slo_kernel_info{` + selNode + `}`, ""},
			q{`scx_slo_btf_present{` + selNode + `}`, ""}))
	return d
}
