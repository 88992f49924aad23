package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/collector"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/logging"
	"github.com/scx-slo/scx-slo/internal/overload"
	"github.com/scx-slo/scx-slo/internal/pindir"
	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// DefaultListenAddress: 9817 is outside the ports Prometheus' exporter
// list had allocated as far as we could check; see README "Port".
const DefaultListenAddress = ":9817"

func init() { commands = append(commands, registerServe) }

type serveFlags struct {
	web              *web.FlagConfig
	log              *logging.Config
	metricsPath      string
	noExporterMetric bool
	sloFile          string
	resync           time.Duration
	idleClear        time.Duration
	hierarchy        string
	cgroupfs         string
	sysfs            string
	maxCgroups       uint32
	overloadPinDir   string
	enforce          enforceFlags
	kube             kubeFlags
}

func registerServe(app *kingpin.Application) {
	cmd := app.Command("serve", "Run the exporter (the default command).").Default()
	f := &serveFlags{}
	f.web = kingpinflag.AddFlags(cmd, DefaultListenAddress)
	cmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&f.metricsPath)
	cmd.Flag("web.disable-exporter-metrics", "Exclude the exporter's own go_* and process_* metrics.").BoolVar(&f.noExporterMetric)
	f.log = logging.AddFlags(cmd)
	cmd.Flag("slo.config-file", "SLO config (YAML, see docs/slo-config.md). Reloaded on SIGHUP and on change.").StringVar(&f.sloFile)
	cmd.Flag("slo.resync-interval", "How often to re-walk cgroups and re-apply SLOs to new ones.").Default("1s").DurationVar(&f.resync)
	cmd.Flag("slo.idle-clear", "Clear the overload bit of an SLO cgroup with no wakeups for this long.").Default("2s").DurationVar(&f.idleClear)
	cmd.Flag("cgroup.hierarchy", "Which cgroup hierarchy to charge latency to: auto, v2 or v1 (the v1 cpu hierarchy).").Default("auto").EnumVar(&f.hierarchy, "auto", "v2", "v1")
	cmd.Flag("path.cgroupfs", "Where cgroup hierarchies are mounted.").Default("/sys/fs/cgroup").StringVar(&f.cgroupfs)
	cmd.Flag("path.sysfs", "sysfs mount point.").Default("/sys").StringVar(&f.sysfs)
	cmd.Flag("bpf.max-cgroups", "Capacity of the per-cgroup BPF stats map.").Default("16384").Uint32Var(&f.maxCgroups)
	cmd.Flag("overload.pin-dir", "bpffs directory where the overload bits are published for readers on the node (scx-slo-shed). Empty: don't publish.").Default(overload.DefaultDir).StringVar(&f.overloadPinDir)
	addEnforceFlags(cmd, &f.enforce)
	addKubeFlags(cmd, &f.kube)
	collector.AddFlags(cmd)
	cmd.Action(func(*kingpin.ParseContext) error { return serve(f) })
}

// staticConfig stands in for the watcher when no SLO file is given; it
// answers SIGHUP with a log line (there is nothing to reload).
type staticConfig struct {
	hup    <-chan os.Signal
	logger log.Logger
}

func (staticConfig) Current() *sloconfig.Config           { return nil }
func (staticConfig) LastReload() (bool, time.Time, error) { return true, time.Time{}, nil }
func (staticConfig) Subscribe() <-chan *sloconfig.Config  { return nil }
func (c staticConfig) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.hup:
			level.Info(c.logger).Log("msg", "SIGHUP: no --slo.config-file to reload")
		}
	}
}

type configSource interface {
	collector.ConfigSource
	Current() *sloconfig.Config
	Subscribe() <-chan *sloconfig.Config
	Run(ctx context.Context) error
}

