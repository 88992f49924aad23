package shed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/internal/overload"
)

// Config is everything a Shedder needs besides its sources.
type Config struct {
	// Status answers shed requests: 429 or 503.
	Status int
	// RetryAfter goes out as the Retry-After header, in whole seconds
	// (rounded up).
	RetryAfter time.Duration
	// Interval is how often the state is read; the issue asks for 5 ms.
	Interval time.Duration
	// DryRun counts what would be shed but admits everything.
	DryRun bool
	// Rules classify requests; first match wins. Put DefaultProbeRules
	// at the end to let probes through.
	Rules      []Rule
	Controller ControllerConfig
}

// DefaultConfig answers 429 with Retry-After: 1 and reads every 5 ms.
func DefaultConfig() Config {
	return Config{
		Status:     http.StatusTooManyRequests,
		RetryAfter: time.Second,
		Interval:   5 * time.Millisecond,
		Rules:      DefaultProbeRules(),
		Controller: DefaultControllerConfig(),
	}
}

func (c Config) validate() error {
	if c.Status != http.StatusTooManyRequests && c.Status != http.StatusServiceUnavailable {
		return fmt.Errorf("status %d: must be 429 or 503", c.Status)
	}
	if c.RetryAfter < 0 {
		return fmt.Errorf("retry-after %v: must not be negative", c.RetryAfter)
	}
	if c.Interval <= 0 {
		return fmt.Errorf("interval %v: must be greater than 0", c.Interval)
	}
	return c.Controller.Validate()
}

// Reasons, the reason label of scx_slo_shed_requests_total.
const (
	ReasonNotOverloaded = "not_overloaded" // admitted: no overload episode
	ReasonWithinShare   = "within_share"   // admitted: drew within the admitted fraction
	ReasonPriority      = "priority"       // admitted: a pass rule matched
	ReasonProbe         = "probe"          // admitted: a probe rule matched
	ReasonFailOpen      = "fail_open"      // admitted: the state could not be read
	ReasonNoSLO         = "no_slo"         // admitted: the cgroup has no SLO
	ReasonDryRun        = "dry_run"        // admitted: would have been shed
	ReasonOverloaded    = "overloaded"     // shed
)

var reasons = []string{ReasonNotOverloaded, ReasonWithinShare, ReasonPriority, ReasonProbe, ReasonFailOpen, ReasonNoSLO, ReasonDryRun, ReasonOverloaded}

const (
	rNotOverloaded = iota
	rWithinShare
	rPriority
	rProbe
	rFailOpen
	rNoSLO
	rDryRun
	rOverloaded
)

// stateKind is what the last read said.
type stateKind uint8

const (
	stateUnknown stateKind = iota // never read, or the last read failed
	stateNoSLO
	stateOK
)

// snapshot is what the request path sees; replaced whole, never mutated.
type snapshot struct {
	kind       stateKind
	overloaded bool    // the raw bit
	shedding   bool    // the controller is in an episode
	backoff    bool    // the controller holds its fraction
	fraction   float64 // admitted share of sheddable requests
	source     string
}

// Shedder decides, per request, whether to admit it. Run reads the state;
// Middleware and Admit only load an atomic pointer.
type Shedder struct {
	cfg        Config
	sources    []Source
	logger     log.Logger
	classifier *classifier
	retryAfter string

	state atomic.Pointer[snapshot]
	ctrl  *Controller

	requests   [][]prometheus.Counter // [class][reason]
	readErrors map[string]prometheus.Counter
	staleReads map[string]prometheus.Counter
}

