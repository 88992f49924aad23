// Command scx-slo-shed is a reverse proxy that sheds load early (429/503
// with Retry-After) while the kernel reports its cgroup over its CPU
// latency budget. See docs/shedding.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
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

	"github.com/scx-slo/scx-slo/internal/boolflags"
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/logging"
	"github.com/scx-slo/scx-slo/internal/overload"
	"github.com/scx-slo/scx-slo/internal/shed"
	"github.com/scx-slo/scx-slo/internal/shedproxy"
)

// DefaultMetricsAddress is the sidecar's own /metrics port, next to the
// exporter's 9817.
const DefaultMetricsAddress = ":9818"

type flags struct {
	listen, upstream, cgroup, hierarchy, cgroupfs string
	pinDir, stateURL                              string
	stateTimeout                                  time.Duration
	status                                        int
	cfg                                           shed.Config
	rulesFile                                     string
	ruleSpecs                                     []string
	noProbes                                      bool
	proxy                                         shedproxy.Options
	server                                        shedproxy.ServerOptions
	drain                                         time.Duration
	web                                           *web.FlagConfig
	log                                           *logging.Config
}

func addFlags(app *kingpin.Application) *flags {
	f := &flags{cfg: shed.DefaultConfig()}
	c := &f.cfg.Controller
	app.Flag("listen", "Address the proxy listens on (HTTP/1.1 and h2c).").Default(":8080").StringVar(&f.listen)
	app.Flag("upstream", "The service behind the proxy, e.g. http://127.0.0.1:8081.").Required().StringVar(&f.upstream)
	app.Flag("upstream.preserve-host", "Send the client's Host header upstream (otherwise the upstream's).").Default("true").BoolVar(&f.proxy.PreserveHost)
	app.Flag("upstream.h2c", "Speak cleartext HTTP/2 to the upstream (disables Upgrade/websocket passthrough).").BoolVar(&f.proxy.H2C)
	app.Flag("upstream.dial-timeout", "Timeout for connecting to the upstream.").Default("5s").DurationVar(&f.proxy.DialTimeout)
	app.Flag("upstream.response-header-timeout", "How long to wait for the upstream's response headers (answer 504 after). 0: no limit.").Default("60s").DurationVar(&f.proxy.ResponseHeaderTimeout)
	app.Flag("upstream.idle-timeout", "How long idle upstream keep-alive connections are kept.").Default("90s").DurationVar(&f.proxy.IdleConnTimeout)
	app.Flag("upstream.max-idle-conns", "Idle keep-alive connections kept to the upstream.").Default("512").IntVar(&f.proxy.MaxIdleConns)
	app.Flag("read-header-timeout", "Timeout for reading a client's request headers.").Default("10s").DurationVar(&f.server.ReadHeaderTimeout)
	app.Flag("idle-timeout", "How long an idle client keep-alive connection is kept.").Default("120s").DurationVar(&f.server.IdleTimeout)
	app.Flag("drain-timeout", "On SIGTERM/SIGINT, how long in-flight requests may finish before the proxy exits.").Default("25s").DurationVar(&f.drain)

	app.Flag("cgroup", "Whose overload bit to follow: auto (this process's cgroup or its nearest ancestor with an SLO) or a cgroup path such as /kubepods.slice/pod1.").Default("auto").StringVar(&f.cgroup)
	app.Flag("cgroup.hierarchy", "Which cgroup hierarchy --cgroup is in: auto, v2 or v1 (the v1 cpu hierarchy); the exporter's choice.").Default("auto").EnumVar(&f.hierarchy, "auto", "v2", "v1")
	app.Flag("path.cgroupfs", "Where cgroup hierarchies are mounted.").Default("/sys/fs/cgroup").StringVar(&f.cgroupfs)
	app.Flag("state.pin-dir", "bpffs directory of the exporter's pinned overload map (read first). Empty: don't.").Default(overload.DefaultDir).StringVar(&f.pinDir)
	app.Flag("state.url", "The exporter's address, for its /overload endpoint (read when the pins can't be). Empty: don't.").Default("http://127.0.0.1:9817").StringVar(&f.stateURL)
	app.Flag("state.timeout", "Timeout of one /overload request.").Default("100ms").DurationVar(&f.stateTimeout)
	app.Flag("state.interval", "How often the overload state is read.").Default("5ms").DurationVar(&f.cfg.Interval)

	app.Flag("status", "Status code of shed answers: 429 or 503.").Default("429").IntVar(&f.status)
	app.Flag("retry-after", "Retry-After of shed answers (whole seconds, rounded up).").Default("1s").DurationVar(&f.cfg.RetryAfter)
	app.Flag("dry-run", "Count what would be shed (reason dry_run) but admit everything.").BoolVar(&f.cfg.DryRun)
	app.Flag("shed.floor", "Lowest admitted share of sheddable requests; 0 allows shedding all of them.").Default(fmt.Sprint(c.Floor)).Float64Var(&c.Floor)
	app.Flag("shed.decrease", "Factor applied to the admitted share every step while overloaded.").Default(fmt.Sprint(c.Decrease)).Float64Var(&c.Decrease)
	app.Flag("shed.increase", "Added to the admitted share every step while not overloaded.").Default(fmt.Sprint(c.Increase)).Float64Var(&c.Increase)
	app.Flag("shed.step", "How often the admitted share moves.").Default(c.Step.String()).DurationVar(&c.Step)
	app.Flag("shed.enter-after", "How long the bit must stay set before shedding starts.").Default(c.EnterAfter.String()).DurationVar(&c.EnterAfter)
	app.Flag("shed.exit-after", "How long the bit must stay clear before the share rises again.").Default(c.ExitAfter.String()).DurationVar(&c.ExitAfter)
	app.Flag("shed.backoff-window", "Stop shedding more if the cgroup is still overloaded this long into an episode. 0: never.").Default(c.BackoffWindow.String()).DurationVar(&c.BackoffWindow)
	app.Flag("rules.file", "YAML file of request rules (see docs/shedding.md).").StringVar(&f.rulesFile)
	app.Flag("rule", "A request rule, e.g. class=checkout,action=pass,method=POST,path=/api/checkout*. Repeatable; evaluated before --rules.file.").StringsVar(&f.ruleSpecs)
	app.Flag("no-default-probes", "Don't let kube-probe and /healthz, /readyz, /livez through by default.").BoolVar(&f.noProbes)
	f.web = kingpinflag.AddFlags(app, DefaultMetricsAddress)
	f.log = logging.AddFlags(app)
	return f
}

