package shed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/scx-slo/scx-slo/internal/overload"
)

// bitSource is a Source the test sets by hand: the Shedder under test
// reads it exactly as it reads the pinned map.
type bitSource struct {
	on    atomic.Bool
	err   atomic.Pointer[error]
	reads atomic.Int64
}

func (b *bitSource) Name() string { return "test" }
func (b *bitSource) Close() error { return nil }
func (b *bitSource) Overloaded() (bool, error) {
	b.reads.Add(1)
	if e := b.err.Load(); e != nil {
		return false, *e
	}
	return b.on.Load(), nil
}
func (b *bitSource) fail(err error) { b.err.Store(&err) }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type rig struct {
	shedder *Shedder
	src     *bitSource
	reg     *prometheus.Registry
	srv     *httptest.Server
	logs    *syncBuf
}

func newRig(t *testing.T, mutate func(*Config)) *rig {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Interval = time.Millisecond
	cfg.Controller = ControllerConfig{Floor: 0.3, Decrease: 0.5, Increase: 0.5, Step: 5 * time.Millisecond, ExitAfter: 20 * time.Millisecond}
	cfg.Rules = append([]Rule{{Class: "checkout", Action: Pass, Method: "POST", Path: "/checkout"}}, DefaultProbeRules()...)
	if mutate != nil {
		mutate(&cfg)
	}
	r := &rig{src: &bitSource{}, reg: prometheus.NewRegistry(), logs: &syncBuf{}}
	s, err := New(cfg, []Source{r.src}, r.reg, log.NewLogfmtLogger(r.logs))
	if err != nil {
		t.Fatal(err)
	}
	r.shedder = s
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx)
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	r.srv = httptest.NewServer(s.Middleware(backend))
	t.Cleanup(r.srv.Close)
	return r
}

// send makes n requests and counts answers by status; it checks every
// shed answer carries Retry-After.
func (r *rig) send(t *testing.T, n int, method, path string, hdr map[string]string) map[int]int {
	t.Helper()
	out := map[int]int{}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest(method, r.srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := r.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s answer without Retry-After", resp.Status)
		}
		out[resp.StatusCode]++
	}
	return out
}

// metric returns the value of the series of name with exactly labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for k, v := range labels {
				match = match && have[k] == v
			}
			if match {
				return value(m)
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestMiddlewareSheds(t *testing.T) {
	r := newRig(t, nil)
	if got := r.send(t, 50, "GET", "/", nil); got[200] != 50 {
		t.Fatalf("not overloaded: %v, want 50 x 200", got)
	}
	r.src.on.Store(true)
	eventually(t, "the admitted ratio to reach the floor", func() bool {
		return metric(t, r.reg, "scx_slo_shed_admitted_ratio", nil) == 0.3
	})
	if metric(t, r.reg, "scx_slo_shed_overloaded", nil) != 1 {
		t.Errorf("scx_slo_shed_overloaded is not 1 while overloaded")
	}
	got := r.send(t, 1000, "GET", "/", nil)
	// Binomial(1000, 0.3): mean 300, sd 14.5; allow 6 sd.
	if got[200] < 213 || got[200] > 387 || got[200]+got[429] != 1000 {
		t.Fatalf("at share 0.3: %v", got)
	}
	if v := metric(t, r.reg, "scx_slo_shed_requests_total", map[string]string{"outcome": "shed", "reason": "overloaded", "class": "default"}); v != float64(got[429]) {
		t.Errorf("shed counter %v, want %d", v, got[429])
	}
	// Priority and probes pass while shedding.
	if g := r.send(t, 100, "POST", "/checkout", nil); g[200] != 100 {
		t.Errorf("priority requests: %v", g)
	}
	if g := r.send(t, 100, "GET", "/healthz", nil); g[200] != 100 {
		t.Errorf("health probes: %v", g)
	}
	if g := r.send(t, 100, "GET", "/deep/page", map[string]string{"User-Agent": "kube-probe/1.31"}); g[200] != 100 {
		t.Errorf("kube probes: %v", g)
	}
	if v := metric(t, r.reg, "scx_slo_shed_requests_total", map[string]string{"outcome": "admitted", "reason": "priority", "class": "checkout"}); v != 100 {
		t.Errorf("priority counter %v, want 100", v)
	}
	if v := metric(t, r.reg, "scx_slo_shed_requests_total", map[string]string{"outcome": "admitted", "reason": "probe", "class": "probe"}); v != 200 {
		t.Errorf("probe counter %v, want 200", v)
	}
	// Calm: the share climbs back to 1 and nothing is shed.
	r.src.on.Store(false)
	eventually(t, "the admitted ratio to recover", func() bool {
		return metric(t, r.reg, "scx_slo_shed_admitted_ratio", nil) == 1
	})
	if g := r.send(t, 100, "GET", "/", nil); g[200] != 100 {
		t.Errorf("after recovery: %v", g)
	}
}

func TestMiddleware503AndRetryAfter(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Status, c.RetryAfter = 503, 1500*time.Millisecond
		c.Controller.Floor = 0
		c.Controller.Decrease = 0.01
	})
	r.src.on.Store(true)
	eventually(t, "share 0", func() bool { return metric(t, r.reg, "scx_slo_shed_admitted_ratio", nil) == 0 })
	resp, err := http.Get(r.srv.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("got %s Retry-After %q, want 503 and 2 (1.5s rounded up)", resp.Status, resp.Header.Get("Retry-After"))
	}
}

