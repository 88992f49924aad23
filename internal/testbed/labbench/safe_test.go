package labbench

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLoadSearch drives the search over synthetic outcomes (the search
// is pure logic over measured verdicts): monotone thresholds land on the
// highest met load within the resolution, and a non-monotone outcome
// stops at its first failure.
func TestLoadSearch(t *testing.T) {
	below := func(limit int) func(int) bool { return func(l int) bool { return l <= limit } }
	for _, tc := range []struct {
		name                  string
		step, max, resolution int
		met                   func(int) bool
		safe                  int
		tried                 []int
	}{
		{"always met", 25, 200, 10, func(int) bool { return true }, 200, []int{25, 50, 75, 100, 125, 150, 175, 200}},
		{"never met", 25, 200, 10, func(int) bool { return false }, 0, []int{25, 12, 6}},
		{"never met, resolution 1", 25, 200, 1, func(int) bool { return false }, 0, []int{25, 12, 6, 3, 1}},
		{"limit 80", 25, 200, 10, below(80), 75, []int{25, 50, 75, 100, 87, 81}},
		{"limit 80, resolution 1", 25, 200, 1, below(80), 80, []int{25, 50, 75, 100, 87, 81, 78, 79, 80}},
		{"limit 60", 25, 200, 5, below(60), 59, []int{25, 50, 75, 62, 56, 59}},
		{"max not a multiple of step", 25, 90, 5, below(89), 86, []int{25, 50, 75, 90, 82, 86}},
		{"limit at max", 25, 90, 5, below(90), 90, []int{25, 50, 75, 90}},
		// Noise: 50 fails, 75 would meet; the search never goes back up.
		{"non-monotone", 25, 200, 10, func(l int) bool { return l != 50 && l < 150 }, 43, []int{25, 50, 37, 43}},
		{"step is max", 100, 100, 100, func(int) bool { return true }, 100, []int{100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{SafeStep: tc.step, SafeMax: tc.max, SafeResolution: tc.resolution}
			s := newLoadSearch(tc.step, tc.max, tc.resolution)
			for range cfg.searchSteps() {
				l, ok := s.next()
				if !ok {
					break
				}
				if slices.Contains(s.tried, l) {
					t.Fatalf("load %d measured twice (tried %v)", l, s.tried)
				}
				s.record(l, tc.met(l))
			}
			if _, more := s.next(); more {
				t.Fatalf("search not over after searchSteps = %d steps (tried %v)", cfg.searchSteps(), s.tried)
			}
			if s.safe() != tc.safe || !slices.Equal(s.tried, tc.tried) {
				t.Errorf("safe %d after %v, want %d after %v", s.safe(), s.tried, tc.safe, tc.tried)
			}
		})
	}
}

// TestSearchSafePlan runs the guest's safe plan with a measure that
// judges each load by a per-setup threshold, and checks the floor, the
// interleaving and that the host's reading of the cells finds the same
// safe loads; a starved repetition turns a met step into a limit.
func TestSearchSafePlan(t *testing.T) {
	cfg := Config{Mode: Safe, Reps: 2, Cell: time.Second, Schedulers: []string{EEVDFTuned, SCXSLO}, Workloads: []string{Probe}}.withDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	limit := map[string]int{EEVDF: 1000, EEVDFTuned: 60, SCXSLO: 130}
	r := &Results{Config: cfg}
	err := searchSafe(cfg, func(s cellSpec) (Cell, error) {
		over := 0.0
		if s.load > limit[s.sched] {
			over = 0.2
		}
		c := Cell{Index: len(r.Cells), Rep: s.rep, Workload: s.workload, Load: s.load, Scheduler: s.sched,
			Latency: Summary{N: 100, OverBudget: over}, Batch: Batch{CPUSeconds: float64(s.load) / 100, WindowSeconds: 1, BogoOpsPerSec: float64(10 * s.load)}}
		r.Cells = append(r.Cells, c)
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Cells[0].Load != 0 || r.Cells[1].Load != 0 || r.Cells[2].Load == 0 {
		t.Errorf("the floor does not come first, twice: %+v", r.Cells[:3])
	}
	if r.Cells[2].Scheduler == r.Cells[4].Scheduler {
		t.Errorf("setup order not rotated between repetitions: %s then %s", r.Cells[2].Scheduler, r.Cells[4].Scheduler)
	}
	got := map[string]SafeResult{}
	for _, sr := range safeResults(r) {
		got[sr.Setup] = sr
	}
	// Resolution 10 from 25 % steps: bisection stops at a 6-7 % bracket.
	if s := got[EEVDFTuned]; s.Safe != 56 || s.Limit != 62 || s.At == nil || s.At.Bogo.Median != 560 || s.At.N != 2 {
		t.Errorf("eevdf-tuned: %+v, want safe 56, limit 62, 560 bogo-ops/s over 2 repetitions", s)
	}
	if s := got[SCXSLO]; s.Safe != 125 || s.Limit != 131 {
		t.Errorf("scx-slo: %+v, want safe 125, limit 131", s)
	}
	// The host starved one repetition at 100 %: the guest went on as if
	// met, the host reads the step as a limit.
	for i := range r.Cells {
		if c := &r.Cells[i]; c.Scheduler == SCXSLO && c.Load == 100 && c.Rep == 1 {
			c.Host = &HostSample{Starved: true}
		}
	}
	for _, sr := range safeResults(r) {
		if sr.Setup != SCXSLO {
			continue
		}
		if sr.Safe != 75 || sr.Limit != 100 || sr.GuestSafe != 125 {
			t.Errorf("scx-slo with a starved step at 100%%: safe %d, limit %d, guest's %d; want 75, 100, 125", sr.Safe, sr.Limit, sr.GuestSafe)
		}
		for _, st := range sr.Steps {
			if st.Load == 100 && (!st.GuestMet || st.Met || st.Starved != 1) {
				t.Errorf("step 100%%: %+v, want met by the guest, not by the host, 1 starved", st)
			}
		}
	}
	md := Markdown(r, "test")
	for _, want := range []string{"## SLO-safe batch load", "| probe | scx-slo | 75% | 100% |", "| 125% |\n", "starved", "| scx-slo | 1.34 / 1.34 | 1 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestOopsWatch: the text-patching oops is recognised in the console
// stream even when a write splits its marker, and passed through.
func TestOopsWatch(t *testing.T) {
	var con strings.Builder
	o := &oopsWatch{out: &con}
	o.Write([]byte("[  12.3] sched_ext: BPF scheduler \"slo\" enabled\n[  13.0] Oops: in"))
	if o.seen() {
		t.Fatal("oops seen before its marker was complete")
	}
	o.Write([]byte("t3: 0000 [#1] PREEMPT SMP NOPTI\n"))
	if !o.seen() {
		t.Error("the oops split across two writes was not recognised")
	}
	if !strings.Contains(con.String(), "Oops: int3: 0000") {
		t.Errorf("console not passed through: %q", con.String())
	}
	old := &oopsWatch{}
	old.Write([]byte("[   9.1] int3: 0000 [#1] SMP NOPTI\n"))
	if !old.seen() {
		t.Error("the oops without the \"Oops: \" prefix (kernels before 6.10) was not recognised")
	}
	clean := &oopsWatch{}
	clean.Write([]byte("Oops: general protection fault, probably for non-canonical address: 0000 [#1]\nOops: invalid opcode: 0000 [#2]\n"))
	if clean.seen() {
		t.Error("another oops taken for the text-patching one")
	}
}

// TestJudgeBoot: a fidelity boot is retried only when the text-patching
// oops killed the guest before its cell was echoed, and only while
// retries are left; every other outcome keeps the cell or its error.
func TestJudgeBoot(t *testing.T) {
	spec := cellSpec{1, Probe, 100, SCXSLO}
	died := errors.New("guest ended without reporting the command's exit status")
	echoed := &Results{Cells: []Cell{{Workload: Probe, Load: 100, Scheduler: SCXSLO, Latency: Summary{N: 300}}}, Partial: true}
	for _, tc := range []struct {
		name    string
		r       *Results
		err     error
		oops    bool
		boot    int
		again   bool
		wantErr string
	}{
		{"clean", &Results{Cells: echoed.Cells}, nil, false, 1, false, ""},
		{"oops before the cell", nil, died, true, 1, true, ""},
		{"oops before the cell, last retry", nil, died, true, FidelityRetries, true, ""},
		{"oops before the cell, retries spent", nil, died, true, FidelityRetries + 1, false, "4 boots died with the text-patching oops"},
		{"oops after the cell", echoed, died, true, 1, false, ""},
		{"other death after the cell", echoed, died, false, 1, false, "exit status"},
		{"other death before the cell", nil, died, false, 1, false, "exit status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, again := judgeBoot(tc.r, tc.err, tc.oops, tc.boot, spec)
			if again != tc.again {
				t.Fatalf("again = %v, want %v", again, tc.again)
			}
			if again {
				return
			}
			if tc.wantErr == "" && (c.Err != "" || c.Latency.N != 300) {
				t.Errorf("cell %+v, want the echoed cell without error", c)
			}
			if tc.wantErr != "" && !strings.Contains(c.Err, tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", c.Err, tc.wantErr)
			}
			if c.Workload != Probe || c.Load != 100 || c.Scheduler != SCXSLO {
				t.Errorf("cell %+v does not name its spec", c)
			}
		})
	}
}
