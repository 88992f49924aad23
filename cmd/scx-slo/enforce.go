package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/collector"
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

func (f *enforceFlags) validate() error {
	if f.guardBaseline < 0 {
		return fmt.Errorf("--enforce.guard-baseline=%s: must not be negative (0 disables the guard)", f.guardBaseline)
	}
	if f.guardWindow <= 0 {
		return fmt.Errorf("--enforce.guard-window=%s: must be positive", f.guardWindow)
	}
	return nil
}

// enforcerState is what the exporter knows of enforcement; it is also the
// collector of the scx_slo_enforcer_* metrics.
type enforcerState struct {
	requested                   bool
	enf                         *enforcer.Enforcer // nil when not enforcing
	logger                      log.Logger
	requestedDesc, attachedDesc *prometheus.Desc

	mu       sync.Mutex
	starting bool   // Start (guard baseline, then attach) still running
	failed   bool   // Start failed: observing for good
	reason   string // why enforcement is off, when it is
}

// newEnforcerState prepares the scheduler if --enforce was given and the
// kernel is compatible (run attaches it); otherwise it removes a pinned
// one (--enforce=false is the rollback). It never fails the exporter:
// enforcement problems leave it observing, with the reason in logs, status
// and metrics. onChange hears of every attach and detach.
func newEnforcerState(f *enforceFlags, node *app, onChange func(slomaps.Maps, bool), logger log.Logger) *enforcerState {
	e := &enforcerState{
		requested:     f.on,
		logger:        logger,
		reason:        "off (observe mode)",
		requestedDesc: prometheus.NewDesc("scx_slo_enforcer_requested", "1 if --enforce was given.", nil, nil),
		attachedDesc:  prometheus.NewDesc("scx_slo_enforcer_attached", "1 while the scx-slo scheduler is attached.", nil, nil),
	}
	if !f.on {
		releasePinned(f, logger)
		return e
	}
	if why := incompatible(node, logger); len(why) > 0 {
		e.reason = "kernel incompatible: " + strings.Join(why, "; ")
		level.Warn(logger).Log("msg", "--enforce given but this kernel cannot run the scheduler; observing only", "reasons", strings.Join(why, "; "))
		return e
	}
	opts := enforcer.Options{
		PinDir: f.pinDir, Partial: f.partial, KeepPinned: f.keepPinned,
		OnChange: onChange, Logger: log.With(logger, "component", "enforcer"),
	}
	if t := node.Tracer; t != nil {
		// One slos map and one overload array for both programs: the
		// published pins stay put when the scheduler attaches.
		tm := t.Maps()
		opts.Shared = slomaps.Maps{SLOs: tm.SLOs, Overload: tm.Overload}
		if f.guardBaseline > 0 {
			opts.Guard = &enforcer.Guard{Observe: tm, BaselineFor: f.guardBaseline, Window: f.guardWindow}
		}
	}
	enf, err := enforcer.New(opts)
	if err != nil {
		e.reason = "load failed: " + err.Error()
		level.Error(logger).Log("msg", "could not prepare the scheduler; observing only", "err", err)
		return e
	}
	e.enf, e.starting = enf, true
	return e
}

// incompatible lists why this kernel and hierarchy cannot run the
// scheduler (nothing when they can).
func incompatible(node *app, logger log.Logger) []string {
	capab, err := scxcap.Probe(node.ScxPaths)
	if err != nil {
		level.Warn(logger).Log("msg", "reading sched_ext state", "err", err)
	}
	_, why := capab.Compatible()
	if !node.Hierarchy.V2 {
		// The scheduler reads cgroup2 ids (p->cgroups->dfl_cgrp); SLOs keyed
		// by v1 cpu-hierarchy ids would never match.
		why = append(why, "the scheduler needs cgroup2, but latency is charged to "+node.Hierarchy.String()+" (use --cgroup.hierarchy=v2)")
	}
	return why
}

// run re-adopts a pinned scheduler or measures the guard baseline and
// attaches; it returns once that is done (or ctx ended), while the
// enforcer keeps watching in the background until stop.
func (e *enforcerState) run(ctx context.Context) {
	if e.enf == nil {
		return
	}
	err := e.enf.Start(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.starting = false
	if err != nil && ctx.Err() == nil {
		e.failed, e.reason = true, "load failed: "+err.Error()
		level.Error(e.logger).Log("msg", "could not start the scheduler; observing only", "err", err)
	}
}

func (e *enforcerState) maps() (slomaps.Maps, bool) {
	if e.enf == nil {
		return slomaps.Maps{}, false
	}
	return e.enf.Maps()
}

func (e *enforcerState) attached() bool { return e.enf != nil && e.enf.Attached() }

func (e *enforcerState) describe() string {
	if e.attached() {
		return "attached"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.enf != nil && e.starting:
		return "starting (guard baseline, then attach)"
	case e.enf != nil && !e.failed:
		return "requested, not attached (see logs and scx_slo_enforcer_exits_total)"
	}
	return e.reason
}

func (e *enforcerState) stop() {
	if e.enf != nil {
		e.enf.Stop()
	}
}

// releasePinned detaches a scheduler left pinned by an earlier run, so that
// restarting with --enforce=false is the one-line rollback.
func releasePinned(f *enforceFlags, logger log.Logger) {
	if err := enforcer.Detach(f.pinDir); err != nil {
		level.Warn(logger).Log("msg", "removing a pinned scheduler", "pin_dir", f.pinDir, "err", err)
	}
}

func (e *enforcerState) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.requestedDesc
	ch <- e.attachedDesc
	if e.enf != nil {
		e.enf.Describe(ch)
	}
}

func (e *enforcerState) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(e.requestedDesc, prometheus.GaugeValue, collector.BoolValue(e.requested))
	ch <- prometheus.MustNewConstMetric(e.attachedDesc, prometheus.GaugeValue, collector.BoolValue(e.attached()))
	if e.enf != nil {
		e.enf.Collect(ch)
	}
}

// modeCollector exports scx_slo_mode.
func modeCollector(node *app, e *enforcerState) prometheus.Collector {
	desc := prometheus.NewDesc("scx_slo_mode", "1 for the exporter's current mode.", []string{"mode"}, nil)
	return collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
		m := currentMode(node, e)
		for _, name := range []string{"off", "observe", "enforce"} {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, collector.BoolValue(m == name), name)
		}
	}}
}

// currentMode is off (no BPF loaded), observe or enforce (the scheduler
// attached).
func currentMode(node *app, e *enforcerState) string {
	switch {
	case e.attached():
		return "enforce"
	case node.off():
		return "off"
	}
	return "observe"
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