func TestFailOpen(t *testing.T) {
	r := newRig(t, nil)
	r.src.on.Store(true)
	eventually(t, "shedding", func() bool { return metric(t, r.reg, "scx_slo_shed_admitted_ratio", nil) < 1 })
	r.src.fail(errors.New("exporter down"))
	eventually(t, "fail open", func() bool { return metric(t, r.reg, "scx_slo_shed_state_up", nil) == 0 })
	if g := r.send(t, 200, "GET", "/", nil); g[200] != 200 {
		t.Fatalf("failing open: %v, want all 200", g)
	}
	if v := metric(t, r.reg, "scx_slo_shed_requests_total", map[string]string{"outcome": "admitted", "reason": "fail_open", "class": "default"}); v != 200 {
		t.Errorf("fail_open counter %v, want 200", v)
	}
	if v := metric(t, r.reg, "scx_slo_shed_state_read_errors_total", map[string]string{"source": "test"}); v < 1 {
		t.Errorf("read errors %v, want > 0", v)
	}
	if metric(t, r.reg, "scx_slo_shed_admitted_ratio", nil) != 1 {
		t.Errorf("admitted ratio is not 1 while failing open")
	}
	logs := r.logs.String()
	if n := strings.Count(logs, "fail open"); n != 1 {
		t.Errorf("want one fail-open log line per outage, got %d:\n%s", n, logs)
	}
	if !strings.Contains(logs, "exporter down") {
		t.Errorf("log does not say why:\n%s", logs)
	}
}

func TestNoSLOAndDryRun(t *testing.T) {
	r := newRig(t, func(c *Config) { c.DryRun = true })
	r.src.fail(ErrNoSLO)
	eventually(t, "no_slo", func() bool {
		r.send(t, 1, "GET", "/", nil)
		return metric(t, r.reg, "scx_slo_shed_requests_total", map[string]string{"reason": "no_slo", "class": "default"}) > 0
	})
	if !strings.Contains(r.logs.String(), "no SLO") {
		t.Errorf("no log line for a cgroup without SLO:\n%s", r.logs.String())
	}
	r.src.err.Store(nil)
	r.src.on.Store(true)
	eventually(t, "shedding", func() bool { return metric(t, r.reg, "scx_slo_shed_admitted_ratio", nil) == 0.3 })
	if g := r.send(t, 200, "GET", "/", nil); g[200] != 200 {
		t.Fatalf("dry run shed: %v", g)
	}
	if v := metric(t, r.reg, "scx_slo_shed_requests_total", map[string]string{"reason": "dry_run", "class": "default"}); v < 50 {
		t.Errorf("dry_run counter %v: want about 140 of 200", v)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Status = 500 }, "status 500: must be 429 or 503"},
		{func(c *Config) { c.RetryAfter = -time.Second }, "retry-after -1s"},
		{func(c *Config) { c.Interval = 0 }, "interval 0s"},
		{func(c *Config) { c.Controller.Floor = 2 }, "floor 2"},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.set(&c)
		if _, err := New(c, nil, prometheus.NewRegistry(), log.NewNopLogger()); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