func serve(f *serveFlags) error {
	// Signals before anything else: a SIGTERM or SIGHUP during start-up
	// (which can last --enforce.guard-baseline) is handled, never fatal.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	tuneGC()
	logger := logging.New(f.log)
	level.Info(logger).Log("msg", "starting scx-slo", "version", version.Info())
	if err := f.validate(); err != nil {
		return err
	}
	if f.overloadPinDir != "" {
		// Readers fail open once this stops (the process died). Started
		// before anything is published: it clears a dead exporter's pins.
		hb, err := overload.StartHeartbeat(ctx, f.overloadPinDir)
		if errors.Is(err, pindir.ErrUnsafe) {
			return err
		}
		if err != nil {
			level.Warn(logger).Log("msg", "no heartbeat for the published overload bits; pinned readers will fail open", "err", err)
		}
		defer hb.Stop()
	}
	hier, err := cgroupfs.Detect(f.cgroupfs, f.hierarchy)
	if err != nil {
		return err
	}
	level.Info(logger).Log("msg", "charging latency to cgroups", "hierarchy", hier)
	cfg, err := newConfigSource(f.sloFile, hup, logger)
	if err != nil {
		return err
	}
	var kube *kubeAgent
	if f.kube.enabled() {
		// Before the tracer and the enforcer: the node's label decides
		// whether they load.
		restart := func(why string) {
			level.Info(logger).Log("msg", "exiting so that the DaemonSet restarts the agent in the new mode", "why", why)
			cancel()
		}
		if kube, err = startKube(ctx, f, restart, logger); err != nil {
			return fmt.Errorf("kubernetes mode: %w", err)
		}
		defer kube.watcher.Wait() // informers stop with ctx
		defer cancel()
	}
	node, closeNode, err := newNode(f, hier, cfg, logger)
	if err != nil {
		return err
	}
	defer closeNode()

	kick, kicked := newKicker()
	pub := newPublisher(f.overloadPinDir, logger)
	mode := &modeFollower{node: node, pub: pub, kick: kick, logger: logger}
	enf := newEnforcerState(&f.enforce, node, mode.follow, logger)
	node.Scheduler = enf.maps
	node.Kube = kube
	node.Sync = newSyncer(f, node, enf, cfg, logger)
	// In observe mode until the scheduler says otherwise: publish the
	// tracer's maps and let it judge deadlines.
	mode.follow(slomaps.Maps{}, false)
	if pub != nil {
		defer pub.Close()
	}

	reg, err := newRegistry(f, node, enf, logger)
	if err != nil {
		return err
	}
	status := newStatusSource(node, enf, cfg)
	srv, served := startHTTP(f, reg, status, logger)

	var wg sync.WaitGroup
	for _, run := range []func(){
		func() { _ = cfg.Run(ctx) },
		func() { applyConfigs(ctx, cfg, kick, logger) },
		func() { node.Sync.Run(ctx.Done(), f.resync, kicked) },
		func() { status.sample(ctx) },
		// Baseline and attach run while we already serve.
		func() { enf.run(ctx) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}

	select {
	case err = <-served:
		cancel()
	case <-ctx.Done():
		level.Info(logger).Log("msg", "shutting down")
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	enf.stop()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (f *serveFlags) validate() error {
	if f.resync <= 0 {
		return fmt.Errorf("--slo.resync-interval=%s: must be positive", f.resync)
	}
	if f.kube.enabled() {
		if err := f.kube.validate(); err != nil {
			return fmt.Errorf("kubernetes mode: %w", err)
		}
	}
	return f.enforce.validate()
}

// tuneGC: each scrape builds every cgroup's histogram afresh; collecting
// twice as often as Go's default keeps a 1,000-cgroup node under 40 MB
// RSS for no measurable CPU (see BenchmarkExporterFootprint).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}

// newConfigSource watches the SLO file (reloading on hup too), or stands
// in for it when there is none.
func newConfigSource(path string, hup <-chan os.Signal, logger log.Logger) (configSource, error) {
	if path == "" {
		return staticConfig{hup: hup, logger: logger}, nil
	}
	w, err := sloconfig.NewWatcher(path, logger, sloconfig.WithReloadSignals(hup))
	if err != nil {
		return nil, err
	}
	return w, nil
}

// newNode loads the tracer when a collector or the enforcer needs it.
func newNode(f *serveFlags, hier cgroupfs.Hierarchy, cfg configSource, logger log.Logger) (*app, func(), error) {
	node := &app{
		Hierarchy: hier,
		Config:    cfg,
		ScxPaths:  scxcap.Paths{SchedExt: filepath.Join(f.sysfs, "kernel/sched_ext"), BTF: filepath.Join(f.sysfs, "kernel/btf/vmlinux")},
		Logger:    logger,
	}
	if !collector.Enabled("runqueue") && !collector.Enabled("slo") && !f.enforce.on {
		return node, func() {}, nil
	}
	t, err := runqueue.Load(runqueue.Options{Hierarchy: hier, MaxCgroups: f.maxCgroups})
	if err != nil {
		return nil, nil, fmt.Errorf("%w (observe mode needs BPF tracepoints: run as root on a kernel with BTF, or pass --no-collector.runqueue --no-collector.slo)", err)
	}
	node.Tracer = t
	return node, func() { t.Close() }, nil
}

// newKicker returns a way to ask for an SLO sync now and the channel the
// syncer reads those requests from (one pending request is enough).
func newKicker() (kick func(), kicked <-chan struct{}) {
	ch := make(chan struct{}, 1)
	return func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}, ch
}

// newSyncer writes the SLO config into every program's maps (the
// tracer's and, while attached, the scheduler's) and runs a first sync so
// the maps are filled before the scheduler attaches.
func newSyncer(f *serveFlags, node *app, enf *enforcerState, cfg configSource, logger log.Logger) *slosync.Syncer {
	targets := func() []slomaps.Maps {
		var out []slomaps.Maps
		if node.Tracer != nil {
			out = append(out, node.Tracer.Maps())
		}
		if m, ok := enf.maps(); ok {
			out = append(out, m)
		}
		return out
	}
	opts := slosync.Options{Hierarchy: node.Hierarchy, Config: cfg.Current, Targets: targets, IdleClear: f.idleClear, Logger: logger}
	if node.Kube != nil {
		opts.Owners = node.Kube.watcher
	}
	if node.Tracer != nil {
		opts.Sweepers = []func(func(uint64) bool) error{node.Tracer.DeletePreemptions}
		opts.Generation = node.Tracer.CgroupGeneration
	}
	s := slosync.New(opts)
	if err := s.Sync(); err != nil {
		level.Warn(logger).Log("msg", "first SLO sync incomplete", "err", err)
	}
	return s
}

// applyConfigs asks for a sync whenever the watcher applied a new config.
func applyConfigs(ctx context.Context, cfg configSource, kick func(), logger log.Logger) {
	subs := cfg.Subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-subs:
			if !ok {
				subs = nil
				continue
			}
			level.Info(logger).Log("msg", "SLO config applied", "slos", len(c.SLOs))
			kick()
		}
	}
}

