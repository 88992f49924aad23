package main

import (
	"context"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/enforcer"
	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

type enforceFlags struct {
	on         bool
	partial    bool
	keepPinned bool
	pinDir     string

	guardBaseline time.Duration
	guardWindow   time.Duration
}

func addEnforceFlags(cmd *kingpin.CmdClause, f *enforceFlags) {
	cmd.Flag("enforce", "Load the scx-slo sched_ext scheduler once the kernel is confirmed compatible. --enforce=false (or `scx-slo detach`) removes a pinned one.").BoolVar(&f.on)
	cmd.Flag("enforce.partial", "Schedule only tasks whose policy is SCHED_EXT; leave the rest to the default scheduler.").BoolVar(&f.partial)
	cmd.Flag("enforce.keep-pinned", "On exit, leave the scheduler attached (pinned in bpffs) so an upgrade does not flap it.").BoolVar(&f.keepPinned)
	cmd.Flag("enforce.guard-baseline", "Before attaching, observe this long to measure SLO attainment without the scheduler; the guard detaches the scheduler if attainment stays worse than that. 0 disables the guard.").Default("10s").DurationVar(&f.guardBaseline)
	cmd.Flag("enforce.guard-window", "Length of one guard window; three bad windows in a row detach the scheduler for good.").Default("1m").DurationVar(&f.guardWindow)
	cmd.Flag("enforce.pin-dir", "bpffs directory for the scheduler's pinned link and maps.").Default(enforcer.DefaultPinDir).StringVar(&f.pinDir)
}

// enforcerState is what the exporter knows of enforcement; it is also the
// collector of the scx_slo_enforcer_* metrics.
type enforcerState struct {
	requested                   bool
	reason                      string // why enforcement is off, "" while attached
	backend                     enforcerBackend
	requestedDesc, attachedDesc *prometheus.Desc
}

// enforcerBackend is the loaded scheduler's side; nil when not enforcing.
type enforcerBackend interface {
	prometheus.Collector
	Maps() (slomaps.Maps, bool)
	Attached() bool
	Stop()
}

func newEnforcerState(requested bool) *enforcerState {
	return &enforcerState{
		requested:     requested,
		reason:        "off (observe mode)",
		requestedDesc: prometheus.NewDesc("scx_slo_enforcer_requested", "1 if --enforce was given.", nil, nil),
		attachedDesc:  prometheus.NewDesc("scx_slo_enforcer_attached", "1 while the scx-slo scheduler is attached.", nil, nil),
	}
}

// start attaches the scheduler if --enforce was given and the kernel is
// compatible; otherwise it removes a pinned one (--enforce=false is the
// rollback). It never fails the exporter: enforcement problems leave it
// observing, with the reason in logs, status and metrics.
func (e *enforcerState) start(ctx context.Context, f *enforceFlags, node *app, logger log.Logger, onAttach func(slomaps.Maps)) {
	if !f.on {
		releasePinned(f, logger)
		return
	}
	capab, err := scxcap.Probe(node.ScxPaths)
	if err != nil {
		level.Warn(logger).Log("msg", "reading sched_ext state", "err", err)
	}
	ok, why := capab.Compatible()
	if !node.Hierarchy.V2 {
		// The scheduler reads cgroup2 ids (p->cgroups->dfl_cgrp); SLOs keyed
		// by v1 cpu-hierarchy ids would never match.
		ok, why = false, append(why, "the scheduler needs cgroup2, but latency is charged to "+node.Hierarchy.String()+" (use --cgroup.hierarchy=v2)")
	}
	if !ok {
		e.reason = "kernel incompatible: " + strings.Join(why, "; ")
		level.Warn(logger).Log("msg", "--enforce given but this kernel cannot run the scheduler; observing only", "reasons", strings.Join(why, "; "))
		return
	}
	guard := guardFromBaseline(ctx, f, node, logger)
	b, err := newEnforcerBackend(ctx, f, node, logger, onAttach, guard)
	if err != nil {
		e.reason = "load failed: " + err.Error()
		level.Error(logger).Log("msg", "could not start the scheduler; observing only", "err", err)
		return
	}
	e.backend = b
}

func (e *enforcerState) maps() (slomaps.Maps, bool) {
	if e.backend == nil {
		return slomaps.Maps{}, false
	}
	return e.backend.Maps()
}

func (e *enforcerState) attached() bool { return e.backend != nil && e.backend.Attached() }

func (e *enforcerState) describe() string {
	switch {
	case e.attached():
		return "attached"
	case e.backend != nil:
		return "requested, not attached (see logs and scx_slo_enforcer_exits_total)"
	}
	return e.reason
}

func (e *enforcerState) stop() {
	if e.backend != nil {
		e.backend.Stop()
	}
}

func (e *enforcerState) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.requestedDesc
	ch <- e.attachedDesc
	if e.backend != nil {
		e.backend.Describe(ch)
	}
}

func (e *enforcerState) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(e.requestedDesc, prometheus.GaugeValue, b2f(e.requested))
	ch <- prometheus.MustNewConstMetric(e.attachedDesc, prometheus.GaugeValue, b2f(e.attached()))
	if e.backend != nil {
		e.backend.Collect(ch)
	}
}

// modeCollector exports scx_slo_mode.
func modeCollector(e *enforcerState) prometheus.Collector {
	desc := prometheus.NewDesc("scx_slo_mode", "1 for the exporter's current mode.", []string{"mode"}, nil)
	return collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
		on := e.attached()
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, b2f(!on), "observe")
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, b2f(on), "enforce")
	}}
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