func TestAdmitHandler(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Controller.Floor, c.Controller.Decrease = 0, 0.01 })
	// Reuse the rig's shedder through a second server on the check path.
	srv := httptest.NewServer(r.shedder.AdmitHandler("/admit"))
	defer srv.Close()
	check := func(path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if st, _ := check("/admit/api/items", nil); st != 200 {
		t.Fatalf("calm: %d", st)
	}
	r.src.on.Store(true)
	eventually(t, "share 0", func() bool { return metric(t, r.reg, "scx_slo_shed_admitted_ratio", nil) == 0 })
	cases := []struct {
		path   string
		hdr    map[string]string
		status int
	}{
		{"/admit/api/items", nil, 429},
		{"/admit/healthz", nil, 200},                                            // Envoy style: the path after the prefix
		{"/admit", map[string]string{"X-Original-URI": "/healthz?full=1"}, 200}, // NGINX style
		{"/admit", map[string]string{"X-Original-URI": "/checkout", "X-Original-Method": "POST"}, 200},
		{"/admit", map[string]string{"X-Original-URI": "/checkout", "X-Original-Method": "GET"}, 429},
		{"/admit?deny=403", map[string]string{"X-Original-URI": "/x"}, 403},
		{"/admit?deny=abc", nil, 400},
	}
	for _, tc := range cases {
		st, ra := check(tc.path, tc.hdr)
		if st != tc.status {
			t.Errorf("%s %v: %d, want %d", tc.path, tc.hdr, st, tc.status)
		}
		if (st == 429 || st == 403) && ra != "1" {
			t.Errorf("%s: refusal without Retry-After", tc.path)
		}
	}
}

type namedSource struct {
	*bitSource
	name string
}

func (n namedSource) Name() string { return n.name }

// TestFallbackSource: a failing first source with a working second one is
// not an outage: no read errors, the second source is in use, one log
// line says why.
func TestFallbackSource(t *testing.T) {
	first, second := namedSource{&bitSource{}, "pinned"}, namedSource{&bitSource{}, "http"}
	first.fail(errors.New("permission denied"))
	second.on.Store(true)
	reg := prometheus.NewRegistry()
	logs := &syncBuf{}
	cfg := DefaultConfig()
	cfg.Interval = time.Millisecond
	s, err := New(cfg, []Source{first, second}, reg, log.NewLogfmtLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	eventually(t, "the bit via the second source", func() bool { return metric(t, reg, "scx_slo_shed_overloaded", nil) == 1 })
	// Some more reads, each skipping the first source.
	skipped := first.reads.Load()
	eventually(t, "ten more reads", func() bool { return first.reads.Load() >= skipped+10 })
	for _, src := range []string{"pinned", "http"} {
		if v := metric(t, reg, "scx_slo_shed_state_read_errors_total", map[string]string{"source": src}); v != 0 {
			t.Errorf("%s read errors %v while the state is readable", src, v)
		}
	}
	if metric(t, reg, "scx_slo_shed_state_source", map[string]string{"source": "http"}) != 1 || metric(t, reg, "scx_slo_shed_state_source", map[string]string{"source": "pinned"}) != 0 {
		t.Errorf("scx_slo_shed_state_source does not show http in use")
	}
	if n := strings.Count(logs.String(), "permission denied"); n != 1 {
		t.Errorf("want one line naming why the first source is skipped, got %d:\n%s", n, logs.String())
	}
	// Both fail: now it is an outage, counted for each.
	second.fail(errors.New("connection refused"))
	eventually(t, "fail open", func() bool { return metric(t, reg, "scx_slo_shed_state_up", nil) == 0 })
	for _, src := range []string{"pinned", "http"} {
		if v := metric(t, reg, "scx_slo_shed_state_read_errors_total", map[string]string{"source": src}); v < 1 {
			t.Errorf("%s read errors %v during an outage", src, v)
		}
	}
}

// TestStaleSource: a source whose published state went stale (the
// exporter died leaving its pins) is not followed: the shedder fails
// open and counts the stale reads for that source.
func TestStaleSource(t *testing.T) {
	src := namedSource{&bitSource{}, "pinned"}
	src.on.Store(true)
	reg := prometheus.NewRegistry()
	logs := &syncBuf{}
	cfg := DefaultConfig()
	cfg.Interval = time.Millisecond
	cfg.Controller.EnterAfter, cfg.Controller.Step = time.Millisecond, time.Millisecond
	s, err := New(cfg, []Source{src}, reg, log.NewLogfmtLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	eventually(t, "shedding", func() bool { return metric(t, reg, "scx_slo_shed_admitted_ratio", nil) < 1 })
	src.fail(fmt.Errorf("%w: heartbeat unchanged for 2s", overload.ErrStale))
	eventually(t, "fail open", func() bool { return metric(t, reg, "scx_slo_shed_state_up", nil) == 0 })
	if v := metric(t, reg, "scx_slo_shed_admitted_ratio", nil); v != 1 {
		t.Errorf("admitted ratio %v while the state is stale", v)
	}
	eventually(t, "stale reads counted", func() bool {
		return metric(t, reg, "scx_slo_shed_state_stale_total", map[string]string{"source": "pinned"}) >= 1
	})
	if !strings.Contains(logs.String(), "stale") {
		t.Errorf("the fail-open line does not say the state is stale:\n%s", logs.String())
	}
}
