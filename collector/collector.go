// Package collector holds scx-slo's Prometheus collectors, one per file,
// registered by name with a factory in the node_exporter style: each gets
// a --collector.<name> / --no-collector.<name> flag, reads only the narrow
// interfaces in Sources, and logs with its name; every scrape reports
// scx_slo_scrape_collector_success, _duration_seconds and
// scx_slo_scrape_dropped_series_total per collector.
package collector

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

const namespace = "scx_slo"

// Collector is one named source of metrics. Update sends through out,
// which drops and counts what the client library would reject.
type Collector interface {
	Update(out *Series) error
}

// Sources are what the collectors read, each through the narrowest
// interface that serves it; a field is nil where the exporter runs without
// that part, and a collector that needs it refuses to start. The
// application (cmd/scx-slo) builds them from its own parts.
type Sources struct {
	// Tracer is the observe-mode tracer (runqueue).
	Tracer RunqueueStats
	// Cgroups maps cgroup ids to paths and SLOs (runqueue, slo).
	Cgroups CgroupView
	// Deadlines returns the maps of whichever program judges deadlines
	// now, ok false when none is loaded (slo).
	Deadlines func() (DeadlineMaps, bool)
	// Config reports the SLO config's reload state (slo).
	Config ConfigSource
	// ScxPaths locates sched_ext and BTF in sysfs (scx).
	ScxPaths scxcap.Paths
}

// CgroupView is the cgroup table collectors label series from.
type CgroupView interface {
	View() slosync.View
	// Refresh re-walks the hierarchy now for cgroups created since the
	// last walk; new cgroups are matched against SLOs incrementally, never
	// the whole config on the scrape path.
	Refresh() error
}

// ConfigSource is the slice of the SLO config watcher collectors read.
type ConfigSource interface {
	LastReload() (ok bool, lastSuccess time.Time, err error)
}

// factory builds one collector from the sources, with a logger tagged
// with the collector's name.
type factory func(src Sources, logger log.Logger) (Collector, error)

type registration struct {
	name    string
	enabled *bool
	factory factory
}

var registry []*registration

// registerCollector is called from each collector file's init.
func registerCollector(name string, defaultEnabled bool, f factory) {
	registry = append(registry, &registration{name: name, enabled: &defaultEnabled, factory: f})
}

type flagGroup interface {
	Flag(name, help string) *kingpin.FlagClause
}

// AddFlags registers --collector.<name> for every collector, plus the
// collectors' own options.
func AddFlags(a flagGroup) {
	sort.Slice(registry, func(i, j int) bool { return registry[i].name < registry[j].name })
	for _, r := range registry {
		def := "false"
		if *r.enabled {
			def = "true"
		}
		a.Flag("collector."+r.name, fmt.Sprintf("Enable the %s collector (default: %s).", r.name, map[string]string{"true": "enabled", "false": "disabled"}[def])).
			Default(def).BoolVar(r.enabled)
	}
	for _, add := range optionFlags {
		add(a)
	}
}

// optionFlags are collector-specific flags, added by collector files.
var optionFlags []func(flagGroup)

// Enabled reports whether the named collector is switched on.
func Enabled(name string) bool {
	for _, r := range registry {
		if r.name == name {
			return *r.enabled
		}
	}
	return false
}

// Exporter runs the enabled collectors on every scrape.
type Exporter struct {
	collectors map[string]Collector
	logger     log.Logger

	mu      sync.Mutex
	dropped map[string]float64 // series dropped so far, by collector
}

var (
	scrapeDuration = prometheus.NewDesc(prometheus.BuildFQName(namespace, "scrape", "collector_duration_seconds"),
		"scx_slo: duration of a collector scrape.", []string{"collector"}, nil)
	scrapeSuccess = prometheus.NewDesc(prometheus.BuildFQName(namespace, "scrape", "collector_success"),
		"scx_slo: whether a collector succeeded.", []string{"collector"}, nil)
	scrapeDropped = prometheus.NewDesc(prometheus.BuildFQName(namespace, "scrape", "dropped_series_total"),
		"scx_slo: series a collector built but dropped because the client library rejected them (or a second series with the same labels).", []string{"collector"}, nil)
)

// New builds the enabled collectors.
func New(src Sources, logger log.Logger) (*Exporter, error) {
	e := &Exporter{collectors: make(map[string]Collector), logger: logger, dropped: make(map[string]float64)}
	for _, r := range registry {
		if !*r.enabled {
			continue
		}
		c, err := r.factory(src, log.With(logger, "collector", r.name))
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", r.name, err)
		}
		e.collectors[r.name] = c
		e.dropped[r.name] = 0
	}
	return e, nil
}

// Names lists the enabled collectors.
func (e *Exporter) Names() []string {
	var out []string
	for n := range e.collectors {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Describe sends nothing: the metric set depends on the cgroups present, so
// the exporter is an unchecked collector.
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect runs every collector concurrently. A collector that panics
// fails this scrape's success metric, not the process.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for name, c := range e.collectors {
		wg.Add(1)
		go func(name string, c Collector) {
			defer wg.Done()
			begin := time.Now()
			out := newSeries(ch)
			err := update(c, out)
			out.done()
			success := 1.0
			if err != nil {
				success = 0
				level.Error(e.logger).Log("msg", "collector failed", "name", name, "duration_seconds", time.Since(begin).Seconds(), "err", err)
			}
			if out.dropped > 0 {
				level.Warn(e.logger).Log("msg", "dropped series", "name", name, "count", out.dropped, "first", out.firstErr)
			}
			e.mu.Lock()
			e.dropped[name] += float64(out.dropped)
			dropped := e.dropped[name]
			e.mu.Unlock()
			ch <- prometheus.MustNewConstMetric(scrapeDuration, prometheus.GaugeValue, time.Since(begin).Seconds(), name)
			ch <- prometheus.MustNewConstMetric(scrapeSuccess, prometheus.GaugeValue, success, name)
			ch <- prometheus.MustNewConstMetric(scrapeDropped, prometheus.CounterValue, dropped, name)
		}(name, c)
	}
	wg.Wait()
}

// update runs one collector, turning a panic into its error.
func update(c Collector, out *Series) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return c.Update(out)
}

// Disable switches the named collectors off, as --no-collector.<name>
// would: for modes decided after parsing (a node's mode label).
func Disable(names ...string) {
	for _, r := range registry {
		for _, n := range names {
			if r.name == n {
				*r.enabled = false
			}
		}
	}
}
