package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/loadgen"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

func TestMain(m *testing.M) {
	workload.Main()
	runBackendIfRequested()
	os.Exit(m.Run())
}

const (
	backendEnv  = "SCX_SLO_SHED_TEST_BACKEND"
	backendWork = 2 * time.Millisecond
)

// runBackendIfRequested turns the process into the CPU-bound backend:
// every request hashes for about backendWork of CPU, so its latency grows
// with CPU contention (its own load, its cgroup's quota, the node).
func runBackendIfRequested() {
	addr := os.Getenv(backendEnv)
	if addr == "" {
		return
	}
	blocks := calibrate(backendWork)
	os.Stdin.Read(make([]byte, 1)) // wait until moved into the cgroup
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	buf := make([]byte, 32<<10)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.Sum256(nil)
		for i := 0; i < blocks; i++ {
			buf[0] = sum[0]
			sum = sha256.Sum256(buf)
		}
		fmt.Fprintf(w, "%x\n", sum[:4])
	})}
	srv.Serve(ln)
	os.Exit(0)
}

// calibrate returns how many 32 KiB hashes take d (the fastest of five
// tries, so a preempted try does not inflate the work).
func calibrate(d time.Duration) int {
	buf := make([]byte, 32<<10)
	const n = 50
	best := time.Duration(1 << 62)
	for try := 0; try < 5; try++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			sha256.Sum256(buf)
		}
		best = min(best, time.Since(start))
	}
	return max(1, int(int64(n)*int64(d)/int64(best)))
}

// startBackend runs the backend in cgroup p and waits until it listens.
func startBackend(t *testing.T, cg *exportertest.Cgroups, p string) string {
	return startBackendProcs(t, cg, p, 2)
}

// startBackendProcs is startBackend with procs OS threads running Go code.
func startBackendProcs(t *testing.T, cg *exportertest.Cgroups, p string, procs int) string {
	t.Helper()
	addr := exportertest.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), backendEnv+"="+addr, "GOMAXPROCS="+strconv.Itoa(procs))
	cmd.Stderr = os.Stderr
	gate, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := cg.Move(p, cmd.Process.Pid); err != nil {
		t.Fatalf("moving the backend into %s: %v", p, err)
	}
	gate.Close()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatal("backend did not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setQuota caps cgroup p at quota of one CPU per 100 ms period.
func setQuota(t *testing.T, cg *exportertest.Cgroups, p string, quota time.Duration) {
	t.Helper()
	dir := cg.H.Dir(p)
	us := strconv.FormatInt(quota.Microseconds(), 10)
	var err error
	if cg.H.V2 {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(us+" 100000"), 0)
	} else {
		if err = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte("100000"), 0); err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(us), 0)
		}
	}
	needs.Part(t, "a CPU quota (cpu controller) on "+p, err)
}

func writeAtomic(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p+".tmp", []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
}

// waitMetric polls the proxy's /metrics until cond holds for the value.
func waitMetric(t *testing.T, p *shedProc, name string, labels map[string]string, what string, cond func(float64) bool) {
	t.Helper()
	var last float64
	if !exportertest.Eventually(context.Background(), 20*time.Second, func() bool {
		v, ok := p.scrape(t).Value(name, labels)
		last = v
		return ok && cond(v)
	}) {
		t.Fatalf("%s: %s%v stayed at %v\n%s", what, name, labels, last, p.log.String())
	}
}

type runStats struct {
	n, ok, shed, failed int
	p50, p99            time.Duration // of admitted (200) requests
}

func summarize(t *testing.T, rs []loadgen.Result, status int) runStats {
	t.Helper()
	var s runStats
	s.n = len(rs)
	for _, r := range rs {
		switch {
		case r.Err != nil || r.Status == 0:
			s.failed++
		case r.Status == http.StatusOK:
			s.ok++
		case r.Status == status:
			s.shed++
			if r.RetryAfter != "1" {
				t.Errorf("shed answer with Retry-After %q, want 1", r.RetryAfter)
			}
		default:
			t.Errorf("unexpected status %d", r.Status)
		}
	}
	lat := loadgen.Latencies(rs, func(r loadgen.Result) bool { return r.Err == nil && r.Status == http.StatusOK })
	s.p50, s.p99 = loadgen.Quantile(lat, 0.5), loadgen.Quantile(lat, 0.99)
	return s
}

