package alerts

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// File is a Prometheus rule file.
type File struct {
	Groups []Group `yaml:"groups"`
}

// Group is one rule group; its rules are evaluated in order.
type Group struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is a recording rule (Record set) or an alerting rule (Alert set).
type Rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Alert names; each has a section in docs/runbook.md.
const (
	AlertBudgetBurn         = "ScxSloErrorBudgetBurn"
	AlertCgroupOverloaded   = "ScxSloCgroupOverloaded"
	AlertEnforcerEjected    = "ScxSloEnforcerEjected"
	AlertGuardDetached      = "ScxSloEnforcerGuardDetached"
	AlertNotAttached        = "ScxSloEnforcerNotAttached"
	AlertKernelIncompatible = "ScxSloKernelIncompatible"
	AlertExporterDown       = "ScxSloExporterDown"
	AlertCollectorFailing   = "ScxSloCollectorFailing"
	AlertConfigReloadFailed = "ScxSloConfigReloadFailed"
	AlertEventsDropped      = "ScxSloRunqueueEventsDropped"
	AlertSlotsExhausted     = "ScxSloSlotsExhausted"
)

// MissRatioRecord is the name of the recording rule holding each cgroup's
// deadline miss ratio (the SLO error ratio) over window w.
func MissRatioRecord(w model.Duration) string {
	return "cgroup:scx_slo_deadline_miss_ratio:rate" + w.String()
}

// Build assembles the rule file for cfg.
func Build(cfg Config) (File, error) {
	if err := cfg.Validate(); err != nil {
		return File{}, err
	}
	extra, _ := parseMatchers("selector", cfg.Selector) // checked by Validate
	// The recording rules share a group with the burn-rate alerts that read
	// them: rules of one group run in order, so each alert sees the ratios
	// of the same evaluation rather than of the previous one.
	slo := Group{Name: "scx-slo.slo"}
	for _, w := range recordWindows(cfg.BurnWindows) {
		slo.Rules = append(slo.Rules, Rule{
			Record: MissRatioRecord(w),
			// Keep every label: the ratio must stay per target and per
			// cgroup so it lines up with scx_slo_target_ratio.
			Expr: fmt.Sprintf("rate(scx_slo_deadline_misses_total[%[1]s]) / rate(scx_slo_deadlines_total[%[1]s])", w),
		})
	}
	for _, w := range cfg.BurnWindows {
		slo.Rules = append(slo.Rules, burnAlert(cfg, w))
	}
	health := Group{Name: "scx-slo.health", Rules: otherAlerts(cfg)}
	f := File{Groups: []Group{slo, health}}
	for gi := range f.Groups {
		for ri := range f.Groups[gi].Rules {
			r := &f.Groups[gi].Rules[ri]
			e, err := normalize(r.Expr, extra)
			if err != nil {
				return File{}, fmt.Errorf("rule %s%s: %w", r.Record, r.Alert, err)
			}
			r.Expr = e
		}
	}
	return f, nil
}

