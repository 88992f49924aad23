package labbench

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestMain lets the workload tests re-run this binary as a workload.
func TestMain(m *testing.M) {
	workload.Main()
	os.Exit(m.Run())
}

func TestSummarize(t *testing.T) {
	var v []int64
	for i := 1000; i >= 1; i-- { // unsorted on purpose
		v = append(v, int64(i)*int64(time.Microsecond))
	}
	s := Summarize(v, 900*time.Microsecond)
	us := func(ns int64) int64 { return ns / int64(time.Microsecond) }
	if s.N != 1000 || us(s.P50Ns) != 500 || us(s.P90Ns) != 900 || us(s.P99Ns) != 990 || us(s.MaxNs) != 1000 {
		t.Errorf("percentiles of 1..1000 us: %+v", s)
	}
	if s.OverBudget != 0.1 {
		t.Errorf("over 900us: %v, want 0.1 (samples 901..1000)", s.OverBudget)
	}
	if v[0] != 1000*int64(time.Microsecond) {
		t.Error("Summarize reordered its input")
	}
	if z := Summarize(nil, time.Millisecond); z.N != 0 || z.OverBudget != 0 {
		t.Errorf("empty: %+v", z)
	}
}

func TestWorkersFor(t *testing.T) {
	for _, c := range []struct{ load, vcpus, workers, pct int }{
		{50, 2, 1, 100}, {75, 2, 2, 75}, {100, 2, 2, 100}, {200, 2, 4, 100}, {30, 2, 1, 60}, {150, 4, 6, 100},
	} {
		w, p := workersFor(c.load, c.vcpus)
		if w != c.workers || p != c.pct {
			t.Errorf("workersFor(%d%%, %d vCPUs) = %d workers at %d%%, want %d at %d%%", c.load, c.vcpus, w, p, c.workers, c.pct)
		}
		if got := float64(w*p) / 100; got < float64(c.load*c.vcpus)/100-0.01 || got > float64(c.load*c.vcpus)/100+0.01 {
			t.Errorf("workersFor(%d%%, %d): demand %v CPUs", c.load, c.vcpus, got)
		}
	}
}

func TestValidateNamesFieldAndValue(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Reps = 0 }, "Reps = 0"},
		{func(c *Config) { c.Cell = time.Millisecond }, "Cell = 1ms"},
		{func(c *Config) { c.Loads = []int{50, -3} }, "Loads[1] = -3"},
		{func(c *Config) { c.Schedulers = []string{"cfs"} }, `Schedulers[0] = "cfs"`},
		{func(c *Config) { c.Workloads = []string{Probe, "ab"} }, `Workloads[1] = "ab"`},
		{func(c *Config) { c.WrkConns = -2 }, "WrkConns = -2"},
		{func(c *Config) { c.Target = 1.5 }, "Target = 1.5"},
		{func(c *Config) { c.HTTPRate = -1 }, "HTTPRate = -1"},
		{func(c *Config) { c.MsgWorkers = 100 }, "MsgWorkers = 100"},
		{func(c *Config) { c.Mode = "fast" }, `Mode = "fast"`},
		{func(c *Config) { c.Plan = []PlanCell{{Workload: Probe, Load: 100, Scheduler: "cfs"}} }, "Plan[0] = "},
		{func(c *Config) { *c = SafeFull(); c.SafeStep = 0 }, "SafeStep = 0"},
		{func(c *Config) { *c = SafeFull(); c.SafeMax = 10 }, "SafeMax = 10"},
		{func(c *Config) { *c = SafeFull(); c.SafeResolution = -5 }, "SafeResolution = -5"},
		{func(c *Config) { *c = SafeFull(); c.SafeMaxOver = 1.5 }, "SafeMaxOver = 1.5"},
	} {
		cfg := Full()
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", err, c.want)
		}
	}
	if err := Full().Validate(); err != nil {
		t.Errorf("Full: %v", err)
	}
	if err := Smoke().Validate(); err != nil {
		t.Errorf("Smoke: %v", err)
	}
	if err := SafeFull().Validate(); err != nil {
		t.Errorf("SafeFull: %v", err)
	}
}