// TestShedEndToEnd runs the whole loop on this machine: a CPU-bound
// backend under a CPU quota in a cgroup, the real exporter judging that
// cgroup's wakeups against an impossible budget (so its overload bit is
// set, deterministically), the real proxy reading the bit from the pinned
// map, and open-loop load beyond the backend's capacity. The same load
// goes through a dry-run proxy (counts but never sheds) for comparison.
func TestShedEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the exporter and load")
	}
	lab := newShedLab(t, "1ns", "0.9")
	cg, app, pins, e, upstream := lab.cg, lab.app, lab.pins, lab.e, lab.upstream
	// Wakeups between runs keep the bit set (the exporter clears idle
	// cgroups).
	cg.StartWorkload(t, app, "probe", 1)

	overloaded := func() bool {
		_, body, err := e.Get("/overload?cgroup=" + app)
		var st []struct{ Overloaded bool }
		return err == nil && json.Unmarshal(body, &st) == nil && len(st) == 1 && st[0].Overloaded
	}
	if !exportertest.Eventually(context.Background(), 20*time.Second, overloaded) {
		t.Fatalf("the exporter never set the overload bit of %s\n%s", app, e.Log())
	}

	common := []string{"--upstream=" + upstream, "--cgroup=" + app, "--state.pin-dir=" + pins, "--state.url=" + e.URL,
		"--shed.floor=0.2", "--shed.decrease=0.5", "--shed.step=50ms"}
	const rate, count = 400, 1200 // 3 s at 1.6x the backend's capacity
	load := func(p *shedProc) []loadgen.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		rs, err := loadgen.Run(ctx, loadgen.Config{URL: p.URL("/work"), Rate: rate, Count: count, Timeout: 60 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}

	shedding := startShed(t, common...)
	waitMetric(t, shedding, "scx_slo_shed_admitted_ratio", nil, "shedding to reach its floor", func(v float64) bool { return v == 0.2 })
	withShed := summarize(t, load(shedding), http.StatusTooManyRequests)

	dry := startShed(t, append(common, "--dry-run")...)
	waitMetric(t, dry, "scx_slo_shed_overloaded", nil, "the dry-run proxy to see the bit", func(v float64) bool { return v == 1 })
	without := summarize(t, load(dry), http.StatusTooManyRequests)

	t.Logf("with shedding:    %d requests, %d admitted, %d shed (429), %d failed; admitted p50 %v p99 %v", withShed.n, withShed.ok, withShed.shed, withShed.failed, withShed.p50, withShed.p99)
	t.Logf("without shedding: %d requests, %d admitted, %d shed, %d failed; p50 %v p99 %v", without.n, without.ok, without.shed, without.failed, without.p50, without.p99)
	for _, s := range []runStats{withShed, without} {
		if s.n != count || s.failed != 0 || s.ok+s.shed != count {
			t.Errorf("not every request got an answer: %+v", s)
		}
	}
	if withShed.shed < count/2 {
		t.Errorf("only %d of %d requests shed at an admitted share of 0.2", withShed.shed, count)
	}
	if without.shed != 0 {
		t.Errorf("the dry-run proxy shed %d requests", without.shed)
	}
	if !(withShed.p99*2 < without.p99) {
		t.Errorf("admitted p99 with shedding %v is not well below the p99 without %v", withShed.p99, without.p99)
	}
	f := shedding.scrape(t)
	if v, _ := f.Value("scx_slo_shed_requests_total", map[string]string{"outcome": "shed", "reason": "overloaded"}); int(v) != withShed.shed {
		t.Errorf("shed counter %v, generator saw %d", v, withShed.shed)
	}
	if v, _ := f.Value("scx_slo_shed_state_read_errors_total", map[string]string{"source": "pinned"}); v != 0 {
		t.Errorf("%v pinned-map read errors as root", v)
	}
	if v, _ := f.Value("scx_slo_shed_state_source", map[string]string{"source": "pinned"}); v != 1 {
		t.Errorf("scx_slo_shed_state_source{source=pinned} = %v as root", v)
	}
	if !contains(shedding.log.String(), "reading the overload state", "source=pinned") {
		t.Errorf("the proxy did not read the pinned map:\n%s", shedding.log.String())
	}
	if v, _ := dry.scrape(t).Value("scx_slo_shed_requests_total", map[string]string{"reason": "dry_run"}); v < count/2 {
		t.Errorf("dry run counted %v would-be sheds", v)
	}

	// The same decisions for Envoy ext_authz / NGINX auth_request.
	refused := 0
	for i := 0; i < 50; i++ {
		for path, mayRefuse := range map[string]bool{"/admit/work": true, "/admit/healthz": false} {
			resp, err := http.Get("http://" + shedding.MetricsAddr + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusTooManyRequests && mayRefuse:
				refused++
			case resp.StatusCode != http.StatusOK:
				t.Fatalf("%s answered %s", path, resp.Status)
			}
		}
	}
	if refused < 20 {
		t.Errorf("/admit refused %d of 50 checks at an admitted share of 0.2", refused)
	}

	// The exporter goes away: the proxy fails open, admitting everything.
	e.Stop(t)
	waitMetric(t, shedding, "scx_slo_shed_state_up", nil, "fail open after the exporter stopped", func(v float64) bool { return v == 0 })
	rs, err := loadgen.Run(context.Background(), loadgen.Config{URL: shedding.URL("/work"), Rate: 50, Count: 50, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s := summarize(t, rs, http.StatusTooManyRequests); s.ok != 50 {
		t.Errorf("with the exporter down: %+v, want all 50 admitted", s)
	}
	f = shedding.scrape(t)
	for _, src := range []string{"pinned", "http"} {
		if v, _ := f.Value("scx_slo_shed_state_read_errors_total", map[string]string{"source": src}); v < 1 {
			t.Errorf("no %s read errors counted with the exporter down", src)
		}
	}
	if !contains(shedding.log.String(), "fail open") {
		t.Errorf("no fail-open log line:\n%s", shedding.log.String())
	}
}

// shedLab is the host setup both end-to-end tests share: a backend under
// half a CPU of quota in an SLO cgroup, and the real exporter publishing
// that cgroup's overload bit in bpffs.
type shedLab struct {
	cg       *exportertest.Cgroups
	app      string
	pins     string
	e        *exportertest.Exporter
	upstream string
}

func newShedLab(t *testing.T, budget, target string) *shedLab {
	t.Helper()
	exportertest.RequireRoot(t)
	needs.BPFFS(t, "/sys/fs/bpf")
	l := &shedLab{cg: exportertest.NewCgroups(t, "auto")}
	l.app = l.cg.Make(t, "app")
	// Half a CPU: 2 ms a request makes about 250 requests/s at most.
	setQuota(t, l.cg, l.app, 50*time.Millisecond)
	l.pins = fmt.Sprintf("/sys/fs/bpf/scx-slo-shed-%s-%d", strings.ToLower(t.Name()), time.Now().UnixNano())
	t.Cleanup(func() { os.RemoveAll(l.pins) })
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeAtomic(t, cfg, "slos:\n  - cgroup: "+l.app+"\n    latencyBudget: "+budget+"\n    target: "+target+"\n")
	l.e = exportertest.Start(t, "--slo.config-file="+cfg, "--overload.pin-dir="+l.pins, "--slo.resync-interval=100ms")
	l.upstream = startBackend(t, l.cg, l.app)
	return l
}
