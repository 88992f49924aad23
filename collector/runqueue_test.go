package collector

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/go-kit/log"
	dto "github.com/prometheus/client_model/go"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/latencyhist"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// A small node: two services under system.slice, a pod with two
// containers (c1 under an SLO), a user slice, and id 99, which the tracer
// saw but no walk found (removed since).
var nodePaths = map[uint64]string{
	1: "/",
	2: "/system.slice",
	3: "/system.slice/a.service",
	4: "/system.slice/b.service",
	5: "/kubepods/pod1/c1",
	6: "/kubepods/pod1/c2",
	7: "/user.slice",
}

// nodeWaits are the wakeups the tracer recorded per cgroup id.
var nodeWaits = map[uint64]uint64{1: 4, 2: 1, 3: 10, 4: 20, 5: 5, 6: 7, 7: 3, 99: 2}

func nodeStats(ids map[uint64]uint64) map[uint64]*slomaps.Stats {
	out := map[uint64]*slomaps.Stats{}
	for id, n := range ids {
		out[id] = waits(n, 10)
	}
	return out
}

// folded sums wakeups by label, as the runqueue collector reports them.
func folded(cfg RunqueueConfig, stats map[uint64]*slomaps.Stats) map[string]uint64 {
	lb := newLabeler(newTable(nodePaths, 5).view, cfg)
	out := map[string]uint64{}
	for p, g := range lb.fold(stats) {
		out[p] = g.count
	}
	return out
}

func TestFoldDepth(t *testing.T) {
	got := folded(RunqueueConfig{Depth: 1, MaxSeries: 100}, nodeStats(nodeWaits))
	want := map[string]uint64{
		"/":                 4,
		"/system.slice":     1 + 10 + 20, // both services fold into their slice
		"/kubepods/pod1/c1": 5,           // under an SLO: never folded
		"/kubepods":         7,
		"/user.slice":       3,
		OtherCgroup:         2, // the cgroup no walk knows
	}
	if !maps.Equal(got, want) {
		t.Errorf("depth 1:\n got %v\nwant %v", got, want)
	}
	if got := folded(RunqueueConfig{Depth: 2, MaxSeries: 100}, nodeStats(nodeWaits)); got["/kubepods/pod1"] != 7 || got["/system.slice/b.service"] != 20 {
		t.Errorf("depth 2: %v", got)
	}
}

func TestFoldIncludeGlobs(t *testing.T) {
	got := folded(RunqueueConfig{Include: []string{"/system.slice/*"}, MaxSeries: 100}, nodeStats(nodeWaits))
	want := map[string]uint64{
		"/system.slice/a.service": 10,
		"/system.slice/b.service": 20,
		"/kubepods/pod1/c1":       5,                 // SLO cgroups need no glob
		OtherCgroup:               4 + 1 + 7 + 3 + 2, // "/", the slice itself, c2, user, unknown
	}
	if !maps.Equal(got, want) {
		t.Errorf("include /system.slice/*:\n got %v\nwant %v", got, want)
	}
	// Globs apply to the folded path.
	got = folded(RunqueueConfig{Depth: 1, Include: []string{"/kube*"}, MaxSeries: 100}, nodeStats(nodeWaits))
	if got["/kubepods"] != 7 || got[OtherCgroup] != 4+1+10+20+3+2 {
		t.Errorf("depth 1, include /kube*: %v", got)
	}
}

func TestFoldMaxSeries(t *testing.T) {
	known := maps.Clone(nodeWaits)
	delete(known, 99)
	// Room for 4: the SLO cgroup, the two busiest others, and _other.
	got := folded(RunqueueConfig{MaxSeries: 4}, nodeStats(known))
	want := map[string]uint64{
		"/kubepods/pod1/c1":       5,
		"/system.slice/b.service": 20,
		"/system.slice/a.service": 10,
		OtherCgroup:               7 + 4 + 3 + 1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("max-series 4:\n got %v\nwant %v", got, want)
	}
	// _other already exists (the unknown id): it takes no extra room.
	got = folded(RunqueueConfig{MaxSeries: 3}, nodeStats(nodeWaits))
	want = map[string]uint64{"/kubepods/pod1/c1": 5, "/system.slice/b.service": 20, OtherCgroup: 2 + 10 + 7 + 4 + 3 + 1}
	if !maps.Equal(got, want) {
		t.Errorf("max-series 3 with an unknown id:\n got %v\nwant %v", got, want)
	}
	// SLO cgroups are reported even past the limit.
	got = folded(RunqueueConfig{MaxSeries: 1}, nodeStats(known))
	if len(got) != 2 || got["/kubepods/pod1/c1"] != 5 || got[OtherCgroup] != 45 {
		t.Errorf("max-series 1: %v", got)
	}
	// Everything fits: no _other at all.
	got = folded(RunqueueConfig{MaxSeries: 7}, nodeStats(known))
	if len(got) != 7 || got[OtherCgroup] != 0 {
		t.Errorf("max-series 7 for 7 cgroups: %v", got)
	}
}

