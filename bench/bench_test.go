package bench

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
	"github.com/scx-slo/scx-slo/internal/testbed/labbench"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestMain lets the guest re-run this binary as a probe, an HTTP server,
// a message-passing workload, the fork/exec job or the pipe ping-pong.
func TestMain(m *testing.M) {
	workload.Main() // the probe, and labbench's workloads registered with it
	os.Exit(m.Run())
}

// TestGuest is the guest side of BenchmarkLab and TestSmoke: it runs only
// when the host passed a Config.
func TestGuest(t *testing.T) {
	cfg, ok, err := labbench.GuestConfig()
	if !ok {
		t.Skip("guest side of the benchmark; BenchmarkLab and TestSmoke start it in the lab VM")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := labbench.RunGuest(t.Context(), cfg, labbench.GuestOut); err != nil {
		t.Fatal(err)
	}
}

// prepare returns the lab kernel and the guest binary, or skips.
func prepare(tb testing.TB) (*lab.Kernel, string) {
	tb.Helper()
	if _, ok, _ := labbench.GuestConfig(); ok {
		tb.Skip("inside the guest")
	}
	k := labtest.Kernel(tb)
	needs.Command(tb, "stress-ng", "stress-ng") // the batch load
	start := time.Now()
	bin, err := lab.BuildTest(tb.Context(), "github.com/scx-slo/scx-slo/bench", tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("built the guest binary in %s", time.Since(start).Round(time.Millisecond))
	return k, bin
}

// TestSmoke runs every workload under every setup at one load, once,
// with short cells, and checks that every cell produced data.
func TestSmoke(t *testing.T) {
	k, bin := prepare(t)
	cfg := labbench.Smoke()
	start := time.Now()
	r, err := labbench.Run(t.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
		Kernel: k, Console: t.Output(), Timeout: 8 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("smoke run took %s", time.Since(start).Round(time.Millisecond))
	want := cfg.Reps * len(cfg.Workloads) * (1 + len(cfg.Loads)*len(cfg.Schedulers))
	if len(r.Cells) != want {
		t.Fatalf("got %d cells, want %d", len(r.Cells), want)
	}
	for _, c := range r.Cells {
		name := c.Workload + "/" + strconv.Itoa(c.Load) + "%/" + c.Scheduler
		if c.Err != "" {
			t.Errorf("%s: %s", name, c.Err)
		}
		if c.Latency.N == 0 {
			t.Errorf("%s: no latency samples", name)
		}
		if c.Load > 0 && (c.Batch.CPUSeconds <= 0 || !(c.Batch.BogoOps > 0) || c.Batch.Spawns == 0) {
			t.Errorf("%s: batch produced no data: %+v", name, c.Batch)
		}
		if c.Host == nil {
			t.Errorf("%s: no host sample (cell markers lost on the console?)", name)
		}
	}
	got := map[string]bool{}
	for _, p := range r.Pipe {
		if p.Err != "" || p.RoundTripNs <= 0 {
			t.Errorf("pipe %s: round trip %d ns, error %q", p.Scheduler, p.RoundTripNs, p.Err)
		}
		got[p.Scheduler] = true
	}
	if !got[labbench.EEVDF] || !got[labbench.SCXSLO] {
		t.Errorf("pipe measured under %v, want eevdf and scx-slo", got)
	}
	dir := t.TempDir()
	if err := labbench.WriteReport(dir, r, "go test -run TestSmoke ./bench"); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	for _, s := range []string{"## probe", "## http", "## msg", "| 200% | scx-slo |", "## Overhead: pipe ping-pong"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
	for _, name := range []string{"latency.png", "throughput.png"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
			t.Errorf("%s is %v", name, b)
		}
	}
}

// BenchmarkLab is the full matrix (make bench). One boot; results land
// in bench/results/<UTC date>/ (SCX_SLO_BENCH_OUT overrides), with
// SCX_SLO_BENCH_REPS and SCX_SLO_BENCH_CELL to change its size and
// SCX_SLO_BENCH_WORKLOADS, _LOADS and _SCHEDULERS (comma-separated) to
// run part of the matrix.
func BenchmarkLab(b *testing.B) {
	k, bin := prepare(b)
	cfg := labbench.Full()
	if v := os.Getenv("SCX_SLO_BENCH_REPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("SCX_SLO_BENCH_REPS=%q: want a number of repetitions", v)
		}
		cfg.Reps = n
	}
	if v := os.Getenv("SCX_SLO_BENCH_CELL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("SCX_SLO_BENCH_CELL=%q: want a duration like 3s", v)
		}
		cfg.Cell = d
	}
	for _, v := range []struct {
		env  string
		into *[]string
	}{{"SCX_SLO_BENCH_WORKLOADS", &cfg.Workloads}, {"SCX_SLO_BENCH_SCHEDULERS", &cfg.Schedulers}} {
		if s := os.Getenv(v.env); s != "" {
			*v.into = strings.Split(s, ",")
		}
	}
	if s := os.Getenv("SCX_SLO_BENCH_LOADS"); s != "" {
		cfg.Loads = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("SCX_SLO_BENCH_LOADS=%q: %q is not a whole percentage", s, f)
			}
			cfg.Loads = append(cfg.Loads, n)
		}
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	out := os.Getenv("SCX_SLO_BENCH_OUT")
	if out == "" {
		out = labbench.ResultsDir(".", time.Now())
	}
	for b.Loop() {
		r, err := labbench.Run(b.Context(), labbench.RunOptions{Config: cfg, TestBinary: bin, GuestTest: "^TestGuest$",
			Kernel: k, Console: b.Output(), Timeout: 55 * time.Minute})
		if r != nil {
			if werr := labbench.WriteReport(out, r, "make bench"); werr != nil {
				b.Fatal(werr)
			}
			b.Logf("report in %s", out)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// TestRender rewrites the report in $SCX_SLO_BENCH_RENDER from the
// results.json there (after a change to the report's layout).
func TestRender(t *testing.T) {
	dir := os.Getenv("SCX_SLO_BENCH_RENDER")
	if dir == "" {
		t.Skip("set SCX_SLO_BENCH_RENDER to a results directory to re-render its report")
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r labbench.Results
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s/results.json: %v", dir, err)
	}
	if err := labbench.WriteReport(dir, &r, ""); err != nil {
		t.Fatal(err)
	}
}
