package collector

import (
	"errors"
	"fmt"
	"path"
	"sort"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/latencyhist"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// The runqueue collector exports the tracer's per-cgroup wakeup-to-run
// latency and who preempted whom. Cardinality is bounded in three steps:
// cgroups deeper than --collector.runqueue.cgroup-depth fold into their
// ancestor at that depth; cgroups matching no --collector.runqueue.cgroup
// glob fold into "_other"; past --collector.runqueue.max-series the
// busiest stay and the rest fold into "_other". SLO cgroups are always
// reported under their own path.
func init() {
	registerCollector("runqueue", true, func(src Sources, logger log.Logger) (Collector, error) {
		return newRunqueueCollector(runqueueFlags, src, logger)
	})
	optionFlags = append(optionFlags, func(a flagGroup) {
		a.Flag("collector.runqueue.cgroup-depth", "Fold cgroups deeper than this into their ancestor at this depth (0: no folding).").
			Default("0").IntVar(&runqueueFlags.Depth)
		a.Flag("collector.runqueue.cgroup", "Report only cgroups whose (folded) path matches this glob; repeatable. Default: all.").
			StringsVar(&runqueueFlags.Include)
		a.Flag("collector.runqueue.max-series", "Report at most this many cgroups individually; the rest are summed as cgroup=\"_other\".").
			Default("200").IntVar(&runqueueFlags.MaxSeries)
	})
}

// OtherCgroup labels the aggregate of cgroups not reported individually.
const OtherCgroup = "_other"

// perCgroupLabels are the labels of every per-cgroup series: the path, and
// the Kubernetes pod and container it belongs to (empty outside
// Kubernetes, for cgroups of no pod, and for _other). The pod labels are
// a function of the path, so they add no series.
var perCgroupLabels = []string{"cgroup", "namespace", "pod", "container"}

// podLabels are the values of perCgroupLabels for one cgroup.
func podLabels(path string, pod slosync.Pod) []string {
	return []string{path, pod.Namespace, pod.Name, pod.Container}
}

// RunqueueStats is what the runqueue collector reads of the tracer.
type RunqueueStats interface {
	ReadStats() (map[uint64]*slomaps.Stats, error)
	Preemptions() (map[runqueue.PreemptKey]uint64, error)
	Drops() (map[string]uint64, error)
}

// RunqueueConfig bounds the runqueue collector's series.
type RunqueueConfig struct {
	Depth     int      // fold deeper cgroups into their ancestor at this depth; 0: none
	Include   []string // report only (folded) paths matching one of these globs; none: all
	MaxSeries int      // report at most this many cgroups individually
}

var runqueueFlags RunqueueConfig

func (c RunqueueConfig) validate() error {
	for _, g := range c.Include {
		if _, err := path.Match(g, "/"); err != nil {
			return fmt.Errorf("--collector.runqueue.cgroup=%q: %v", g, err)
		}
	}
	if c.Depth < 0 {
		return fmt.Errorf("--collector.runqueue.cgroup-depth=%d: must be 0 or more", c.Depth)
	}
	if c.MaxSeries < 1 {
		return fmt.Errorf("--collector.runqueue.max-series=%d: must be at least 1", c.MaxSeries)
	}
	return nil
}

type runqueueCollector struct {
	cfg                                     RunqueueConfig
	tracer                                  RunqueueStats
	cgroups                                 CgroupView
	logger                                  log.Logger
	latency, preempts, waiting, tracked, dr *prometheus.Desc
}

func newRunqueueCollector(cfg RunqueueConfig, src Sources, logger log.Logger) (Collector, error) {
	if src.Tracer == nil {
		return nil, errors.New("the run-queue tracer is not loaded")
	}
	if src.Cgroups == nil {
		return nil, errors.New("no cgroup table to label series with")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "runqueue", name), help, labels, nil)
	}
	return &runqueueCollector{
		cfg: cfg, tracer: src.Tracer, cgroups: src.Cgroups, logger: logger,
		latency:  d("latency_seconds", "Wakeup-to-run latency of the cgroup's tasks (also time runnable after a preemption).", perCgroupLabels...),
		preempts: d("preemptions_total", "Times a runnable task of cgroup was switched out for a task of by_cgroup.", append(perCgroupLabels, "by_cgroup")...),
		waiting:  d("waiting_tasks", "Tasks of the cgroup currently runnable but not running.", perCgroupLabels...),
		tracked:  d("tracked_cgroups", "Cgroups with an entry in the tracer's BPF map."),
		dr:       d("dropped_events_total", "Events the tracer could not record.", "reason"),
	}, nil
}

func (c *runqueueCollector) Update(out *Series) error {
	stats, err := c.tracer.ReadStats()
	if err != nil {
		return err
	}
	lb := newLabeler(c.view(stats), c.cfg)
	for p, g := range lb.fold(stats) {
		l := lb.labels(p)
		out.Histogram(c.latency, g.count, float64(g.sumNs)/1e9, latencyhist.Cumulative(&g.hist), l...)
		out.Gauge(c.waiting, float64(max(g.waiting, 0)), l...) // < 0: tasks already waiting when the tracer attached
	}
	out.Gauge(c.tracked, float64(len(stats)))

	pairs, err := c.tracer.Preemptions()
	if err != nil {
		return err
	}
	for k, v := range lb.pairs(pairs) {
		out.Counter(c.preempts, float64(v), append(lb.labels(k[0]), k[1])...)
	}

	drops, err := c.tracer.Drops()
	if err != nil {
		return err
	}
	for reason, v := range drops {
		out.Counter(c.dr, float64(v), reason)
	}
	return nil
}