func TestFoldTiesByName(t *testing.T) {
	got := folded(RunqueueConfig{MaxSeries: 3}, nodeStats(map[uint64]uint64{2: 8, 3: 8, 4: 8, 7: 8}))
	if len(got) != 3 || got["/system.slice"] != 8 || got["/system.slice/a.service"] != 8 || got[OtherCgroup] != 16 {
		t.Errorf("equal counts keep the first names in order: %v", got)
	}
}

func TestPreemptionPairsFollowLabels(t *testing.T) {
	lb := newLabeler(newTable(nodePaths, 5).view, RunqueueConfig{Include: []string{"/system.slice/*"}, MaxSeries: 100})
	lb.fold(nodeStats(nodeWaits))
	got := lb.pairs(map[runqueue.PreemptKey]uint64{
		{Victim: 3, By: 5}:  4, // a.service preempted by the SLO cgroup
		{Victim: 6, By: 7}:  2, // both fold into _other
		{Victim: 7, By: 2}:  1, // likewise: sums with the pair above
		{Victim: 4, By: 99}: 3, // the preemptor is unknown
	})
	want := map[[2]string]uint64{
		{"/system.slice/a.service", "/kubepods/pod1/c1"}: 4,
		{OtherCgroup, OtherCgroup}:                       3,
		{"/system.slice/b.service", OtherCgroup}:         3,
	}
	if !maps.Equal(got, want) {
		t.Errorf("pairs:\n got %v\nwant %v", got, want)
	}
}

// TestRunqueueScrape runs the collector through a registry: histograms
// sum the folded cgroups' buckets, waiting never goes negative, and every
// series is valid.
func TestRunqueueScrape(t *testing.T) {
	stats := nodeStats(nodeWaits)
	stats[3].SumNs, stats[4].SumNs = 1e6, 3e6
	stats[3].Waiting, stats[4].Waiting = 2, -5 // -5: tasks waiting before the tracer attached
	stats[6].Hist[20] = 1                      // a second bucket
	r := &readings{
		stats:    stats,
		preempts: map[runqueue.PreemptKey]uint64{{Victim: 3, By: 5}: 4},
		drops:    map[string]uint64{"map_full": 0, "no_storage": 6},
	}
	c, err := newRunqueueCollector(RunqueueConfig{Depth: 1, MaxSeries: 100}, Sources{Tracer: r, Cgroups: newTable(nodePaths, 5)}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	f := scrape(t, exporterOf(map[string]Collector{"runqueue": c}))
	lat := f["scx_slo_runqueue_latency_seconds"]
	if got := values(lat); got["/system.slice"] != 31 || got["/kubepods"] != 8 || len(got) != 6 {
		t.Errorf("latency counts: %v", got)
	}
	for _, m := range lat.Metric {
		if m.Label[0].GetValue() != "/system.slice" {
			continue
		}
		h := m.Histogram
		if h.GetSampleSum() != 0.004 {
			t.Errorf("/system.slice sum %v, want 0.004 s", h.GetSampleSum())
		}
		if len(h.Bucket) != len(latencyhist.Cumulative(new([latencyhist.Buckets]uint64))) {
			t.Errorf("%d buckets", len(h.Bucket))
		}
	}
	if got := values(f["scx_slo_runqueue_waiting_tasks"]); got["/system.slice"] != 0 {
		t.Errorf("waiting 2 + -5 must read 0, got %v", got["/system.slice"])
	}
	if got := values(f["scx_slo_runqueue_tracked_cgroups"]); got[""] != 8 {
		t.Errorf("tracked %v, want 8", got)
	}
	if got := values(f["scx_slo_runqueue_preemptions_total"]); got["/kubepods/pod1/c1,/system.slice"] != 4 { // by_cgroup sorts first
		t.Errorf("preemptions %v", got)
	}
	if got := values(f["scx_slo_runqueue_dropped_events_total"]); got["no_storage"] != 6 || got["map_full"] != 0 {
		t.Errorf("drops %v", got)
	}
	if got := values(f["scx_slo_scrape_collector_success"]); got["runqueue"] != 1 {
		t.Errorf("success %v", got)
	}
}

// TestRunqueueRewalksForNewCgroups: a cgroup the tracer saw but the last
// walk did not is looked up again before it would fall into _other.
func TestRunqueueRewalksForNewCgroups(t *testing.T) {
	tb := newTable(map[uint64]string{1: "/"})
	fresh := newTable(map[uint64]string{1: "/", 8: "/new.slice"}).view
	tb.rewalk = &fresh
	r := &readings{stats: nodeStats(map[uint64]uint64{1: 1, 8: 3})}
	c, err := newRunqueueCollector(RunqueueConfig{MaxSeries: 10}, Sources{Tracer: r, Cgroups: tb}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	f := scrape(t, exporterOf(map[string]Collector{"runqueue": c}))
	if got := values(f["scx_slo_runqueue_latency_seconds"]); got["/new.slice"] != 3 || tb.syncs != 1 {
		t.Errorf("after one re-walk: %v (%d walks)", got, tb.syncs)
	}
	scrape(t, exporterOf(map[string]Collector{"runqueue": c}))
	if tb.syncs != 1 {
		t.Errorf("re-walked again though every id is known (%d walks)", tb.syncs)
	}
}

func TestRunqueueConfigErrors(t *testing.T) {
	src := Sources{Tracer: &readings{}, Cgroups: newTable(nil)}
	for _, tc := range []struct {
		cfg  RunqueueConfig
		want string
	}{
		{RunqueueConfig{Include: []string{"/ok/*", "/bad["}, MaxSeries: 1}, `--collector.runqueue.cgroup="/bad["`},
		{RunqueueConfig{Depth: -1, MaxSeries: 1}, "--collector.runqueue.cgroup-depth=-1"},
		{RunqueueConfig{MaxSeries: 0}, "--collector.runqueue.max-series=0"},
	} {
		_, err := newRunqueueCollector(tc.cfg, src, log.NewNopLogger())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.cfg, err, tc.want)
		}
	}
	if _, err := newRunqueueCollector(RunqueueConfig{MaxSeries: 1}, Sources{Cgroups: newTable(nil)}, log.NewNopLogger()); err == nil {
		t.Errorf("no tracer: no error")
	}
}

