package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scx-slo/scx-slo/internal/logging"
	"github.com/scx-slo/scx-slo/internal/overload"
	"github.com/scx-slo/scx-slo/internal/shed"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/loadgen"
)

// TestFailOpenAfterExporterKilled: the exporter dies uncleanly (SIGKILL)
// while the overload bit is set, leaving its pins in bpffs with the bit
// frozen at 1. The sidecar and the in-process middleware, both shedding
// at that moment, must notice that the published state stopped beating
// and admit everything within overload.StaleAfter, answering every
// request meanwhile; and follow a new exporter's pins once it starts.
func TestFailOpenAfterExporterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the exporter and load")
	}
	lab := newShedLab(t, "1ns", "0.9")
	cg, app, pins, e := lab.cg, lab.app, lab.pins, lab.e
	cg.StartWorkload(t, app, "probe", 1) // wakeups keep the bit set
	overloaded := func() bool {
		_, body, err := e.Get("/overload?cgroup=" + app)
		var st []struct{ Overloaded bool }
		return err == nil && json.Unmarshal(body, &st) == nil && len(st) == 1 && st[0].Overloaded
	}
	if !exportertest.Eventually(context.Background(), 20*time.Second, overloaded) {
		t.Fatalf("the exporter never set the overload bit of %s\n%s", app, e.Log())
	}

	// The sidecar, with both sources as deployed by default.
	sidecar := startShed(t, "--upstream="+lab.upstream, "--cgroup="+app, "--state.pin-dir="+pins, "--state.url="+e.URL,
		"--shed.floor=0.2", "--shed.decrease=0.5", "--shed.step=50ms")

	// The middleware, in this process, in front of a trivial handler.
	target, err := shed.ResolveTarget(cg.H, app, true)
	if err != nil {
		t.Fatal(err)
	}
	viaHTTP, err := shed.NewHTTPSource(e.URL, target, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	cfg := shed.DefaultConfig()
	cfg.Controller.Floor, cfg.Controller.Decrease, cfg.Controller.Step = 0.2, 0.5, 50*time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	mw, err := shed.New(cfg, []shed.Source{shed.NewPinnedSource(pins, target), viaHTTP}, reg, logging.New(&logging.Config{Level: "info", Format: "logfmt"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go mw.Run(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mw.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }))}
	go srv.Serve(ln)
	defer srv.Close()
	mwURL := "http://" + ln.Addr().String() + "/work"

	waitMetric(t, sidecar, "scx_slo_shed_admitted_ratio", nil, "the sidecar to shed at its floor", func(v float64) bool { return v == 0.2 })
	if !exportertest.Eventually(context.Background(), 20*time.Second, func() bool {
		return gathered(t, reg, "scx_slo_shed_admitted_ratio", nil) == 0.2
	}) {
		t.Fatal("the middleware never shed at its floor")
	}

	// Open-loop load through both; the exporter is killed once each has
	// answered a second's worth of it.
	const rate, seconds = 100, 7
	var wg sync.WaitGroup
	results := map[string][]loadgen.Result{}
	var mu sync.Mutex
	start := time.Now()
	for name, u := range map[string]string{"sidecar": sidecar.URL("/work"), "middleware": mwURL} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := loadgen.Run(context.Background(), loadgen.Config{URL: u, Rate: rate, Count: rate * seconds, Timeout: 30 * time.Second})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			results[name] = rs
			mu.Unlock()
		}()
	}
	sidecarSeen, _ := sidecar.scrape(t).Value("scx_slo_shed_requests_total", map[string]string{"reason": "overloaded"})
	middlewareSeen := gathered(t, reg, "scx_slo_shed_requests_total", map[string]string{"reason": "overloaded"})
	if !exportertest.Eventually(context.Background(), 20*time.Second, func() bool {
		s, _ := sidecar.scrape(t).Value("scx_slo_shed_requests_total", map[string]string{"reason": "overloaded"})
		m := gathered(t, reg, "scx_slo_shed_requests_total", map[string]string{"reason": "overloaded"})
		return s >= sidecarSeen+rate/2 && m >= middlewareSeen+rate/2
	}) {
		t.Fatal("the load was not shed before the kill")
	}
	if err := e.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Since(start)
	wg.Wait()

	// Requests scheduled after the kill plus the bound must all be
	// admitted; half a second of slack covers the 5 ms poll of a reader
	// starved of CPU on a loaded machine.
	openBy := killed + overload.StaleAfter + 500*time.Millisecond
	for name, rs := range results {
		var before, after runStats
		lastShed := time.Duration(-1)
		for i, r := range rs {
			at := time.Duration(i) * time.Second / rate
			if r.Status == http.StatusTooManyRequests {
				lastShed = at
			}
			s := &before
			if at >= openBy {
				s = &after
			}
			s.n++
			switch {
			case r.Err != nil || r.Status == 0:
				s.failed++
				t.Errorf("%s: request %d (at %v) lost: %v", name, i, at, r.Err)
			case r.Status == http.StatusOK:
				s.ok++
			case r.Status == http.StatusTooManyRequests:
				s.shed++
			default:
				t.Errorf("%s: request %d: status %d", name, i, r.Status)
			}
		}
		t.Logf("%s: killed at %v; up to %v: %d requests, %d admitted, %d shed; after: %d requests, %d admitted, %d shed; last shed request sent %v after the kill",
			name, killed.Round(time.Millisecond), openBy.Round(time.Millisecond), before.n, before.ok, before.shed, after.n, after.ok, after.shed, (lastShed - killed).Round(time.Millisecond))
		if before.shed == 0 {
			t.Errorf("%s shed nothing before the kill: the test did not start from shedding", name)
		}
		if after.n == 0 || after.ok != after.n {
			t.Errorf("%s did not fail open within %v of the kill: %d of %d later requests admitted", name, overload.StaleAfter, after.ok, after.n)
		}
	}
	f := sidecar.scrape(t)
	if v, _ := f.Value("scx_slo_shed_state_stale_total", map[string]string{"source": "pinned"}); v < 1 {
		t.Errorf("the sidecar counted no stale reads of the pins:\n%s", sidecar.log.String())
	}
	// The HTTP reader needs no heartbeat: the dead exporter does not answer.
	if v, _ := f.Value("scx_slo_shed_state_read_errors_total", map[string]string{"source": "http"}); v < 1 {
		t.Errorf("the sidecar counted no failed HTTP reads with the exporter dead")
	}
	if v, _ := f.Value("scx_slo_shed_state_up", nil); v != 0 {
		t.Errorf("sidecar scx_slo_shed_state_up = %v after the exporter died", v)
	}
	if v := gathered(t, reg, "scx_slo_shed_state_stale_total", map[string]string{"source": "pinned"}); v < 1 {
		t.Errorf("the middleware counted no stale reads of the pins")
	}
	if !contains(sidecar.log.String(), "stale") {
		t.Errorf("the sidecar did not log why it fails open:\n%s", sidecar.log.String())
	}

	// A new exporter on the same pin directory: both readers follow its
	// pins and shed again.
	exportertest.Start(t, lab.args...)
	waitMetric(t, sidecar, "scx_slo_shed_state_source", map[string]string{"source": "pinned"}, "the sidecar to follow the new exporter's pins", func(v float64) bool { return v == 1 })
	waitMetric(t, sidecar, "scx_slo_shed_admitted_ratio", nil, "the sidecar to shed again", func(v float64) bool { return v == 0.2 })
	if !exportertest.Eventually(context.Background(), 20*time.Second, func() bool {
		return gathered(t, reg, "scx_slo_shed_state_source", map[string]string{"source": "pinned"}) == 1 &&
			gathered(t, reg, "scx_slo_shed_admitted_ratio", nil) == 0.2
	}) {
		t.Error("the middleware did not follow the new exporter's pins back to shedding")
	}
}

// gathered reads one value from an in-process registry.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	f := exportertest.Families{}
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	v, _ := f.Value(name, labels)
	return v
}
