package main

import (
	"github.com/go-kit/log"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/collector"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// app is what the exporter's parts share: the cgroup hierarchy, the
// loaded tracer, the SLO assignment and the enforcer's maps. Fields may be
// nil where the exporter runs without them. Collectors see only the
// narrow slices of it that collectorSources hands them.
type app struct {
	Hierarchy cgroupfs.Hierarchy
	Tracer    *runqueue.Tracer
	Sync      *slosync.Syncer
	// Config reports the SLO config and its reload state.
	Config configSource
	// Scheduler returns the attached scheduler's maps, ok false when not
	// attached (observe mode reads the tracer's maps instead).
	Scheduler func() (slomaps.Maps, bool)
	ScxPaths  scxcap.Paths
	// Kube is the Kubernetes side (nil outside Kubernetes mode).
	Kube   *kubeAgent
	Logger log.Logger
}

// off reports whether the exporter loaded no BPF (a node labelled
// scx-slo.io/mode=off, or every BPF collector switched off without
// --enforce, which always loads the tracer).
func (n *app) off() bool { return n.Tracer == nil }

// SLOMaps returns where deadline accounting currently comes from.
func (n *app) SLOMaps() (slomaps.Maps, bool) {
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

// collectorSources hands each collector what it reads and nothing more.
func (n *app) collectorSources() collector.Sources {
	src := collector.Sources{
		Cgroups:  n.Sync,
		Config:   n.Config,
		ScxPaths: n.ScxPaths,
		Deadlines: func() (collector.DeadlineMaps, bool) {
			m, ok := n.SLOMaps()
			return m, ok
		},
	}
	if n.Tracer != nil { // a nil *Tracer in the interface would not read as "absent"
		src.Tracer = tracerStats{n.Tracer}
	}
	return src
}

// tracerStats is the tracer as the runqueue collector reads it.
type tracerStats struct{ *runqueue.Tracer }

func (t tracerStats) ReadStats() (map[uint64]*slomaps.Stats, error) { return t.Maps().ReadStats() }
