package collector

import (
	"errors"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// The slo collector exports each SLO cgroup's budget and its deadline
// accounting. The numbers come from the scheduler's maps while it is
// attached and from the tracer's otherwise: both share one layout
// (bpf/include/slo_account.h), so the metric names do not change with the
// mode.
func init() { registerCollector("slo", true, newSLOCollector) }

// DeadlineMaps is what the slo collector reads of the program judging
// deadlines (slomaps.Maps).
type DeadlineMaps interface {
	ReadStats() (map[uint64]*slomaps.Stats, error)
	Overloaded(slot uint32) (bool, error)
}

type sloCollector struct {
	cgroups                                       CgroupView
	deadlineMaps                                  func() (DeadlineMaps, bool)
	config                                        ConfigSource
	budget, importance, target, deadlines, misses *prometheus.Desc
	overloaded, reloadOK, reloadTime, noSlot      *prometheus.Desc
}

func newSLOCollector(src Sources, _ log.Logger) (Collector, error) {
	if src.Cgroups == nil || src.Config == nil || src.Deadlines == nil {
		return nil, errors.New("no SLO config (--slo.config-file) given")
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &sloCollector{
		cgroups: src.Cgroups, deadlineMaps: src.Deadlines, config: src.Config,
		budget:     d("budget_seconds", "The cgroup's latency budget from its SLO (config file, pod annotation or SLOPolicy).", perCgroupLabels...),
		importance: d("importance", "The cgroup's importance (1-1000) from its SLO.", perCgroupLabels...),
		target:     d("target_ratio", "Fraction of wakeups that must meet the budget.", perCgroupLabels...),
		deadlines:  d("deadlines_total", "Wakeups judged against the budget.", perCgroupLabels...),
		misses:     d("deadline_misses_total", "Wakeups that ran later than the budget.", perCgroupLabels...),
		overloaded: d("overloaded", "1 while the cgroup's recent miss rate is above 1 - target (cleared with hysteresis).", perCgroupLabels...),
		reloadOK:   d("config_last_reload_successful", "0 if the last SLO config reload was rejected."),
		reloadTime: d("config_last_reload_success_timestamp_seconds", "Time of the last successful SLO config load."),
		noSlot:     d("cgroups_without_slot", "Cgroups under an SLO that got none of the 4096 overload slots: not judged or enforced."),
	}, nil
}

func (c *sloCollector) Update(out *Series) error {
	ok, last, _ := c.config.LastReload()
	out.Gauge(c.reloadOK, BoolValue(ok))
	out.Gauge(c.reloadTime, float64(last.UnixNano())/1e9)

	view := c.cgroups.View()
	out.Gauge(c.noSlot, float64(view.WithoutSlot))
	maps, haveMaps := c.deadlineMaps()
	if !haveMaps {
		return errors.New("no BPF program is loaded to account deadlines")
	}
	stats, err := maps.ReadStats()
	if err != nil {
		return err
	}
	var errs []error
	for id, a := range view.SLOs {
		p := podLabels(a.Cgroup.Path, a.Pod)
		out.Gauge(c.budget, a.SLO.LatencyBudget.Seconds(), p...)
		out.Gauge(c.importance, float64(a.SLO.Importance), p...)
		out.Gauge(c.target, a.SLO.Target, p...)
		var met, missed float64
		if s, ok := stats[id]; ok {
			met, missed = float64(s.Deadlines), float64(s.Misses)
		}
		out.Counter(c.deadlines, met, p...)
		out.Counter(c.misses, missed, p...)
		on, err := maps.Overloaded(a.Slot)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Gauge(c.overloaded, BoolValue(on), p...)
	}
	return errors.Join(errs...)
}