func TestPlanInterleavesAndRotates(t *testing.T) {
	cfg := Full()
	p := plan(cfg)
	if want := cfg.Reps * len(cfg.Workloads) * (1 + len(cfg.Loads)*len(cfg.Schedulers)); len(p) != want {
		t.Fatalf("%d cells, want %d", len(p), want)
	}
	// Each repetition holds every cell once, and the first setup at a
	// load differs between repetitions.
	first := map[string]bool{}
	for rep := range cfg.Reps {
		seen := map[cellSpec]bool{}
		for _, c := range p {
			if c.rep == rep {
				seen[cellSpec{0, c.workload, c.load, c.sched}] = true
			}
		}
		if len(seen) != len(p)/cfg.Reps {
			t.Errorf("rep %d has %d distinct cells", rep, len(seen))
		}
		for i, c := range p {
			if c.rep == rep && c.load == cfg.Loads[0] && (i == 0 || p[i-1].load == 0) {
				first[c.sched] = true
				break
			}
		}
	}
	if len(first) != cfg.Reps {
		t.Errorf("first setup per repetition: %v, want %d different", first, cfg.Reps)
	}
}

// runWorkload runs a workload of this package as a real child process.
func runWorkload(t *testing.T, name string, procs int, params map[string]string, v any) {
	t.Helper()
	cmd, err := command(name, -1, procs, params)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("%s printed %q: %v", name, out, err)
	}
}

func TestMsgWorkload(t *testing.T) {
	var r LatencyReport
	runWorkload(t, "msg", 3, map[string]string{"RUN_FOR": "300ms", "MSG_PERIOD": "2ms", "MSG_WORK": "50us", "MSG_WORKERS": "2"}, &r)
	// 2 workers x about 150 rounds; a loaded host may skip some rounds.
	if len(r.SamplesNs) < 60 || len(r.SamplesNs)%2 != 0 {
		t.Errorf("%d wakeup samples, want an even number >= 60", len(r.SamplesNs))
	}
	for _, s := range r.SamplesNs {
		if s <= 0 || s > int64(time.Second) {
			t.Fatalf("wakeup latency %s", time.Duration(s))
		}
	}
}

func TestHTTPWorkload(t *testing.T) {
	var r LatencyReport
	runWorkload(t, "http", 2, map[string]string{"RUN_FOR": "500ms", "HTTP_RATE": "100", "HTTP_WORK": "100us"}, &r)
	if len(r.SamplesNs)+r.Errors != 50 || r.Errors != 0 {
		t.Errorf("%d answers, %d errors; want 50 answers at 100/s for 500ms", len(r.SamplesNs), r.Errors)
	}
	for _, s := range r.SamplesNs {
		if s < int64(100*time.Microsecond) {
			t.Errorf("request latency %s is below the handler's 100us of work", time.Duration(s))
		}
	}
}

func TestForkExecWorkload(t *testing.T) {
	var r SpawnReport
	// 2 s, so that one slow spawn on a busy host (CI saw a first exec
	// take 0.8 s) still leaves time for the pacing to show.
	runWorkload(t, "forkexec", 1, map[string]string{"RUN_FOR": "2s", "FORKEXEC_RATE": "40", "FORKEXEC_BIN": "/bin/true"}, &r)
	if r.Spawns < 10 || r.Spawns > 81 || r.Seconds < 2 {
		t.Errorf("%d spawns in %.2fs; want about 80 (at most 40/s for 2s)", r.Spawns, r.Seconds)
	}
}

func TestPipeWorkload(t *testing.T) {
	var r PipeReport
	runWorkload(t, "pipe", 2, map[string]string{"PIPE_ROUNDS": "2000"}, &r)
	if r.RoundTripNs <= 0 || r.RoundTripNs > int64(10*time.Millisecond) {
		t.Errorf("round trip %s", time.Duration(r.RoundTripNs))
	}
}

func TestWorkloadRejectsBadParams(t *testing.T) {
	cmd, err := command("msg", -1, 1, map[string]string{"RUN_FOR": "1s", "MSG_PERIOD": "soon", "MSG_WORK": "1us", "MSG_WORKERS": "1"})
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), `MSG_PERIOD="soon"`) {
		t.Errorf("err %v, stderr %q; want a failure naming MSG_PERIOD and its value", err, stderr.String())
	}
}

