package labbench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Mode Safe (Config.Mode) replaces the fixed load matrix by a search, per
// latency workload and setup, for the SLO-safe load: the highest batch
// load at which the latency cgroup still meets its target.
const Safe = "safe"

// SafeFull is the on-demand SLO-safe utilization run: every setup and
// the three default workloads, searched in 25 % steps up to 200 % and
// bisected to 10 %, 2 repetitions a step.
func SafeFull() Config {
	c := Full()
	c.Mode, c.Reps, c.Loads, c.PipeReps = Safe, 2, nil, 0
	c.SafeStep, c.SafeMax, c.SafeResolution = 25, 200, 10
	return c.withDefaults()
}

// loadSearch finds the highest batch load (percent of the vCPUs) that
// meets the SLO: it climbs in coarse steps up to max until a step fails,
// then bisects between the last met load and the first failed one until
// they are at most resolution apart. It assumes that a heavier load
// never meets where a lighter one failed; measurements that break that
// (noise) are not revisited: the first failure bounds the result.
type loadSearch struct {
	step, max, resolution int

	lo, hi int  // lo met (0: nothing yet), hi failed (0: nothing yet)
	climb  bool // still in the coarse phase
	tried  []int
}

func newLoadSearch(step, max, resolution int) *loadSearch {
	return &loadSearch{step: step, max: max, resolution: resolution, climb: true}
}

// next is the load to measure next; false when the search is over.
func (s *loadSearch) next() (int, bool) {
	if s.climb {
		l := s.lo + s.step
		if l >= s.max {
			l = s.max
		}
		if s.lo == s.max {
			return 0, false
		}
		return l, true
	}
	if s.hi-s.lo <= s.resolution {
		return 0, false
	}
	return s.lo + (s.hi-s.lo)/2, true
}

// record takes the verdict for a load next returned.
func (s *loadSearch) record(load int, met bool) {
	s.tried = append(s.tried, load)
	if met {
		s.lo = load
		return
	}
	s.hi, s.climb = load, false
}

// safe is the highest load found to meet (0: none).
func (s *loadSearch) safe() int { return s.lo }

// stepMet is the guest's verdict on one search step from its
// repetitions: met when every repetition produced samples without error
// and each had at most maxOver of them over budget. The host adds the
// starved cells (safeVerdict).
func stepMet(cells []Cell, maxOver float64) bool {
	if len(cells) == 0 {
		return false
	}
	for _, c := range cells {
		if c.Err != "" || c.Latency.N == 0 || c.Latency.OverBudget > maxOver {
			return false
		}
	}
	return true
}

// SafeStep is one measured load of a search, judged on the host.
type SafeStep struct {
	Load    int
	Over    Spread // fraction over budget over the repetitions
	Bogo    Spread // stress-ng bogo-ops/s
	Cores   Spread // batch cgroup CPU in cores
	N       int    // repetitions
	Starved int    // of them, cells whose qemu the host starved
	Failed  int    // of them, cells with an error or no samples
	Met     bool   // every repetition met, none starved or failed
	// GuestMet is the guest's verdict, the one the search went on: it
	// cannot see the host's starvation.
	GuestMet bool
}

// SafeResult is one (workload, setup) search as the host reads it.
type SafeResult struct {
	Workload, Setup string
	Steps           []SafeStep // in load order
	// Safe is the highest met load below every load that did not meet
	// (starved or failed steps count as not met); 0 when none met.
	Safe int
	At   *SafeStep // the step at Safe; nil when Safe is 0
	// Limit says why the search stopped climbing: the load that did not
	// meet just above Safe, or 0 when Safe reached the search's maximum.
	Limit int
	// GuestSafe is the same reading from the guest's verdicts, which do
	// not see starvation: what the search itself found.
	GuestSafe int
}

// SafeResults is safeResults for callers outside the package.
func SafeResults(r *Results) []SafeResult { return safeResults(r) }

// SearchReplay checks a safe-mode run against the search: cells are one
// workload's loaded cells of a single-setup run, in the order measured.
// It returns the loads measured, step by step, and the loads the search
// takes when fed the guest's verdicts on those same cells.
func SearchReplay(cells []Cell, cfg Config) (measured, search []int) {
	s := newLoadSearch(cfg.SafeStep, cfg.SafeMax, cfg.SafeResolution)
	for i := 0; i < len(cells); i += cfg.Reps {
		step := cells[i:min(i+cfg.Reps, len(cells))]
		measured = append(measured, step[0].Load)
		if l, ok := s.next(); ok {
			search = append(search, l)
			s.record(l, stepMet(step, cfg.SafeMaxOver))
		}
	}
	if l, ok := s.next(); ok {
		search = append(search, l) // the search wanted more than was measured
	}
	return measured, search
}

