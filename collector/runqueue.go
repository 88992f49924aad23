package collector

import (
	"errors"
	"fmt"
	"path"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

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
	registerCollector("runqueue", true, newRunqueueCollector)
	optionFlags = append(optionFlags, func(a flagGroup) {
		a.Flag("collector.runqueue.cgroup-depth", "Fold cgroups deeper than this into their ancestor at this depth (0: no folding).").
			Default("0").IntVar(&runqueueOpts.depth)
		a.Flag("collector.runqueue.cgroup", "Report only cgroups whose (folded) path matches this glob; repeatable. Default: all.").
			StringsVar(&runqueueOpts.include)
		a.Flag("collector.runqueue.max-series", "Report at most this many cgroups individually; the rest are summed as cgroup=\"_other\".").
			Default("200").IntVar(&runqueueOpts.maxSeries)
	})
}

// OtherCgroup labels the aggregate of cgroups not reported individually.
const OtherCgroup = "_other"

var runqueueOpts struct {
	depth     int
	include   []string
	maxSeries int
}

type runqueueCollector struct {
	node                                    *Node
	depth, maxSeries                        int
	include                                 []string
	latency, preempts, waiting, tracked, dr *prometheus.Desc
}

func newRunqueueCollector(n *Node) (Collector, error) {
	if n.Tracer == nil {
		return nil, errors.New("the run-queue tracer is not loaded")
	}
	for _, g := range runqueueOpts.include {
		if _, err := path.Match(g, "/"); err != nil {
			return nil, fmt.Errorf("--collector.runqueue.cgroup=%q: %v", g, err)
		}
	}
	if runqueueOpts.depth < 0 {
		return nil, fmt.Errorf("--collector.runqueue.cgroup-depth=%d: must be 0 or more", runqueueOpts.depth)
	}
	if runqueueOpts.maxSeries < 1 {
		return nil, fmt.Errorf("--collector.runqueue.max-series=%d: must be at least 1", runqueueOpts.maxSeries)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "runqueue", name), help, labels, nil)
	}
	return &runqueueCollector{
		node: n, depth: runqueueOpts.depth, include: runqueueOpts.include, maxSeries: runqueueOpts.maxSeries,
		latency:  d("latency_seconds", "Wakeup-to-run latency of the cgroup's tasks (also time runnable after a preemption).", "cgroup"),
		preempts: d("preemptions_total", "Times a runnable task of cgroup was switched out for a task of by_cgroup.", "cgroup", "by_cgroup"),
		waiting:  d("waiting_tasks", "Tasks of the cgroup currently runnable but not running.", "cgroup"),
		tracked:  d("tracked_cgroups", "Cgroups with an entry in the tracer's BPF map."),
		dr:       d("dropped_events_total", "Events the tracer could not record.", "reason"),
	}, nil
}

type latencyGroup struct {
	hist    [latencyhist.Buckets]uint64
	count   uint64
	sumNs   uint64
	waiting int64
	pinned  bool // an SLO cgroup: never folded into _other
}

// labeler maps cgroup ids to the label they are reported under.
type labeler struct {
	view    slosync.View
	depth   int
	include []string
	keep    map[string]bool // labels that survive the max-series cut
}

func (l *labeler) base(id uint64) (string, bool) {
	if a, ok := l.view.SLOs[id]; ok {
		return a.Cgroup.Path, true
	}
	cg, ok := l.view.Cgroups[id]
	if !ok {
		return OtherCgroup, false
	}
	p := cg.Path
	if l.depth > 0 {
		p = cgroupfs.Ancestor(p, l.depth)
	}
	if len(l.include) == 0 {
		return p, false
	}
	for _, g := range l.include {
		if ok, _ := path.Match(g, p); ok {
			return p, false
		}
	}
	return OtherCgroup, false
}

func (l *labeler) label(id uint64) string {
	p, _ := l.base(id)
	if l.keep != nil && !l.keep[p] {
		return OtherCgroup
	}
	return p
}

func (c *runqueueCollector) Update(out *Series) error {
	stats, err := c.node.Tracer.Maps().ReadStats()
	if err != nil {
		return err
	}
	view := c.view(stats)
	lb := &labeler{view: view, depth: c.depth, include: c.include}

	groups := make(map[string]*latencyGroup)
	for id, s := range stats {
		p, pinned := lb.base(id)
		g := groups[p]
		if g == nil {
			g = &latencyGroup{}
			groups[p] = g
		}
		g.pinned = g.pinned || pinned
		addStats(g, s)
	}
	lb.keep = c.cut(groups)
	for p, g := range groups {
		if !lb.keep[p] {
			o := groups[OtherCgroup]
			if o == nil {
				o = &latencyGroup{}
				groups[OtherCgroup] = o
			}
			addGroup(o, g)
			delete(groups, p)
		}
	}
	for p, g := range groups {
		out.Histogram(c.latency, g.count, float64(g.sumNs)/1e9, latencyhist.Cumulative(&g.hist), p)
		w := g.waiting
		if w < 0 {
			w = 0 // tasks that were waiting when the tracer attached
		}
		out.Gauge(c.waiting, float64(w), p)
	}
	out.Gauge(c.tracked, float64(len(stats)))

	pairs, err := c.node.Tracer.Preemptions()
	if err != nil {
		return err
	}
	byLabel := make(map[[2]string]uint64)
	for k, v := range pairs {
		byLabel[[2]string{lb.label(k.Victim), lb.label(k.By)}] += v
	}
	for k, v := range byLabel {
		out.Counter(c.preempts, float64(v), k[0], k[1])
	}

	drops, err := c.node.Tracer.Drops()
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
	v := c.node.Sync.View()
	for id := range stats {
		if _, ok := v.Cgroups[id]; !ok {
			_ = c.node.Sync.Sync() // errors are logged by the periodic pass
			return c.node.Sync.View()
		}
	}
	return v
}

// cut picks the labels reported individually: every SLO cgroup, then the
// busiest others up to maxSeries (one series is reserved for _other).
func (c *runqueueCollector) cut(groups map[string]*latencyGroup) map[string]bool {
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
	room := c.maxSeries - len(keep)
	if len(rest) > room {
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
