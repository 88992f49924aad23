package collector

import (
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// The tests feed collectors recorded readings (the values a tracer, the
// cgroup walk and the config would give) and run them through a real
// client_golang registry, which validates every series as a scrape does.

// readings is a tracer's state at one moment.
type readings struct {
	stats    map[uint64]*slomaps.Stats
	preempts map[runqueue.PreemptKey]uint64
	drops    map[string]uint64
	overload map[uint32]bool
}

func (r *readings) ReadStats() (map[uint64]*slomaps.Stats, error) { return r.stats, nil }
func (r *readings) Preemptions() (map[runqueue.PreemptKey]uint64, error) {
	return r.preempts, nil
}
func (r *readings) Drops() (map[string]uint64, error)    { return r.drops, nil }
func (r *readings) Overloaded(slot uint32) (bool, error) { return r.overload[slot], nil }
func (r *readings) deadlineMaps() (DeadlineMaps, bool)   { return r, true }
func (r *readings) LastReload() (bool, time.Time, error) { return true, time.Unix(1700000000, 0), nil }
func waits(n uint64, bucket int) *slomaps.Stats          { s := &slomaps.Stats{}; s.Hist[bucket] = n; return s }

// table is a cgroup walk's result; rewalk, if set, is the next walk's.
type table struct {
	view   slosync.View
	rewalk *slosync.View
	syncs  int
}

func (t *table) View() slosync.View { return t.view }
func (t *table) Refresh() error {
	t.syncs++
	if t.rewalk != nil {
		t.view = *t.rewalk
	}
	return nil
}

// newTable builds a view from id -> path, with SLOs on the ids in slo.
func newTable(paths map[uint64]string, slo ...uint64) *table {
	v := slosync.View{Cgroups: map[uint64]cgroupfs.Cgroup{}, SLOs: map[uint64]slosync.Assignment{}}
	for id, p := range paths {
		v.Cgroups[id] = cgroupfs.Cgroup{ID: id, Path: p}
	}
	for i, id := range slo {
		v.SLOs[id] = slosync.Assignment{
			Cgroup: v.Cgroups[id], Slot: uint32(i),
			SLO: sloconfig.SLO{Cgroup: v.Cgroups[id].Path, LatencyBudget: 2 * time.Millisecond, Target: 0.99, Importance: 10},
		}
	}
	return &table{view: v}
}

// scrape runs the named collectors once, as the exporter does.
func scrape(t *testing.T, e *Exporter) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func exporterOf(cs map[string]Collector) *Exporter {
	e := &Exporter{collectors: cs, logger: log.NewNopLogger(), dropped: map[string]float64{}}
	for n := range cs {
		e.dropped[n] = 0
	}
	return e
}

// values maps each series' non-empty label values (joined by ",", in
// label name order) to its value (the sample count for histograms). Empty
// labels are left out as Prometheus leaves them out.
func values(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		var key string
		for _, l := range m.Label {
			if l.GetValue() == "" {
				continue
			}
			if key != "" {
				key += ","
			}
			key += l.GetValue()
		}
		switch {
		case m.Histogram != nil:
			out[key] = float64(m.Histogram.GetSampleCount())
		case m.Counter != nil:
			out[key] = m.Counter.GetValue()
		case m.Gauge != nil:
			out[key] = m.Gauge.GetValue()
		}
	}
	return out
}