func newRegistry(f *serveFlags, node *app, enf *enforcerState, logger log.Logger) (*prometheus.Registry, error) {
	exp, err := collector.New(node.collectorSources(), logger)
	if err != nil {
		return nil, err
	}
	level.Info(logger).Log("msg", "enabled collectors", "collectors", fmt.Sprint(exp.Names()))
	reg := prometheus.NewRegistry()
	reg.MustRegister(exp, versioncollector.NewCollector("scx_slo"), modeCollector(node, enf), enf)
	if node.Kube != nil {
		reg.MustRegister(node.Kube)
	}
	if !f.noExporterMetric {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return reg, nil
}

// startHTTP serves /metrics, /status, /overload and the landing page;
// served delivers ListenAndServe's result.
func startHTTP(f *serveFlags, reg *prometheus.Registry, status *statusSource, logger log.Logger) (*http.Server, <-chan error) {
	mux := http.NewServeMux()
	// ContinueOnError: a series the registry rejects costs that series
	// (logged), not the whole scrape.
	mux.Handle(f.metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: stdLogger{logger}, ErrorHandling: promhttp.ContinueOnError, Registry: reg}))
	mux.HandleFunc("/status", status.serveJSON)
	mux.HandleFunc("/overload", status.serveOverload)
	mux.HandleFunc("/", status.serveLanding(f.metricsPath))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- web.ListenAndServe(srv, f.web, logging.Slog(logger)) }()
	return srv, served
}

// newPublisher returns the owner of the overload pins, or nil when not
// publishing (--overload.pin-dir= or bpffs unusable).
func newPublisher(dir string, logger log.Logger) *overload.Publisher {
	if dir == "" {
		return nil
	}
	p, err := overload.NewPublisher(dir)
	if err != nil {
		level.Warn(logger).Log("msg", "not publishing overload bits in bpffs; readers must use /overload over HTTP", "err", err)
		return nil
	}
	return p
}

// modeFollower keeps everything that depends on who judges deadlines in
// step with the enforcer, which tells it of every change
// (enforcer.Options.OnChange): the published overload pins point at the
// authoritative maps, the tracer judges only while the scheduler does
// not, and the SLO sync runs at once into new maps.
type modeFollower struct {
	node   *app
	pub    *overload.Publisher // nil: not publishing
	kick   func()
	logger log.Logger

	mu      sync.Mutex
	started bool
	judging bool // the tracer's setting
}

// follow is the enforcer's OnChange: sched are the scheduler's maps while
// attached.
func (m *modeFollower) follow(sched slomaps.Maps, attached bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	maps := sched
	if !attached && m.node.Tracer != nil {
		maps = m.node.Tracer.Maps()
	}
	if m.pub != nil && maps.SLOs != nil {
		repinned, err := m.pub.Publish(maps.SLOs, maps.Overload)
		if err != nil {
			level.Warn(m.logger).Log("msg", "publishing the overload bits in bpffs; readers must use /overload over HTTP", "err", err)
		} else if repinned {
			level.Debug(m.logger).Log("msg", "published the overload maps", "scheduler_attached", attached)
		}
	}
	if t := m.node.Tracer; t != nil && (!m.started || m.judging != !attached) {
		if err := t.JudgeSLOs(!attached); err != nil {
			level.Warn(m.logger).Log("msg", "switching the tracer's deadline accounting", "err", err)
		}
		if m.started {
			level.Info(m.logger).Log("msg", "deadline accounting source changed", "scheduler_attached", attached)
		}
		m.judging = !attached
	}
	m.started = true
	m.kick()
}

// stdLogger adapts go-kit to promhttp's Println logger.
type stdLogger struct{ l log.Logger }

func (s stdLogger) Println(v ...any) { level.Error(s.l).Log("msg", fmt.Sprint(v...)) }