// New checks cfg and registers the metrics with reg. sources are tried in
// order on every read; the first that answers wins.
func New(cfg Config, sources []Source, reg prometheus.Registerer, logger log.Logger) (*Shedder, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctrl, err := NewController(cfg.Controller)
	if err != nil {
		return nil, err
	}
	s := &Shedder{
		cfg:        cfg,
		sources:    sources,
		logger:     logger,
		classifier: newClassifier(cfg.Rules),
		retryAfter: strconv.FormatInt(int64(math.Ceil(cfg.RetryAfter.Seconds())), 10),
		ctrl:       ctrl,
		readErrors: map[string]prometheus.Counter{},
		staleReads: map[string]prometheus.Counter{},
	}
	s.state.Store(&snapshot{kind: stateUnknown, fraction: 1})
	if err := s.register(reg); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Shedder) register(reg prometheus.Registerer) error {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scx_slo_shed_requests_total",
		Help: "Requests seen, by outcome (admitted or shed), reason and route class.",
	}, []string{"outcome", "reason", "class"})
	for _, class := range s.classifier.classes {
		row := make([]prometheus.Counter, len(reasons))
		for i, r := range reasons {
			outcome := "admitted"
			if i == rOverloaded {
				outcome = "shed"
			}
			row[i] = reqs.WithLabelValues(outcome, r, class)
		}
		s.requests = append(s.requests, row)
	}
	readErrs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scx_slo_shed_state_read_errors_total",
		Help: "Reads of the overload state that no source could answer (requests fail open meanwhile), counted for each source that failed.",
	}, []string{"source"})
	staleReads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scx_slo_shed_state_stale_total",
		Help: "Reads that found a source's published state stale (the exporter stopped beating: killed or stopped without removing its pins), so that source was not followed.",
	}, []string{"source"})
	sourceInUse := prometheus.NewDesc("scx_slo_shed_state_source", "1 for the source the overload state is read from now, 0 for the others.", []string{"source"}, nil)
	var names []string
	for _, src := range s.sources {
		s.readErrors[src.Name()] = readErrs.WithLabelValues(src.Name())
		s.staleReads[src.Name()] = staleReads.WithLabelValues(src.Name())
		names = append(names, src.Name())
	}
	gauge := func(name, help string, f func(*snapshot) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(s.state.Load()) })
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	cs := []prometheus.Collector{reqs, readErrs, staleReads, &sourceCollector{desc: sourceInUse, names: names, state: &s.state},
		gauge("scx_slo_shed_admitted_ratio", "Share of sheddable requests admitted right now (1 while not shedding or failing open).",
			func(st *snapshot) float64 { return st.effectiveFraction() }),
		gauge("scx_slo_shed_overloaded", "1 while the cgroup's overload bit is set, as last read.",
			func(st *snapshot) float64 { return b2f(st.kind == stateOK && st.overloaded) }),
		gauge("scx_slo_shed_state_up", "1 while the overload state can be read (0: failing open).",
			func(st *snapshot) float64 { return b2f(st.kind != stateUnknown) }),
		gauge("scx_slo_shed_backoff", "1 while shedding holds its share because it has not cleared the overload within the back-off window.",
			func(st *snapshot) float64 { return b2f(st.backoff) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (st *snapshot) effectiveFraction() float64 {
	if st.kind != stateOK || !st.shedding {
		return 1
	}
	return st.fraction
}

// Run reads the state every Interval until ctx ends. It never blocks the
// request path: requests see the last snapshot it stored.
func (s *Shedder) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	s.poll()
	for {
		select {
		case <-ctx.Done():
			for _, src := range s.sources {
				src.Close()
			}
			return
		case <-t.C:
			s.poll()
		}
	}
}

// poll reads the sources in order and stores a new snapshot.
func (s *Shedder) poll() {
	prev := s.state.Load()
	var errs []error
	for _, src := range s.sources {
		on, err := src.Overloaded()
		if errors.Is(err, ErrNoSLO) {
			if prev.kind != stateNoSLO {
				level.Warn(s.logger).Log("msg", "the cgroup has no SLO in the exporter's config; never shedding", "source", src.Name())
			}
			s.store(&snapshot{kind: stateNoSLO, fraction: 1, source: src.Name()}, prev)
			return
		}
		if err != nil {
			if errors.Is(err, overload.ErrStale) {
				s.staleReads[src.Name()].Inc()
			}
			errs = append(errs, fmt.Errorf("%s: %w", src.Name(), err))
			continue
		}
		if prev.kind != stateOK || prev.source != src.Name() {
			// A later source standing in for an earlier one is normal
			// (no access to the pins): say why once, count nothing.
			if len(errs) > 0 {
				level.Info(s.logger).Log("msg", "reading the overload state", "source", src.Name(), "skipped", errors.Join(errs...))
			} else {
				level.Info(s.logger).Log("msg", "reading the overload state", "source", src.Name())
			}
		}
		s.ctrl.Observe(on, time.Now())
		s.store(&snapshot{kind: stateOK, overloaded: on, shedding: s.ctrl.Shedding(), backoff: s.ctrl.Backoff(), fraction: s.ctrl.Fraction(), source: src.Name()}, prev)
		return
	}
	// Only reads that left the state unknown count as errors, once per
	// source that failed.
	for _, src := range s.sources {
		s.readErrors[src.Name()].Inc()
	}
	if prev.kind != stateUnknown || prev.source == "" {
		level.Warn(s.logger).Log("msg", "cannot read the overload state; admitting every request (fail open) until it can", "err", errors.Join(errs...))
		// Start afresh when the state returns: the old fraction is stale.
		s.ctrl, _ = NewController(s.cfg.Controller)
	}
	s.store(&snapshot{kind: stateUnknown, fraction: 1, source: "none"}, prev)
}

// store publishes next unless it says the same as prev (no allocation
// churn on the request path's cache line).
func (s *Shedder) store(next, prev *snapshot) {
	if *next != *prev {
		s.state.Store(next)
	}
}

// Decision is the outcome of Admit.
type Decision struct {
	Admit  bool
	Reason string
	Class  string
}

// Admit decides for r and counts the decision.
func (s *Shedder) Admit(r *http.Request) Decision {
	class, action := s.classifier.classify(r)
	reason := s.decide(action)
	s.requests[class][reason].Inc()
	return Decision{Admit: reason != rOverloaded, Reason: reasons[reason], Class: s.classifier.classes[class]}
}

func (s *Shedder) decide(action Action) int {
	switch action {
	case Pass:
		return rPriority
	case Probe:
		return rProbe
	}
	st := s.state.Load()
	switch {
	case st.kind == stateUnknown:
		return rFailOpen
	case st.kind == stateNoSLO:
		return rNoSLO
	case !st.shedding:
		return rNotOverloaded
	case rand.Float64() < st.fraction:
		return rWithinShare
	case s.cfg.DryRun:
		return rDryRun
	}
	return rOverloaded
}

// Middleware sheds requests before they reach next.
func (s *Shedder) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Admit(r).Admit {
			next.ServeHTTP(w, r)
			return
		}
		s.Reject(w)
	})
}

// Reject writes the shed answer: Status, Retry-After, a short body, and
// asks HTTP/1.1 clients to keep the connection (the point is to be cheap).
func (s *Shedder) Reject(w http.ResponseWriter) { s.reject(w, s.cfg.Status) }

func (s *Shedder) reject(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Retry-After", s.retryAfter)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(shedBody)
}

var shedBody = []byte("overloaded: the service is shedding load, retry later\n")

// sourceCollector exports which source answered the last read.
type sourceCollector struct {
	desc  *prometheus.Desc
	names []string
	state *atomic.Pointer[snapshot]
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state.Load()
	for _, n := range c.names {
		v := 0.0
		if st.kind != stateUnknown && st.source == n {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, n)
	}
}
