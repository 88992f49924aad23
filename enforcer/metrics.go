package enforcer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/bpf/scheduler"
)

// metrics are the enforcer's counters from docs/metrics.md; the exporter
// itself reports scx_slo_enforcer_requested and _attached.
type metrics struct {
	attempts *prometheus.CounterVec
	exits    *prometheus.CounterVec
	guard    prometheus.Counter
	events   *prometheus.Desc
}

func newMetrics() *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scx_slo_enforcer_attach_attempts_total", Help: "Attempts to attach the scx-slo scheduler, by result.",
		}, []string{"result"}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scx_slo_enforcer_exits_total", Help: "Times the kernel ejected the scx-slo scheduler, by exit kind.",
		}, []string{"kind"}),
		guard: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scx_slo_enforcer_guard_detaches_total", Help: "Detaches by the SLO attainment guard.",
		}),
		events: prometheus.NewDesc("scx_slo_enforcer_scheduler_events_total",
			"Scheduling decisions of the attached scx-slo scheduler, by event (its stats array; restarts from 0 on each attach).",
			[]string{"event"}, nil),
	}
	// Both results exist from the start so rate() works on the first failure.
	m.attempts.WithLabelValues("ok")
	m.attempts.WithLabelValues("error")
	return m
}

// Describe implements prometheus.Collector.
func (e *Enforcer) Describe(ch chan<- *prometheus.Desc) {
	e.metrics.attempts.Describe(ch)
	e.metrics.exits.Describe(ch)
	e.metrics.guard.Describe(ch)
	ch <- e.metrics.events
}

// Collect implements prometheus.Collector.
func (e *Enforcer) Collect(ch chan<- prometheus.Metric) {
	e.metrics.attempts.Collect(ch)
	e.metrics.exits.Collect(ch)
	e.metrics.guard.Collect(ch)
	// Only while attached: the counters live in the scheduler's map.
	if stats, err := e.Stats(); err == nil {
		for _, name := range scheduler.StatNames {
			ch <- prometheus.MustNewConstMetric(e.metrics.events, prometheus.CounterValue, float64(stats[name]), name)
		}
	}
}
