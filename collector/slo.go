package collector

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The slo collector exports each SLO cgroup's budget and its deadline
// accounting. The numbers come from the scheduler's maps while it is
// attached and from the tracer's otherwise: both share one layout
// (bpf/include/slo_account.h), so the metric names do not change with the
// mode.
func init() { registerCollector("slo", true, newSLOCollector) }

type sloCollector struct {
	node                                          *Node
	budget, importance, target, deadlines, misses *prometheus.Desc
	overloaded, reloadOK, reloadTime              *prometheus.Desc
}

func newSLOCollector(n *Node) (Collector, error) {
	if n.Sync == nil || n.Config == nil {
		return nil, errors.New("no SLO config (--slo.config-file) given")
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &sloCollector{
		node:       n,
		budget:     d("budget_seconds", "The cgroup's latency budget from the SLO config.", "cgroup"),
		importance: d("importance", "The cgroup's importance (1-1000) from the SLO config.", "cgroup"),
		target:     d("target_ratio", "Fraction of wakeups that must meet the budget.", "cgroup"),
		deadlines:  d("deadlines_total", "Wakeups judged against the budget.", "cgroup"),
		misses:     d("deadline_misses_total", "Wakeups that ran later than the budget.", "cgroup"),
		overloaded: d("overloaded", "1 while the cgroup's recent miss rate is above 1 - target (cleared with hysteresis).", "cgroup"),
		reloadOK:   d("config_last_reload_successful", "0 if the last SLO config reload was rejected."),
		reloadTime: d("config_last_reload_success_timestamp_seconds", "Time of the last successful SLO config load."),
	}, nil
}

func (c *sloCollector) Update(out *Series) error {
	gauge := out.Gauge
	ok, last, _ := c.node.Config.LastReload()
	gauge(c.reloadOK, b2f(ok))
	gauge(c.reloadTime, float64(last.UnixNano())/1e9)

	view := c.node.Sync.View()
	maps, haveMaps := c.node.SLOMaps()
	if !haveMaps {
		return errors.New("no BPF program is loaded to account deadlines")
	}
	stats, err := maps.ReadStats()
	if err != nil {
		return err
	}
	var errs []error
	for id, a := range view.SLOs {
		p := a.Cgroup.Path
		gauge(c.budget, a.SLO.LatencyBudget.Seconds(), p)
		gauge(c.importance, float64(a.SLO.Importance), p)
		gauge(c.target, a.SLO.Target, p)
		var met, missed float64
		if s, ok := stats[id]; ok {
			met, missed = float64(s.Deadlines), float64(s.Misses)
		}
		out.Counter(c.deadlines, met, p)
		out.Counter(c.misses, missed, p)
		on, err := maps.Overloaded(a.Slot)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		gauge(c.overloaded, b2f(on), p)
	}
	return errors.Join(errs...)
}
