package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/version"

	"github.com/scx-slo/scx-slo/collector"
	"github.com/scx-slo/scx-slo/internal/latencyhist"
	"github.com/scx-slo/scx-slo/internal/nodestatus"
	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// statusSource builds the node summary for /status and the landing page.
type statusSource struct {
	node   *app
	enf    *enforcerState
	cfg    collector.ConfigSource
	window *nodestatus.Window
}

func newStatusSource(node *app, enf *enforcerState, cfg collector.ConfigSource) *statusSource {
	return &statusSource{node: node, enf: enf, cfg: cfg, window: &nodestatus.Window{Span: 30 * time.Second}}
}

func (s *statusSource) stats() map[uint64]*slomaps.Stats {
	m, ok := s.node.SLOMaps()
	if !ok {
		return nil
	}
	st, err := m.ReadStats()
	if err != nil {
		return nil
	}
	return st
}

// sample snapshots the stats every 10 s so the status shows recent
// figures (over 30-40 s; each snapshot holds every cgroup's histogram).
func (s *statusSource) sample(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		if st := s.stats(); st != nil {
			s.window.Add(time.Now(), st)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *statusSource) build() *nodestatus.Status {
	capab, _ := scxcap.Probe(s.node.ScxPaths)
	ok, why := capab.Compatible()
	cfgOK, _, _ := s.cfg.LastReload()
	st := &nodestatus.Status{
		Version: version.Version, Mode: currentMode(s.node, s.enf), Hierarchy: s.node.Hierarchy.String(),
		KernelRelease: capab.KernelRelease, SchedExt: capab.Supported, SchedState: capab.State, SchedOps: capab.Ops,
		Compatible: ok, Incompatible: why, Enforcer: s.enf.describe(), ConfigOK: cfgOK, Generated: time.Now().UTC(),
	}
	if k := s.node.Kube; k != nil {
		st.Kubernetes = &nodestatus.Kubernetes{Node: k.node, ModeLabel: string(k.mode), Pods: k.watcher.Pods()}
	}
	now := time.Now()
	cur := s.stats()
	delta, span := s.window.Delta(now, cur)
	st.Window = "the exporter's lifetime"
	if span > 0 {
		st.Window = "the last " + span.Round(time.Second).String()
	}
	view := s.node.Sync.View()
	maps, haveMaps := s.node.SLOMaps()
	if delta == nil {
		delta = make(map[uint64]*slomaps.Stats)
	}
	// SLO cgroups get a row even before their first wakeup.
	for id := range view.SLOs {
		if _, ok := delta[id]; !ok {
			delta[id] = &slomaps.Stats{}
		}
	}
	for id, d := range delta {
		cg, known := view.Cgroups[id]
		if !known {
			continue
		}
		row := nodestatus.Cgroup{
			Path: cg.Path, Wakeups: d.Count, Deadlines: d.Deadlines, Misses: d.Misses,
			P50: latencyhist.Quantile(&d.Hist, 0.5), P99: latencyhist.Quantile(&d.Hist, 0.99),
		}
		if total, ok := cur[id]; ok {
			row.DeadlinesTotal, row.MissesTotal = total.Deadlines, total.Misses
		}
		if pod, ok := view.Pods[id]; ok {
			row.Pod, row.Container = pod.String(), pod.Container
		}
		if a, ok := view.SLOs[id]; ok {
			row.Budget = a.SLO.LatencyBudget.Seconds()
			row.Target = a.SLO.Target
			row.Source = a.Source
			if haveMaps {
				row.Overloaded, _ = maps.Overloaded(a.Slot)
			}
		} else if d.Count == 0 {
			continue // idle cgroups without an SLO only clutter the table
		}
		st.Cgroups = append(st.Cgroups, row)
	}
	return st
}

func (s *statusSource) serveJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = s.build().WriteJSON(w)
}

var landing = template.Must(template.New("landing").Parse(`<!DOCTYPE html>
<html><head><title>scx-slo</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}.over{color:#b00;font-weight:bold}</style>
</head><body>
<h1>scx-slo {{.S.Version}}</h1>
<p>Per-cgroup run-queue latency against SLOs. <a href="{{.Metrics}}">Metrics</a> · <a href="/status">Status (JSON)</a></p>
<pre>{{.Table}}</pre>
</body></html>
`))

func (s *statusSource) serveLanding(metricsPath string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		st := s.build()
		var table stringWriter
		_ = st.WriteTable(&table)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = landing.Execute(w, map[string]any{"S": st, "Metrics": metricsPath, "Table": table.String()})
	}
}

type stringWriter struct{ b []byte }

func (w *stringWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *stringWriter) String() string              { return string(w.b) }

// overloadState is the /overload answer: every SLO cgroup's bit, read live
// from the BPF map, for readers that cannot open the bpffs pins.
type overloadState struct {
	Cgroup     string `json:"cgroup"`
	ID         uint64 `json:"id"`
	Pod        string `json:"pod,omitempty"` // namespace/name, in Kubernetes mode
	Container  string `json:"container,omitempty"`
	Overloaded bool   `json:"overloaded"`
}

func (s *statusSource) serveOverload(w http.ResponseWriter, r *http.Request) {
	maps, ok := s.node.SLOMaps()
	if !ok {
		http.Error(w, "no BPF program loaded: overload state unknown", http.StatusServiceUnavailable)
		return
	}
	// ?cgroup=<path>, or ?pod=<namespace/name> (also accepted as
	// ?cgroup=, since a cgroup path starts with "/"): every SLO cgroup of
	// the pod's containers.
	q := r.URL.Query()
	want, pod := q.Get("cgroup"), q.Get("pod")
	if pod == "" && want != "" && !strings.HasPrefix(want, "/") && nodestatus.IsPodName(want) {
		want, pod = "", want
	}
	var out []overloadState
	for id, a := range s.node.Sync.View().SLOs {
		if (want != "" && a.Cgroup.Path != want) || (pod != "" && (a.Pod.IsZero() || a.Pod.String() != pod)) {
			continue
		}
		on, err := maps.Overloaded(a.Slot)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		st := overloadState{Cgroup: a.Cgroup.Path, ID: id, Overloaded: on}
		if !a.Pod.IsZero() {
			st.Pod, st.Container = a.Pod.String(), a.Pod.Container
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cgroup < out[j].Cgroup })
	if len(out) == 0 && (want != "" || pod != "") {
		if pod != "" {
			http.Error(w, fmt.Sprintf("pod %q has no SLO cgroup on this node", pod), http.StatusNotFound)
		} else {
			http.Error(w, fmt.Sprintf("cgroup %q has no SLO", want), http.StatusNotFound)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}