// TestStressNGStaged: the staged copy runs through its own loader, and its
// YAML metrics parse.
func TestStressNGStaged(t *testing.T) {
	needs.Command(t, "stress-ng", "stress-ng")
	dir := t.TempDir()
	if err := StageStressNG(dir); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "stress-ng")); st.Mode()&0o111 != 0 {
		t.Errorf("staged stress-ng is executable (%v): the lab would refuse it", st.Mode())
	}
	yaml := filepath.Join(dir, "m.yaml")
	out, err := exec.Command(filepath.Join(dir, "ld.so"), "--library-path", filepath.Join(dir, "lib"), filepath.Join(dir, "stress-ng"),
		"--cpu", "1", "--cpu-method", "int64", "--timeout", "1", "--metrics-brief", "--yaml", yaml).CombinedOutput()
	if err != nil {
		t.Fatalf("staged stress-ng: %v\n%s", err, out)
	}
	y, err := os.ReadFile(yaml)
	if err != nil {
		t.Fatal(err)
	}
	ops, ok1 := yamlNumber(string(y), "bogo-ops")
	rate, ok2 := yamlNumber(string(y), "bogo-ops-per-second-real-time")
	if !ok1 || !ok2 || ops <= 0 || rate <= 0 {
		t.Errorf("bogo-ops %v (%v), rate %v (%v) from:\n%s", ops, ok1, rate, ok2, y)
	}
}

// TestWrkWorkload runs the wrk workload on the host with wrk staged as
// the guest gets it (loader and libraries beside it): it serves, wrk
// drives it for a second, and the script's result line parses.
func TestWrkWorkload(t *testing.T) {
	needs.Command(t, "wrk", "wrk")
	dir := t.TempDir()
	if err := StageWrk(dir); err != nil {
		t.Fatal(err)
	}
	var r WrkReport
	runWorkload(t, "wrk", 2, map[string]string{"RUN_FOR": "1s", "HTTP_WORK": "100us", "WRK_BUDGET": "1us", "WRK_CONNS": "2", "WRK_DIR": dir}, &r)
	if r.Requests < 10 || r.Seconds < 0.9 || r.P50Us < 100 || r.P50Us > r.P99Us || r.P99Us > r.MaxUs {
		t.Errorf("wrk for 1s over 2 connections at 100us a request: %+v", r)
	}
	// Every request takes at least the handler's 100 µs: all are over 1 µs.
	if r.OverBudget != 1 {
		t.Errorf("%.4f of the requests over a 1us budget, want all", r.OverBudget)
	}
	// With the budget at the median, about half are over (bisection of
	// wrk's percentiles; ties at the median value move it a little).
	var half WrkReport
	runWorkload(t, "wrk", 2, map[string]string{"RUN_FOR": "1s", "HTTP_WORK": "100us", "WRK_BUDGET": (time.Duration(r.P50Us) * time.Microsecond).String(),
		"WRK_CONNS": "2", "WRK_DIR": dir}, &half)
	if half.OverBudget <= 0.05 || half.OverBudget >= 0.95 {
		t.Errorf("%.4f of the requests over the previous run's median %dus; want a fraction well inside (0, 1): %+v", half.OverBudget, r.P50Us, half)
	}
}

// TestHostSampler: markers on the console produce one sample per cell,
// measured from this host's /proc, and the console passes through.
func TestHostSampler(t *testing.T) {
	var con strings.Builder
	h := &hostSampler{out: &con, maxCores: 1, hostCPUs: 2, samples: map[int]*HostSample{}}
	fmt.Fprintf(h, "[guest] %s7 start\n[guest] other line\n", cellMarker)
	end := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(end) { // keep a CPU busy so the host is not idle
	}
	fmt.Fprintf(h, "[guest] %s7 end\n[guest] %s8 end\n", cellMarker, cellMarker)
	s := h.get(7)
	if s == nil {
		t.Fatal("no sample for cell 7")
	}
	if s.BusyCores < 0.5 || s.BusyCores > 2.5 {
		t.Errorf("host busy %.2f cores while this test spun one", s.BusyCores)
	}
	if h.get(8) != nil {
		t.Error("a cell that never started got a sample")
	}
	// The console echo of results, with a line mangled by a kernel message.
	fmt.Fprintf(h, "[guest] %s{\"kernel\":\"7.x\",\"vcpus\":2}\n", headerJSONMarker)
	fmt.Fprintf(h, "[guest] %s{\"index\":3,\"workload\":\"msg\",\"latency\":{\"n\":5}}\n", cellJSONMarker)
	fmt.Fprintf(h, "[guest] %s{\"index\":4,\"work[  12.3] random: crng\n", cellJSONMarker)
	fmt.Fprintf(h, "[guest] %s{\"scheduler\":\"scx-slo\",\"round_trip_ns\":900}\n", pipeJSONMarker)
	if e := h.echo; e.Kernel != "7.x" || e.VCPUs != 2 || len(e.Cells) != 1 || e.Cells[0].Index != 3 || e.Cells[0].Latency.N != 5 ||
		len(e.Pipe) != 1 || e.Pipe[0].RoundTripNs != 900 {
		t.Errorf("console echo parsed as %+v", e)
	}
	if !strings.Contains(con.String(), "other line") {
		t.Errorf("console not passed through: %q", con.String())
	}
}

