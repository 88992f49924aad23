// Package collector holds scx-slo's Prometheus collectors, one per file,
// registered by name in the node_exporter style: each gets a
// --collector.<name> / --no-collector.<name> flag, and every scrape reports
// scx_slo_scrape_collector_success and _duration_seconds per collector.
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

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

const namespace = "scx_slo"

// Collector is one named source of metrics. Update sends through out,
// which drops and counts what the client library would reject.
type Collector interface {
	Update(out *Series) error
}

// Node is what collectors share: the cgroup hierarchy, the loaded tracer,
// the SLO assignment and the enforcer's state. Fields may be nil where the
// exporter runs without them.
type Node struct {
	Hierarchy cgroupfs.Hierarchy
	Tracer    *runqueue.Tracer
	Sync      *slosync.Syncer
	// Config reports the SLO config and its reload state.
	Config ConfigSource
	// Scheduler returns the attached scheduler's maps, ok false when not
	// attached (observe mode reads the tracer's maps instead).
	Scheduler func() (slomaps.Maps, bool)
	ScxPaths  scxcap.Paths
	Logger    log.Logger
}

// ConfigSource is the slice of the SLO config watcher collectors read.
type ConfigSource interface {
	Current() *sloconfig.Config
	LastReload() (ok bool, lastSuccess time.Time, err error)
}

// SLOMaps returns where deadline accounting currently comes from.
func (n *Node) SLOMaps() (slomaps.Maps, bool) {
	if n.Scheduler != nil {
		if m, ok := n.Scheduler(); ok {
			return m, true
		}
	}
	if n.Tracer != nil {
		return n.Tracer.Maps(), true
	}
	return slomaps.Maps{}, false
}

type factory func(*Node) (Collector, error)

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
func New(node *Node) (*Exporter, error) {
	e := &Exporter{collectors: make(map[string]Collector), logger: node.Logger, dropped: make(map[string]float64)}
	for _, r := range registry {
		if !*r.enabled {
			continue
		}
		c, err := r.factory(node)
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