// safeResults groups a safe-mode run's loaded cells by (workload, setup)
// and load, judges each step with the host's starvation marks, and finds
// each search's safe load.
func safeResults(r *Results) []SafeResult {
	cfg := r.Config
	var out []SafeResult
	for _, wl := range cfg.Workloads {
		for _, s := range cfg.Schedulers {
			byLoad := map[int][]Cell{}
			for _, c := range r.Cells {
				if c.Workload == wl && c.Scheduler == s && c.Load > 0 {
					byLoad[c.Load] = append(byLoad[c.Load], c)
				}
			}
			if len(byLoad) == 0 {
				continue
			}
			res := SafeResult{Workload: wl, Setup: s}
			loads := make([]int, 0, len(byLoad))
			for l := range byLoad {
				loads = append(loads, l)
			}
			slices.Sort(loads)
			for _, l := range loads {
				res.Steps = append(res.Steps, safeStep(l, byLoad[l], cfg.SafeMaxOver))
			}
			for i := range res.Steps {
				st := &res.Steps[i]
				if !st.Met {
					res.Limit = st.Load
					break
				}
				res.Safe, res.At = st.Load, st
			}
			for _, st := range res.Steps {
				if !st.GuestMet {
					break
				}
				res.GuestSafe = st.Load
			}
			out = append(out, res)
		}
	}
	return out
}

func safeStep(load int, cells []Cell, maxOver float64) SafeStep {
	st := SafeStep{Load: load, N: len(cells), GuestMet: stepMet(cells, maxOver)}
	var over, bogo, cores []float64
	for _, c := range cells {
		if c.Err != "" || c.Latency.N == 0 {
			st.Failed++
			continue
		}
		if c.Host != nil && c.Host.Starved {
			st.Starved++
		}
		over = append(over, c.Latency.OverBudget)
		bogo = append(bogo, c.Batch.BogoOpsPerSec)
		if c.Batch.WindowSeconds > 0 {
			cores = append(cores, c.Batch.CPUSeconds/c.Batch.WindowSeconds)
		}
	}
	st.Over, st.Bogo, st.Cores = spreadOf(over), spreadOf(bogo), spreadOf(cores)
	st.Met = st.GuestMet && st.Starved == 0 && st.Failed == 0
	return st
}

// validateSafe checks the search's fields (Mode Safe only).
func (c Config) validateSafe() error {
	switch {
	case c.SafeStep < 1 || c.SafeStep > 1000:
		return fmt.Errorf("labbench: SafeStep = %d: want a coarse search step of 1..1000 percent of the vCPUs", c.SafeStep)
	case c.SafeMax < c.SafeStep || c.SafeMax > 1000:
		return fmt.Errorf("labbench: SafeMax = %d: want the highest load to search, SafeStep (%d)..1000 percent", c.SafeMax, c.SafeStep)
	case c.SafeResolution < 1:
		return fmt.Errorf("labbench: SafeResolution = %d: want at least 1 percent", c.SafeResolution)
	case c.SafeMaxOver < 0 || c.SafeMaxOver >= 1:
		return fmt.Errorf("labbench: SafeMaxOver = %v: want the fraction of samples allowed over budget, 0..1 (0.01 is 1 %%)", c.SafeMaxOver)
	case len(c.Schedulers) == 0:
		return fmt.Errorf("labbench: Schedulers is empty: the safe search needs at least one setup")
	}
	return nil
}

// searchSteps bounds a search's steps: the climb plus the bisection.
func (c Config) searchSteps() int {
	n := (c.SafeMax + c.SafeStep - 1) / c.SafeStep
	for gap := c.SafeStep; gap > c.SafeResolution; gap = (gap + 1) / 2 {
		n++
	}
	return n
}

// searchSafe runs the safe-mode plan with measure: per workload, the
// floor (the workload alone) Reps times, then one search per setup. The
// searches advance together, one step each per round, and each step's
// repetitions interleave with the other setups' (setup order rotated per
// repetition), so a drift in the host's load hits every setup alike.
func searchSafe(cfg Config, measure func(cellSpec) (Cell, error)) error {
	for _, wl := range cfg.Workloads {
		for rep := range cfg.Reps {
			if _, err := measure(cellSpec{rep, wl, 0, EEVDF}); err != nil {
				return err
			}
		}
		searches := make([]*loadSearch, len(cfg.Schedulers))
		for i := range searches {
			searches[i] = newLoadSearch(cfg.SafeStep, cfg.SafeMax, cfg.SafeResolution)
		}
		// Bounded: every search ends within searchSteps steps.
		for range cfg.searchSteps() {
			loads := make([]int, len(searches))
			active := 0
			for i, s := range searches {
				if l, ok := s.next(); ok {
					loads[i], active = l, active+1
				}
			}
			if active == 0 {
				break
			}
			cells := make([][]Cell, len(searches))
			n := len(cfg.Schedulers)
			for rep := range cfg.Reps {
				for k := range n {
					i := (k + rep) % n
					if loads[i] == 0 {
						continue
					}
					c, err := measure(cellSpec{rep, wl, loads[i], cfg.Schedulers[i]})
					if err != nil {
						return err
					}
					cells[i] = append(cells[i], c)
				}
			}
			for i, s := range searches {
				if loads[i] > 0 {
					met := stepMet(cells[i], cfg.SafeMaxOver)
					s.record(loads[i], met)
					fmt.Printf("labbench: safe %s %s load %d%% met=%v\n", wl, cfg.Schedulers[i], loads[i], met)
				}
			}
		}
		for i, s := range searches {
			fmt.Printf("labbench: safe %s %s: safe load %d%% (tried %v)\n", wl, cfg.Schedulers[i], s.safe(), s.tried)
		}
	}
	return nil
}

