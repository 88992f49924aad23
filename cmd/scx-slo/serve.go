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
	"github.com/cilium/ebpf"
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
	collector.AddFlags(cmd)
	cmd.Action(func(*kingpin.ParseContext) error { return serve(f) })
}

// staticConfig stands in for the watcher when no SLO file is given.
type staticConfig struct{}

func (staticConfig) Current() *sloconfig.Config           { return nil }
func (staticConfig) LastReload() (bool, time.Time, error) { return true, time.Time{}, nil }
func (staticConfig) Subscribe() <-chan *sloconfig.Config  { return nil }
func (staticConfig) Run(ctx context.Context) error        { <-ctx.Done(); return nil }

type configSource interface {
	collector.ConfigSource
	Subscribe() <-chan *sloconfig.Config
	Run(ctx context.Context) error
}

func serve(f *serveFlags) error {
	if os.Getenv("GOGC") == "" {
		// Each scrape builds every cgroup's histogram afresh: collecting
		// twice as often as Go's default keeps a 1,000-cgroup node under
		// 40 MB RSS for no measurable CPU (see BenchmarkExporterFootprint).
		debug.SetGCPercent(50)
	}
	logger := logging.New(f.log)
	level.Info(logger).Log("msg", "starting scx-slo", "version", version.Info())
	if f.resync <= 0 {
		return fmt.Errorf("--slo.resync-interval=%s: must be positive", f.resync)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if f.overloadPinDir != "" {
		defer overload.Unpublish(f.overloadPinDir)
		// Readers fail open once this stops (the process died).
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

	var cfg configSource = staticConfig{}
	if f.sloFile != "" {
		w, err := sloconfig.NewWatcher(f.sloFile, logger, sloconfig.WithSIGHUP())
		if err != nil {
			return err
		}
		cfg = w
	}

	node := &collector.Node{
		Hierarchy: hier,
		Config:    cfg,
		ScxPaths:  scxcap.Paths{SchedExt: filepath.Join(f.sysfs, "kernel/sched_ext"), BTF: filepath.Join(f.sysfs, "kernel/btf/vmlinux")},
		Logger:    logger,
	}
	if collector.Enabled("runqueue") || collector.Enabled("slo") || f.enforce.on {
		t, err := runqueue.Load(runqueue.Options{Hierarchy: hier, MaxCgroups: f.maxCgroups})
		if err != nil {
			return fmt.Errorf("%w (observe mode needs BPF tracepoints: run as root on a kernel with BTF, or pass --no-collector.runqueue --no-collector.slo)", err)
		}
		defer t.Close()
		node.Tracer = t
	}

	kick := make(chan struct{}, 1)
	kickSync := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	enf := newEnforcerState(f.enforce.on)
	node.Scheduler = enf.maps

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
	var sweepers []func(func(uint64) bool) error
	if node.Tracer != nil {
		sweepers = append(sweepers, node.Tracer.DeletePreemptions)
	}
	var generation func() (uint64, error)
	if node.Tracer != nil {
		generation = node.Tracer.CgroupGeneration
	}
	node.Sync = slosync.New(slosync.Options{
		Hierarchy: hier, Config: cfg.Current, Targets: targets, Sweepers: sweepers,
		IdleClear: f.idleClear, Generation: generation, Logger: logger,
	})
	if err := node.Sync.Sync(); err != nil {
		level.Warn(logger).Log("msg", "first SLO sync incomplete", "err", err)
	}
	// Attach only now: the tracer's SLO map is filled, so the guard can
	// measure its observe-mode baseline first.
	enf.start(ctx, &f.enforce, node, logger, func(slomaps.Maps) { kickSync() })

	exp, err := collector.New(node)
	if err != nil {
		return err
	}
	level.Info(logger).Log("msg", "enabled collectors", "collectors", fmt.Sprint(exp.Names()))

	reg := prometheus.NewRegistry()
	reg.MustRegister(exp, versioncollector.NewCollector("scx_slo"), modeCollector(enf), enf)
	if !f.noExporterMetric {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); followMode(ctx, node, enf, f.overloadPinDir, kickSync, logger) }()
	wg.Add(3)
	go func() { defer wg.Done(); _ = cfg.Run(ctx) }()
	go func() {
		defer wg.Done()
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
				kickSync()
			}
		}
	}()
	go func() { defer wg.Done(); node.Sync.Run(ctx.Done(), f.resync, kick) }()
	status := newStatusSource(node, enf, cfg)
	wg.Add(1)
	go func() { defer wg.Done(); status.sample(ctx) }()

	mux := http.NewServeMux()
	mux.Handle(f.metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: stdLogger{logger}, Registry: reg}))
	mux.HandleFunc("/status", status.serveJSON)
	mux.HandleFunc("/overload", status.serveOverload)
	mux.HandleFunc("/", status.serveLanding(f.metricsPath))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, f.web, logging.Slog(logger)) }()

	select {
	case err = <-errc:
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

// followMode keeps everything that depends on who judges deadlines in
// step with the scheduler: the published overload pins point at the
// authoritative maps (the scheduler's while attached, new ones after each
// re-attach), and the tracer stops judging while the scheduler does it.
func followMode(ctx context.Context, node *collector.Node, enf *enforcerState, pinDir string, kickSync func(), logger log.Logger) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var published *ebpf.Map
	first, was := true, false
	for {
		attached := enf.attached()
		if m, ok := node.SLOMaps(); ok && pinDir != "" && m.Overload != published {
			if err := overload.Publish(pinDir, m.SLOs, m.Overload); err != nil {
				level.Warn(logger).Log("msg", "not publishing overload bits in bpffs; readers must use /overload over HTTP", "err", err)
			}
			published = m.Overload
		}
		if first || attached != was {
			if node.Tracer != nil {
				if err := node.Tracer.JudgeSLOs(!attached); err != nil {
					level.Warn(logger).Log("msg", "switching the tracer's deadline accounting", "err", err)
				}
			}
			if !first {
				level.Info(logger).Log("msg", "deadline accounting source changed", "scheduler_attached", attached)
			}
			kickSync()
			first, was = false, attached
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stdLogger adapts go-kit to promhttp's Println logger.
type stdLogger struct{ l log.Logger }

func (s stdLogger) Println(v ...any) { level.Error(s.l).Log("msg", fmt.Sprint(v...)) }