// recordWindows lists every window a burn condition reads, shortest first
// and without repeats.
func recordWindows(ws []BurnWindow) []model.Duration {
	var out []model.Duration
	seen := map[model.Duration]bool{}
	for _, w := range ws {
		for _, d := range []model.Duration{w.Long, w.Short} {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	return out
}

func burnAlert(cfg Config, w BurnWindow) Rule {
	factor := strconv.FormatFloat(w.Factor, 'g', -1, 64)
	// The error budget is the allowed miss ratio, 1 - target; comparing
	// per series keeps each cgroup against its own target.
	cond := func(d model.Duration) string {
		return fmt.Sprintf("%s > %s * (1 - scx_slo_target_ratio)", MissRatioRecord(d), factor)
	}
	return Rule{
		Alert: AlertBudgetBurn,
		Expr:  "(" + cond(w.Long) + ") and (" + cond(w.Short) + ")",
		Labels: map[string]string{
			"severity":     w.Severity,
			"long_window":  w.Long.String(),
			"short_window": w.Short.String(),
		},
		Annotations: annotations(cfg, AlertBudgetBurn,
			fmt.Sprintf("cgroup {{ $labels.cgroup }} on {{ $labels.instance }} burns its latency error budget %sx too fast", factor),
			fmt.Sprintf("{{ $value | humanizePercentage }} of wakeups of {{ $labels.cgroup }} waited longer than its budget over the last %s, and the burn goes on over the last %s: that spends the error budget %s times as fast as the SLO allows.", w.Long, w.Short, factor)),
	}
}

func otherAlerts(cfg Config) []Rule {
	return []Rule{
		{
			Alert:  AlertCgroupOverloaded,
			Expr:   "scx_slo_overloaded == 1",
			For:    cfg.OverloadFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertCgroupOverloaded,
				"cgroup {{ $labels.cgroup }} on {{ $labels.instance }} is overloaded",
				fmt.Sprintf("The recent deadline miss rate of {{ $labels.cgroup }} has stayed above 1 - target for %s: the node can't give it the latency its SLO asks for.", cfg.OverloadFor)),
		},
		{
			Alert:  AlertEnforcerEjected,
			Expr:   counterRose("scx_slo_enforcer_exits_total", cfg.EventWindow),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertEnforcerEjected,
				"the kernel ejected the scx-slo scheduler on {{ $labels.instance }} ({{ $labels.kind }})",
				fmt.Sprintf("sched_ext exited the scx-slo scheduler with kind {{ $labels.kind }} in the last %s; tasks run under the kernel's default scheduler and SLOs are not enforced.", cfg.EventWindow)),
		},
		{
			Alert:  AlertGuardDetached,
			Expr:   counterRose("scx_slo_enforcer_guard_detaches_total", cfg.EventWindow),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertGuardDetached,
				"the attainment guard detached the scx-slo scheduler on {{ $labels.instance }}",
				fmt.Sprintf("In the last %s the guard saw SLO attainment get worse under enforcement and detached the scheduler.", cfg.EventWindow)),
		},
		{
			Alert: AlertNotAttached,
			// Incompatible kernels have their own alert.
			Expr:   "(scx_slo_enforcer_requested == 1) and (scx_slo_enforcer_attached == 0) and (scx_slo_enforce_compatible == 1)",
			For:    cfg.NotAttachedFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertNotAttached,
				"scx-slo runs with --enforce on {{ $labels.instance }} but its scheduler is not attached",
				fmt.Sprintf("Enforcement was requested and the kernel supports it, but the scheduler has not been attached for %s.", cfg.NotAttachedFor)),
		},
		{
			Alert:  AlertKernelIncompatible,
			Expr:   "(scx_slo_enforcer_requested == 1) and (scx_slo_enforce_compatible == 0)",
			For:    cfg.IncompatibleFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertKernelIncompatible,
				"scx-slo runs with --enforce on {{ $labels.instance }} but the kernel can't run its scheduler",
				"Enforcement was requested on a kernel that can't run the scx-slo scheduler; scx_slo_enforce_incompatible_info on this instance names the reasons."),
		},
		{
			Alert:  AlertExporterDown,
			Expr:   fmt.Sprintf("up{%s} == 0", cfg.JobSelector),
			For:    cfg.ExporterDownFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertExporterDown,
				"the scx-slo exporter on {{ $labels.instance }} is down",
				fmt.Sprintf("Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for %s: latency SLOs on this node are not observed, and no other scx-slo alert can fire for it.", cfg.ExporterDownFor)),
		},
		{
			Alert:  AlertCollectorFailing,
			Expr:   "scx_slo_scrape_collector_success == 0",
			For:    cfg.CollectorFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertCollectorFailing,
				"the {{ $labels.collector }} collector of scx-slo fails on {{ $labels.instance }}",
				fmt.Sprintf("The {{ $labels.collector }} collector has failed every scrape for %s; its metrics are missing or stale.", cfg.CollectorFor)),
		},
		{
			Alert:  AlertConfigReloadFailed,
			Expr:   "scx_slo_config_last_reload_successful == 0",
			For:    cfg.ReloadFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertConfigReloadFailed,
				"scx-slo on {{ $labels.instance }} rejected its SLO config",
				"The last reload of the SLO config was rejected; the exporter keeps using the last good config."),
		},
		{
			Alert:  AlertEventsDropped,
			Expr:   fmt.Sprintf("rate(scx_slo_runqueue_dropped_events_total[%s]) > 0", cfg.DroppedFor),
			For:    cfg.DroppedFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertEventsDropped,
				"scx-slo on {{ $labels.instance }} drops run-queue events ({{ $labels.reason }})",
				fmt.Sprintf("The BPF side could not record events (reason {{ $labels.reason }}) throughout the last %s: latency histograms and deadline counters undercount.", cfg.DroppedFor)),
		},
		{
			Alert:  AlertSlotsExhausted,
			Expr:   "scx_slo_cgroups_without_slot > 0",
			For:    cfg.SlotsFor.String(),
			Labels: sev(cfg.TicketSeverity),
			Annotations: annotations(cfg, AlertSlotsExhausted,
				"{{ $value }} SLO cgroups on {{ $labels.instance }} have no overload slot",
				fmt.Sprintf("For %s more cgroups have been under an SLO than the 4096 overload slots hold: {{ $value }} of them are neither judged nor enforced, and scx-slo-shed never sheds for them.", cfg.SlotsFor)),
		},
	}
}

// counterRose is true for a counter that grew within window. increase()
// alone misses the first event of a labelled counter whose series only
// appears with that event (absent, then 1), so a series that is new within
// the window and already above zero counts too.
func counterRose(counter string, window model.Duration) string {
	return fmt.Sprintf("increase(%[1]s[%[2]s]) > 0 or (%[1]s > 0 unless %[1]s offset %[2]s)", counter, window)
}

func sev(s string) map[string]string { return map[string]string{"severity": s} }

func annotations(cfg Config, alert, summary, description string) map[string]string {
	return map[string]string{
		"summary":     summary,
		"description": description,
		"runbook_url": cfg.RunbookBaseURL + "#" + strings.ToLower(alert),
	}
}

// header marks the file as generated so nobody edits it by hand.
const header = "# Code generated by `go generate ./alerts/...` (alerts/gen); DO NOT EDIT.\n# Source of truth: alerts/rules.go. Runbook: docs/runbook.md.\n"

// FileName is the rule file's name inside alerts/.
const FileName = "scx-slo.rules.yml"

// Render returns the rule file for cfg as YAML.
func Render(cfg Config) ([]byte, error) {
	f, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encode rule file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode rule file: %w", err)
	}
	return buf.Bytes(), nil
}

// Expressions returns the PromQL of every rule built from cfg.
func Expressions(cfg Config) ([]string, error) {
	f, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out, nil
}