// safeSection renders the safe-mode run: one table of safe loads and the
// batch throughput there, the ratios between setups, and every step.
func safeSection(r *Results) string {
	cfg := r.Config
	results := safeResults(r)
	g := aggregate(r)
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## SLO-safe batch load\n\n")
	w("For each latency workload and setup, the highest batch load (percent of the vCPUs) at which the latency cgroup still met its target: at most %s of its samples over budget in every one of the %d repetitions of a step. ", fmtPct(cfg.SafeMaxOver), cfg.Reps)
	w("Searched within this boot: %d %% steps up to %d %% until a step did not meet, then bisection down to a %d %% bracket. ", cfg.SafeStep, cfg.SafeMax, cfg.SafeResolution)
	w("A step with a starved or failed repetition counts as not met (the guest cannot see the host's starvation, so its search went on as if met where only the host's reading differs: marked *guest: met*). ")
	w("The safe load is the highest met step below every step that did not meet; \"limit\" is the first step above it that did not meet (– when the search reached %d %%). Batch throughput is the median over the safe step's repetitions; a safe load of 0 means no searched load met.\n\n", cfg.SafeMax)
	w("The last column is the search's own answer from the guest's verdicts, which do not see starvation: where it is higher than the safe load, starved cells are all that stand between them, and it says what the setup might carry on a quiet host, no more.\n\n")
	w("| workload | setup | safe load | limit | batch cores at safe load | bogo-ops/s at safe load | over budget at safe load | floor over budget | starvation not counted |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, sr := range results {
		floor := "–"
		if f := g[key{sr.Workload, 0, EEVDF}]; f != nil {
			floor = pct(f.Over)
			if f.Starved > 0 {
				floor += fmt.Sprintf(" (%d/%d starved)", f.Starved, f.N)
			}
		}
		limit := "–"
		if sr.Limit > 0 {
			limit = fmt.Sprintf("%d%%", sr.Limit)
		}
		cores, bogo, over := "0", "0", "–"
		if sr.At != nil {
			cores, bogo, over = fmtMs(sr.At.Cores), fmtMs(sr.At.Bogo), pct(sr.At.Over)
		}
		w("| %s | %s | %d%% | %s | %s | %s | %s | %s | %d%% |\n", sr.Workload, sr.Setup, sr.Safe, limit, cores, bogo, over, floor, sr.GuestSafe)
	}
	w("\n")
	for _, wl := range cfg.Workloads {
		var rows []SafeResult
		for _, sr := range results {
			if sr.Workload == wl {
				rows = append(rows, sr)
			}
		}
		safe := 0
		for _, x := range rows {
			if x.At != nil {
				safe++
			}
		}
		if len(rows) < 2 || safe == 0 {
			continue // no setup met at any load: no ratios to take
		}
		w("%s: the row's safe load ÷ the column's, and its bogo-ops/s at the safe load ÷ the column's (over 1: the row carries more batch work while the SLO holds; – where a side has no safe load):\n\n| setup |", wl)
		for _, c := range rows {
			w(" %s |", c.Setup)
		}
		w("\n|---|%s\n", strings.Repeat("---|", len(rows)))
		for _, x := range rows {
			w("| %s |", x.Setup)
			for _, y := range rows {
				switch {
				case x.Setup == y.Setup:
					w(" 1 |")
				case y.At == nil:
					w(" – |")
				default:
					xb := 0.0
					if x.At != nil {
						xb = x.At.Bogo.Median
					}
					w(" %s / %s |", ratio(float64(x.Safe), float64(y.Safe)), ratio(xb, y.At.Bogo.Median))
				}
			}
			w("\n")
		}
		w("\n")
	}
	w("### Search steps\n\n")
	w("Each step: load, fraction over budget (median and range over repetitions), starved and failed repetitions, verdict.\n\n")
	w("| workload | setup | steps |\n|---|---|---|\n")
	for _, sr := range results {
		var parts []string
		for _, st := range sr.Steps {
			p := fmt.Sprintf("%d%%: %s", st.Load, pct(st.Over))
			if st.Starved > 0 {
				p += fmt.Sprintf(", %d/%d starved", st.Starved, st.N)
			}
			if st.Failed > 0 {
				p += fmt.Sprintf(", %d/%d failed", st.Failed, st.N)
			}
			switch {
			case st.Met:
				p += " met"
			case st.GuestMet:
				p += " **not met** (*guest: met*)"
			default:
				p += " **not met**"
			}
			parts = append(parts, p)
		}
		w("| %s | %s | %s |\n", sr.Workload, sr.Setup, strings.Join(parts, "; "))
	}
	w("\n")
	return b.String()
}

func fmtPct(f float64) string { return strconv.FormatFloat(100*f, 'g', -1, 64) + " %" }