// TestPodLabels: a pod's cgroups carry its namespace, pod and container;
// a cgroup folded into its pod-level ancestor carries that ancestor's pod
// (no container); other cgroups and _other carry empty labels; SLO series
// carry the assignment's pod.
func TestPodLabels(t *testing.T) {
	paths := maps.Clone(nodePaths)
	paths[8] = "/kubepods/pod1"
	tb := newTable(paths, 5)
	pod := slosync.Pod{Namespace: "shop", Name: "checkout-0"}
	c1, c2 := pod, pod
	c1.Container, c2.Container = "api", "sidecar"
	tb.view.Pods = map[uint64]slosync.Pod{8: pod, 5: c1, 6: c2}
	a := tb.view.SLOs[5]
	a.Pod = c1
	tb.view.SLOs[5] = a
	series := func(f *dto.MetricFamily) map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.Label {
				l[p.GetName()] = p.GetValue()
			}
			out[l["cgroup"]] = l
		}
		return out
	}
	want := func(ns, name, ctr string) map[string]string {
		return map[string]string{"namespace": ns, "pod": name, "container": ctr}
	}
	check := func(what string, got map[string]map[string]string, exp map[string]map[string]string) {
		t.Helper()
		for cg, w := range exp {
			l, ok := got[cg]
			if !ok {
				t.Errorf("%s: no series for %s (have %v)", what, cg, got)
				continue
			}
			for k, v := range w {
				if l[k] != v {
					t.Errorf("%s{cgroup=%q}: %s=%q, want %q", what, cg, k, l[k], v)
				}
			}
		}
	}
	stats := nodeStats(map[uint64]uint64{2: 1, 5: 5, 6: 7, 8: 1})
	r := &readings{stats: stats, preempts: map[runqueue.PreemptKey]uint64{{Victim: 6, By: 2}: 1}, overload: map[uint32]bool{}}
	for _, tc := range []struct {
		depth int
		want  map[string]map[string]string
	}{
		{0, map[string]map[string]string{
			"/kubepods/pod1/c1": want("shop", "checkout-0", "api"), "/kubepods/pod1/c2": want("shop", "checkout-0", "sidecar"),
			"/kubepods/pod1": want("shop", "checkout-0", ""), "/system.slice": want("", "", ""),
		}},
		{2, map[string]map[string]string{ // c2 folds into the pod; c1 has an SLO and stays
			"/kubepods/pod1/c1": want("shop", "checkout-0", "api"), "/kubepods/pod1": want("shop", "checkout-0", ""),
		}},
	} {
		c, err := newRunqueueCollector(RunqueueConfig{Depth: tc.depth, MaxSeries: 100}, Sources{Tracer: r, Cgroups: tb}, log.NewNopLogger())
		if err != nil {
			t.Fatal(err)
		}
		f := scrape(t, exporterOf(map[string]Collector{"runqueue": c}))
		check(fmt.Sprintf("latency at depth %d", tc.depth), series(f["scx_slo_runqueue_latency_seconds"]), tc.want)
		if tc.depth == 0 {
			check("preemptions", series(f["scx_slo_runqueue_preemptions_total"]), map[string]map[string]string{"/kubepods/pod1/c2": want("shop", "checkout-0", "sidecar")})
		}
	}
	c, err := newSLOCollector(Sources{Cgroups: tb, Deadlines: r.deadlineMaps, Config: r}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	f := scrape(t, exporterOf(map[string]Collector{"slo": c}))
	check("budget", series(f["scx_slo_budget_seconds"]), map[string]map[string]string{"/kubepods/pod1/c1": want("shop", "checkout-0", "api")})
}