// TestReportFromWorkloads renders a report from cells whose samples come
// from real runs of the msg workload, and checks the files.
func TestReportFromWorkloads(t *testing.T) {
	cfg := Smoke()
	cfg.Reps = 2
	cfg.Schedulers = append(cfg.Schedulers, PeerNames...)
	r := &Results{Config: cfg, Kernel: "test", VCPUs: 2, Host: &Host{QemuMaxCores: 1}, Peers: &PeerReport{Error: "linux-source-7.3 not found"}}
	var lr LatencyReport
	runWorkload(t, "msg", 3, map[string]string{"RUN_FOR": "200ms", "MSG_PERIOD": "2ms", "MSG_WORK": "50us", "MSG_WORKERS": "2"}, &lr)
	for i, c := range plan(cfg) {
		s := Summarize(lr.SamplesNs[i%7:], cfg.budgetOf(c.workload))
		r.Cells = append(r.Cells, Cell{Index: i, Rep: c.rep, Workload: c.workload, Load: c.load, Scheduler: c.sched, Latency: s,
			Batch: Batch{CPUSeconds: 1, WindowSeconds: 1, BogoOpsPerSec: float64(100 + i), SpawnsPerSec: 10}, Host: &HostSample{QemuCores: 1, BusyCores: 2}})
	}
	r.Pipe = []Pipe{{Scheduler: EEVDF, RoundTripNs: 50000}, {Scheduler: SCXSLO, RoundTripNs: 55000}}
	dir := t.TempDir()
	if err := WriteReport(dir, r, "test"); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	for _, want := range []string{"| 200% | scx-slo |", "| 0 | floor |", "## Goals", "Pipe throughput with scx-slo: 0.91 of EEVDF's", "## How steady",
		"| 200% | scx_flatcg-short |", "**No peer build:** linux-source-7.3 not found", "| load | setup | eevdf | eevdf-tuned | eevdf-idle | scx-slo | scx_simple | scx_flatcg | scx_flatcg-short |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
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
		// Something besides the white background was drawn in every panel row.
		b := img.Bounds()
		coloured := 0
		for y := b.Min.Y; y < b.Max.Y; y += 3 {
			for x := b.Min.X; x < b.Max.X; x += 3 {
				if r, g, bl, _ := img.At(x, y).RGBA(); r != g || g != bl {
					coloured++
				}
			}
		}
		if coloured < 50 {
			t.Errorf("%s: only %d coloured pixels sampled; no series drawn?", name, coloured)
		}
	}
	var back Results
	b, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	if err := json.Unmarshal(b, &back); err != nil || len(back.Cells) != len(r.Cells) {
		t.Errorf("results.json: %v, %d cells", err, len(back.Cells))
	}
}

// TestMissingPeerFailsOnlyItsCells: without a peer build the host stages
// no peer and tells the guest why, and the peer's setup fails with that
// reason (the cell records it; the matrix runs on).
func TestMissingPeerFailsOnlyItsCells(t *testing.T) {
	cfg := PeerWrkSmoke()
	files, rep, err := stagePeers(&cfg, nil, errors.New("apt-get download linux-source-7.3: 404"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 || rep.Error == "" || rep.Build != nil {
		t.Errorf("staged %v, report %+v; want nothing staged and the build error reported", files, rep)
	}
	g := &guest{cfg: cfg}
	_, err = g.startPeer(SCXFlatCG)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "scx_flatcg") {
		t.Errorf("starting a peer that was not built: %v; want an error naming it and the build's failure", err)
	}
}