// view returns the id-to-path table, re-walking once if the tracer knows
// cgroups the last walk did not (created since).
func (c *runqueueCollector) view(stats map[uint64]*slomaps.Stats) slosync.View {
	v := c.cgroups.View()
	for id := range stats {
		if _, ok := v.Cgroups[id]; !ok {
			if err := c.cgroups.Refresh(); err != nil {
				level.Debug(c.logger).Log("msg", "re-walking cgroups for new ids", "err", err)
			}
			return c.cgroups.View()
		}
	}
	return v
}

type latencyGroup struct {
	hist    [latencyhist.Buckets]uint64
	count   uint64
	sumNs   uint64
	waiting int64
	pinned  bool // an SLO cgroup: never folded into _other
}

// labeler maps cgroup ids to the label they are reported under. It is
// pure: the cardinality rules live here and nowhere else.
type labeler struct {
	view slosync.View
	cfg  RunqueueConfig
	keep map[string]bool // labels that survive the max-series cut; set by fold
	pods map[string]slosync.Pod
}

func newLabeler(view slosync.View, cfg RunqueueConfig) *labeler {
	pods := make(map[string]slosync.Pod, len(view.Pods))
	for id, pod := range view.Pods {
		if cg, ok := view.Cgroups[id]; ok {
			pods[cg.Path] = pod
		}
	}
	return &labeler{view: view, cfg: cfg, pods: pods}
}

// labels are the values of perCgroupLabels for a label from fold or pairs:
// a folded path carries the pod of the ancestor it folded into.
func (l *labeler) labels(p string) []string { return podLabels(p, l.pods[p]) }

// base is the label before the max-series cut, and whether the cgroup is
// under an SLO (reported under its own path whatever the other rules say).
func (l *labeler) base(id uint64) (string, bool) {
	if a, ok := l.view.SLOs[id]; ok {
		return a.Cgroup.Path, true
	}
	cg, ok := l.view.Cgroups[id]
	if !ok {
		return OtherCgroup, false
	}
	p := cg.Path
	if l.cfg.Depth > 0 {
		p = cgroupfs.Ancestor(p, l.cfg.Depth)
	}
	if len(l.cfg.Include) == 0 {
		return p, false
	}
	for _, g := range l.cfg.Include {
		if ok, _ := path.Match(g, p); ok {
			return p, false
		}
	}
	return OtherCgroup, false
}

// label is the label a cgroup is reported under; call after fold.
func (l *labeler) label(id uint64) string {
	p, _ := l.base(id)
	if l.keep != nil && !l.keep[p] {
		return OtherCgroup
	}
	return p
}

// fold sums the per-cgroup stats by label, applying every rule, and
// remembers which labels survived the cut for label.
func (l *labeler) fold(stats map[uint64]*slomaps.Stats) map[string]*latencyGroup {
	groups := make(map[string]*latencyGroup)
	for id, s := range stats {
		p, pinned := l.base(id)
		g := groups[p]
		if g == nil {
			g = &latencyGroup{}
			groups[p] = g
		}
		g.pinned = g.pinned || pinned
		addStats(g, s)
	}
	l.keep = cut(groups, l.cfg.MaxSeries)
	// Sum the cut into a separate group: adding _other to the map while
	// ranging over it could visit it, fold it into itself and delete it.
	var other *latencyGroup
	for p, g := range groups {
		if !l.keep[p] {
			if other == nil {
				other = &latencyGroup{}
			}
			addGroup(other, g)
			delete(groups, p)
		}
	}
	if other != nil {
		if o := groups[OtherCgroup]; o != nil {
			addGroup(o, other)
		} else {
			groups[OtherCgroup] = other
		}
	}
	return groups
}

// pairs sums preemption counts by (victim label, preemptor label).
func (l *labeler) pairs(raw map[runqueue.PreemptKey]uint64) map[[2]string]uint64 {
	out := make(map[[2]string]uint64)
	for k, v := range raw {
		out[[2]string{l.label(k.Victim), l.label(k.By)}] += v
	}
	return out
}

// cut picks the labels reported individually: every SLO cgroup, then the
// busiest others up to maxSeries (one series is reserved for _other).
func cut(groups map[string]*latencyGroup, maxSeries int) map[string]bool {
	keep := make(map[string]bool)
	var rest []string
	for p, g := range groups {
		if g.pinned || p == OtherCgroup {
			keep[p] = true
		} else {
			rest = append(rest, p)
		}
	}
	sort.Slice(rest, func(i, j int) bool {
		if groups[rest[i]].count != groups[rest[j]].count {
			return groups[rest[i]].count > groups[rest[j]].count
		}
		return rest[i] < rest[j]
	})
	room := maxSeries - len(keep)
	if len(rest) > room && !keep[OtherCgroup] {
		room-- // the overflow needs an _other series
	}
	for i, p := range rest {
		if i >= room {
			break
		}
		keep[p] = true
	}
	return keep
}

func addStats(g *latencyGroup, s *slomaps.Stats) {
	// Count from the buckets, not s.Count: the two are bumped separately,
	// and a histogram whose +Inf bucket disagrees with its count is invalid.
	for i, v := range s.Hist {
		g.hist[i] += v
		g.count += v
	}
	g.sumNs += s.SumNs
	g.waiting += s.Waiting
}

func addGroup(dst, src *latencyGroup) {
	for i, v := range src.hist {
		dst.hist[i] += v
	}
	dst.count += src.count
	dst.sumNs += src.sumNs
	dst.waiting += src.waiting
}