// rules builds the rule list: flags, then the file, then default probes.
func (f *flags) rules() ([]shed.Rule, error) {
	var out []shed.Rule
	for _, s := range f.ruleSpecs {
		r, err := shed.ParseRuleFlag(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if f.rulesFile != "" {
		rs, err := shed.LoadRules(f.rulesFile)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	if !f.noProbes {
		out = append(out, shed.DefaultProbeRules()...)
	}
	return out, nil
}

func main() {
	app := kingpin.New("scx-slo-shed", "Reverse proxy that sheds load early while the kernel reports its cgroup over its CPU latency budget.")
	app.Version(version.Print("scx-slo-shed"))
	app.HelpFlag.Short('h')
	f := addFlags(app)
	args, err := boolflags.Rewrite(app, os.Args[1:])
	if err == nil {
		_, err = app.Parse(args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "scx-slo-shed: %v\n", err)
		os.Exit(2)
	}
	if err := run(f); err != nil {
		fmt.Fprintf(os.Stderr, "scx-slo-shed: %v\n", err)
		os.Exit(1)
	}
}

// setup checks every flag and builds the pieces; errors here are the
// operator's to fix, so they name the flag and value.
func setup(f *flags, reg prometheus.Registerer, logger log.Logger) (*shed.Shedder, http.Handler, error) {
	f.cfg.Status = f.status
	if f.status != http.StatusTooManyRequests && f.status != http.StatusServiceUnavailable {
		return nil, nil, fmt.Errorf("--status=%d: must be 429 or 503", f.status)
	}
	if err := f.cfg.Controller.Validate(); err != nil {
		return nil, nil, fmt.Errorf("--shed.%w", err)
	}
	up, err := shedproxy.ParseUpstream(f.upstream)
	if err != nil {
		return nil, nil, err
	}
	f.proxy.Upstream, f.proxy.Log = up, logger
	if f.cfg.Rules, err = f.rules(); err != nil {
		return nil, nil, err
	}
	h, err := cgroupfs.Detect(f.cgroupfs, f.hierarchy)
	if err != nil {
		return nil, nil, err
	}
	// Only the pinned map needs cgroup ids (and so the cgroup's directory).
	target, err := shed.ResolveTarget(h, f.cgroup, f.pinDir != "")
	if err != nil {
		return nil, nil, err
	}
	var sources []shed.Source
	if f.pinDir != "" {
		sources = append(sources, shed.NewPinnedSource(f.pinDir, target))
	}
	if f.stateURL != "" {
		hs, err := shed.NewHTTPSource(f.stateURL, target, f.stateTimeout)
		if err != nil {
			return nil, nil, err
		}
		sources = append(sources, hs)
	}
	if len(sources) == 0 {
		return nil, nil, errors.New("--state.pin-dir and --state.url are both empty: nothing to read the overload state from")
	}
	s, err := shed.New(f.cfg, sources, reg, logger)
	if err != nil {
		return nil, nil, err
	}
	level.Info(logger).Log("msg", "following the overload state", "cgroups", target.String(), "hierarchy", h.String(), "upstream", up.String())
	return s, s.Middleware(shedproxy.New(f.proxy)), nil
}

func run(f *flags) error {
	logger := logging.New(f.log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("scx_slo_shed"), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, handler, err := setup(f, reg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	go s.Run(runCtx)

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen=%q: %w", f.listen, err)
	}
	srv := shedproxy.NewServer(handler, shedproxy.ServerOptions{ReadHeaderTimeout: f.server.ReadHeaderTimeout, IdleTimeout: f.server.IdleTimeout, Log: logger})
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Decision endpoint for Envoy ext_authz / NGINX auth_request.
	admit := s.AdmitHandler("/admit")
	mux.Handle("/admit", admit)
	mux.Handle("/admit/", admit)
	metrics := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- web.ListenAndServe(metrics, f.web, logging.Slog(logger)) }()
	level.Info(logger).Log("msg", "proxying", "listen", ln.Addr().String(), "version", version.Info())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Drain: stop accepting, let in-flight requests finish. The overload
	// reader keeps running meanwhile so shedding stays correct.
	level.Info(logger).Log("msg", "draining", "timeout", f.drain)
	dctx, cancel := context.WithTimeout(context.Background(), f.drain)
	defer cancel()
	err = srv.Shutdown(dctx)
	metrics.Close()
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	level.Info(logger).Log("msg", "drained")
	return nil
}
