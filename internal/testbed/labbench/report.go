package labbench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// group is one (workload, load, scheduler) over repetitions.
type group struct {
	P50, P90, P99, Over Spread // latencies in ms
	BatchCores          Spread // batch cgroup CPU in the window, in cores
	Bogo, Spawns        Spread // per second
	Qemu, HostBusy      Spread // host cores qemu got, host cores busy in all
	Load1               Spread // host 1-minute load average at the end of the cell
	KMean, KOver        Spread // the kernel's view: mean run-queue wait (ms), fraction over budget
	RPS                 Spread // wrk's requests per second
	Starved, Failed, N  int
}

type key struct {
	workload  string
	load      int
	scheduler string
}

func aggregate(r *Results) map[key]*group {
	type lists struct{ p50, p90, p99, over, batch, bogo, spawns, qemu, busy, load, kmean, kover, rps []float64 }
	raw := map[key]*lists{}
	out := map[key]*group{}
	for _, c := range r.Cells {
		k := key{c.Workload, c.Load, c.Scheduler}
		if raw[k] == nil {
			raw[k], out[k] = &lists{}, &group{}
		}
		l, g := raw[k], out[k]
		g.N++
		if c.Err != "" || c.Latency.N == 0 {
			g.Failed++
			continue
		}
		ms := func(ns int64) float64 { return float64(ns) / 1e6 }
		l.p50, l.p90, l.p99 = append(l.p50, ms(c.Latency.P50Ns)), append(l.p90, ms(c.Latency.P90Ns)), append(l.p99, ms(c.Latency.P99Ns))
		l.over = append(l.over, c.Latency.OverBudget)
		if c.Wrk != nil {
			l.rps = append(l.rps, c.Wrk.RequestsPerSec)
		}
		if c.Kernel != nil {
			l.kmean, l.kover = append(l.kmean, float64(c.Kernel.MeanNs)/1e6), append(l.kover, c.Kernel.MissRatio)
		}
		if c.Load > 0 {
			l.batch = append(l.batch, c.Batch.CPUSeconds/math.Max(c.Batch.WindowSeconds, 1e-9))
			l.bogo = append(l.bogo, c.Batch.BogoOpsPerSec)
			l.spawns = append(l.spawns, c.Batch.SpawnsPerSec)
		}
		if c.Host != nil {
			l.qemu, l.busy, l.load = append(l.qemu, c.Host.QemuCores), append(l.busy, c.Host.BusyCores), append(l.load, c.Host.Load1)
			if c.Host.Starved {
				g.Starved++
			}
		}
	}
	for k, l := range raw {
		g := out[k]
		g.P50, g.P90, g.P99, g.Over = spreadOf(l.p50), spreadOf(l.p90), spreadOf(l.p99), spreadOf(l.over)
		g.BatchCores, g.Bogo, g.Spawns, g.Qemu, g.HostBusy = spreadOf(l.batch), spreadOf(l.bogo), spreadOf(l.spawns), spreadOf(l.qemu), spreadOf(l.busy)
		g.KMean, g.KOver, g.Load1, g.RPS = spreadOf(l.kmean), spreadOf(l.kover), spreadOf(l.load), spreadOf(l.rps)
	}
	return out
}

// pipeSummary is the median round trip per scheduler, in ns.
func pipeSummary(r *Results) map[string]Spread {
	by := map[string][]float64{}
	for _, p := range r.Pipe {
		if p.Err == "" && p.RoundTripNs > 0 {
			by[p.Scheduler] = append(by[p.Scheduler], float64(p.RoundTripNs))
		}
	}
	out := map[string]Spread{}
	for s, v := range by {
		out[s] = spreadOf(v)
	}
	return out
}

// WriteReport writes results.json, README.md (tables, goals, notes),
// latency.png and throughput.png into dir. command is what produced r.
func WriteReport(dir string, r *Results, command string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if command != "" {
		r.Command = command
	}
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(Markdown(r, r.Command)), 0o644); err != nil {
		return err
	}
	if r.Config.Mode == Safe {
		return nil // the plots are per fixed load; the report's tables say it all
	}
	for name, draw := range map[string]func(*os.File) error{
		"latency.png":    func(f *os.File) error { return latencyPlot(f, r) },
		"throughput.png": func(f *os.File) error { return throughputPlot(f, r) },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := draw(f); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func fmtMs(s Spread) string {
	if math.IsNaN(s.Median) {
		return "–"
	}
	if s.N > 1 {
		return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
	}
	return num(s.Median)
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 0.1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func pct(s Spread) string {
	if math.IsNaN(s.Median) {
		return "–"
	}
	if s.N > 1 {
		return fmt.Sprintf("%.1f%% (%.1f–%.1f)", 100*s.Median, 100*s.Min, 100*s.Max)
	}
	return fmt.Sprintf("%.1f%%", 100*s.Median)
}

// lowerBy says how many times lower x is than ref: "5.2x", "∞" when x is 0.
func lowerBy(ref, x float64) string {
	switch {
	case math.IsNaN(ref) || math.IsNaN(x):
		return "–"
	case x == 0 && ref == 0:
		return "= (both 0)"
	case x == 0:
		return "∞"
	}
	return fmt.Sprintf("%.2gx", ref/x)
}

func ratio(x, ref float64) string {
	if math.IsNaN(x) || math.IsNaN(ref) || ref == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", x/ref)
}

// Markdown renders the report.
func Markdown(r *Results, command string) string {
	g := aggregate(r)
	cfg := r.Config
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# scx-slo lab benchmark\n\n")
	w("Produced by `%s`", command)
	if r.Host != nil {
		w(" on %s.", r.Host.Date)
	}
	w("\n\n")
	if r.Partial {
		w("**Partial run:** the guest died before the end; these are the cells it echoed on its console.\n\n")
	}
	w("- Guest: Linux %s, %d vCPUs, under qemu", r.Kernel, r.VCPUs)
	if h := r.Host; h != nil {
		w(" (%s, accel `%s`", h.Qemu, h.Accel)
		switch {
		case strings.Contains(h.Accel, "thread=single"):
			w(": software emulation, one host thread runs every vCPU in turn, so qemu can use at most %.0f host core", h.QemuMaxCores)
		case strings.HasPrefix(h.Accel, "tcg"):
			w(": software emulation, one host thread per vCPU, at most %.0f host cores", h.QemuMaxCores)
		}
		w(").\n")
		w("- Host: %s, %d CPUs, %d MiB, kernel %s; 1-minute load %.2f when the run started.\n", h.CPU, h.CPUs, h.MemoryMB, h.Kernel, h.Load1Before)
	} else {
		w(".\n")
	}
	if cfg.Mode == Safe {
		w("- Safe-load search: per workload the floor %d times, then one search per setup, the setups' searches advancing together one step per round, each step %d repetitions interleaved with the other setups' (order rotated per repetition), %s measured per cell. ", cfg.Reps, cfg.Reps, cfg.Cell)
	} else {
		w("- Matrix: %d repetitions interleaved in one boot (ABAB, scheduler order rotated per repetition), %s measured per cell. ", cfg.Reps, cfg.Cell)
	}
	w("Batch load in percent of the vCPUs: Debian's stress-ng `--cpu` workers (`--cpu-method int64`, `--cpu-load` for fractional demand) plus a fork/exec job spawning `/bin/true` at up to %d/s, all in the batch cgroup.\n", cfg.ForkExecRate)
	w("- Setups: `eevdf` (both cgroups cpu.weight 100), `eevdf-tuned` (latency cpu.weight 10000, batch 1), `eevdf-idle` (batch cpu.idle=1), `scx-slo` (the scx-slo scheduler attached for the cell, SLO on the latency cgroup: %s run-queue budget, target %g)", cfg.Budget, cfg.Target)
	if cfg.usesPeers() {
		w("; the kernel's sample sched_ext schedulers, each attached for its cells (\"Peer schedulers\" below): `%s` (cgroups at cpu.weight 100; it weighs tasks only), `%s` (latency cpu.weight 10000, batch 1: the sched_ext counterpart of eevdf-tuned), `%s` (the same with `-s 1`, the shortest cgroup slice)", SCXSimple, SCXFlatCG, SCXFlatCGShort)
	}
	w("; `floor` is the latency workload alone under EEVDF.\n")
	w("- Workloads, each alone in the latency cgroup: `probe` (wake every 1 ms by clock_nanosleep, 100 µs of work; lateness of each wakeup, skipping missed periods like cyclictest, budget %s), ", cfg.Budget)
	w("`http` (Go HTTP server on loopback, %d µs of CPU per request, driven at %d req/s by an open-loop generator that times each request from its scheduled send, so coordinated omission is corrected; budget %s), ", cfg.HTTPWork.Microseconds(), cfg.HTTPRate, cfg.HTTPBudget)
	w("`msg` (schbench-like: a message thread wakes %d worker threads through pipes every %s, each works %s; wakeup latency of each worker, budget %s)", cfg.MsgWorkers, cfg.MsgPeriod, cfg.MsgWork, cfg.Budget)
	if slices.Contains(cfg.Workloads, Wrk) {
		w(", `wrk` (Debian's wrk, closed loop: %d connections each sending its next request when the last answer arrives, against the same server as `http`, both in the latency cgroup; wrk's own percentiles and the share of its requests over %s)", cfg.WrkConns, cfg.HTTPBudget)
	}
	w(".\n\n")
	if cfg.Mode == Safe {
		w("Host starvation per cell as in the matrix: a cell counts as starved when qemu got under %.0f%% of what it can use while the host was more than 90%% busy.\n\n", 100*starvedShare)
		w("%s", safeSection(r))
		w("%s", peerSection(r))
		return b.String()
	}
	w("Cells show the median over repetitions and, in brackets, the range. Latencies in ms. \"over\" is the fraction of wakeups or requests above the budget; \"× lower vs\" is the default (or tuned) EEVDF fraction divided by this one, from medians of the same boot. ")
	w("Batch: CPU the batch cgroup got in the window (cores), stress-ng bogo-ops/s over its whole run and the ratio to EEVDF default, fork/exec spawns/s. host: cores busy on the whole host / cores qemu got in the window, and the host's 1-minute load average (medians); a cell counts as starved when qemu got under %.0f%% of what it can use while the host was more than 90%% busy. The last column is the in-kernel measurement of the latency cgroup's runnable-to-running waits against the %s run-queue budget, by scx-slo itself or, under EEVDF, by scx-slo's observe-mode tracer (loaded for those cells only): next to the workload's own figures it separates run-queue waits from delays the scheduler does not see (timer and IPI delivery, and under TCG the emulator running the other vCPU).\n\n", 100*starvedShare, cfg.Budget)
	for _, wl := range cfg.Workloads {
		floor := g[key{wl, 0, EEVDF}]
		w("## %s\n\n", wl)
		w("| load | setup | p50 | p90 | p99 | over | × lower vs default | × lower vs tuned | p50 / floor | p90 / floor | batch cores | bogo-ops/s (vs default) | spawns/s | host / qemu cores | starved | run-queue wait: mean ms, over (kernel's view) |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		if floor != nil {
			w("| 0 | floor | %s | %s | %s | %s | | | 1 | 1 | | | | %s | %d/%d | %s |\n", fmtMs(floor.P50), fmtMs(floor.P90), fmtMs(floor.P99), pct(floor.Over), hostCol(floor), floor.Starved, floor.N, kernelCol(floor))
		}
		for _, l := range cfg.Loads {
			def, tuned := g[key{wl, l, EEVDF}], g[key{wl, l, EEVDFTuned}]
			for _, s := range cfg.Schedulers {
				x := g[key{wl, l, s}]
				if x == nil {
					continue
				}
				vsDef, vsTuned, bogo := "", "", num(x.Bogo.Median)
				if def != nil && s != EEVDF {
					vsDef = lowerBy(def.Over.Median, x.Over.Median)
					bogo += " (" + ratio(x.Bogo.Median, def.Bogo.Median) + ")"
				}
				if tuned != nil && s != EEVDFTuned {
					vsTuned = lowerBy(tuned.Over.Median, x.Over.Median)
				}
				p50f, p90f := "–", "–"
				if floor != nil {
					p50f, p90f = ratio(x.P50.Median, floor.P50.Median), ratio(x.P90.Median, floor.P90.Median)
				}
				fail := ""
				if x.Failed > 0 {
					fail = fmt.Sprintf(" (%d failed)", x.Failed)
				}
				kv := kernelCol(x)
				w("| %d%% | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %s |\n", l, s, fail,
					fmtMs(x.P50), fmtMs(x.P90), fmtMs(x.P99), pct(x.Over), vsDef, vsTuned, p50f, p90f,
					num(x.BatchCores.Median), bogo, num(x.Spawns.Median), hostCol(x), x.Starved, x.N, kv)
			}
		}
		w("\n")
		w("%s", ratioTable(cfg, g, wl))
		if wl == Wrk {
			w("%s", wrkSection(cfg, g))
		}
	}
	ps := pipeSummary(r)
	if len(ps) > 0 {
		w("## Overhead: pipe ping-pong\n\n")
		w("Two threads bounce a byte over two pipes (`internal/pingpong`, like `perf bench sched pipe`), %d round trips per measurement, no batch load, in the latency cgroup.\n\n", cfg.PipeRounds)
		w("| setup | round trip µs | round trips/s | throughput vs EEVDF |\n|---|---|---|---|\n")
		for _, s := range []string{EEVDF, SCXSLO} {
			p, ok := ps[s]
			if !ok {
				continue
			}
			us := Spread{Median: p.Median / 1e3, Min: p.Min / 1e3, Max: p.Max / 1e3, N: p.N}
			w("| %s | %s | %.0f | %s |\n", s, fmtMs(us), 1e9/p.Median, ratio(ps[EEVDF].Median, p.Median))
		}
		w("\n")
	}
	w("%s", peerSection(r))
	w("%s", fidelitySection(r))
	w("%s", goals(r, g, ps))
	w("%s", steadiness(r, g))
	return b.String()
}

func kernelCol(x *group) string {
	if x.KMean.N == 0 {
		return ""
	}
	return num(x.KMean.Median) + ", " + pct(x.KOver)
}

// goals checks the targets for scx-slo at 100% and 200% load.
func goals(r *Results, g map[key]*group, ps map[string]Spread) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Goals (issue 6) for scx-slo at 100%% and 200%% load\n\n")
	w("| workload | load | over ≥5x lower than default | over ≤ tuned | p50 ≤ 1.2x floor | p90 ≤ 1.5x floor | batch ≥ 95%% of default |\n|---|---|---|---|---|---|---|\n")
	mark := func(ok bool, detail string) string {
		if ok {
			return "met (" + detail + ")"
		}
		return "**not met** (" + detail + ")"
	}
	for _, wl := range r.Config.Workloads {
		floor := g[key{wl, 0, EEVDF}]
		for _, l := range r.Config.Loads {
			if l < 100 {
				continue
			}
			s, def, tuned := g[key{wl, l, SCXSLO}], g[key{wl, l, EEVDF}], g[key{wl, l, EEVDFTuned}]
			if s == nil || def == nil || tuned == nil || floor == nil {
				continue
			}
			so, do, to := s.Over.Median, def.Over.Median, tuned.Over.Median
			w("| %s | %d%% | %s | %s | %s | %s | %s |\n", wl, l,
				mark(so*5 <= do && do > 0, fmt.Sprintf("%.1f%% vs %.1f%%", 100*so, 100*do)),
				mark(so <= to, fmt.Sprintf("%.1f%% vs %.1f%%", 100*so, 100*to)),
				mark(s.P50.Median <= 1.2*floor.P50.Median, ratio(s.P50.Median, floor.P50.Median)+"x"),
				mark(s.P90.Median <= 1.5*floor.P90.Median, ratio(s.P90.Median, floor.P90.Median)+"x"),
				mark(s.Bogo.Median >= 0.95*def.Bogo.Median, ratio(s.Bogo.Median, def.Bogo.Median)))
		}
	}
	if e, s := ps[EEVDF], ps[SCXSLO]; e.N > 0 && s.N > 0 {
		th := e.Median / s.Median
		w("\nPipe throughput with scx-slo: %.2f of EEVDF's (goal ≥ 0.90): %s.\n", th, map[bool]string{true: "met", false: "**not met**"}[th >= 0.9])
	}
	w("\n")
	return b.String()
}

// steadiness compares how much each figure moved between repetitions:
// the median over groups of (max-min)/median, over the same groups for
// every figure: those at least 5% over budget (below that a fraction over
// budget is a handful of samples and its relative spread says nothing).
func steadiness(r *Results, g map[key]*group) string {
	if r.Config.Reps < 2 {
		return ""
	}
	var p50, p90, p99, over []float64
	starved, cells, groups := 0, 0, 0
	rel := func(s Spread) float64 {
		if s.N < 2 || s.Median == 0 {
			return math.NaN()
		}
		return (s.Max - s.Min) / s.Median
	}
	for _, x := range g {
		starved += x.Starved
		cells += x.N
		if !(x.Over.Median >= 0.05) {
			continue
		}
		groups++
		p50, p90, p99, over = append(p50, rel(x.P50)), append(p90, rel(x.P90)), append(p99, rel(x.P99)), append(over, rel(x.Over))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## How steady the figures were\n\n")
	fmt.Fprintf(&b, "Spread between repetitions, (max − min) / median, median over the %d (workload, load, setup) groups with at least 5%% over budget: p50 %s, p90 %s, p99 %s, fraction over budget %s. ",
		groups, num(spreadOf(p50).Median), num(spreadOf(p90).Median), num(spreadOf(p99).Median), num(spreadOf(over).Median))
	fmt.Fprintf(&b, "%d of %d cells had qemu starved by other host load.\n\n", starved, cells)
	fmt.Fprintf(&b, "Under TCG on a shared host, compare setups only within this boot and by medians and fractions over budget; p99 moves with the host's load (see the host column) and needs real hardware to mean much. Batch and pipe figures are emulated instruction rates: their ratios between setups are meaningful, their absolute values are not. See bench/README.md.\n")
	return b.String()
}

func latencyPlot(f *os.File, r *Results) error {
	g := aggregate(r)
	var panels []panel
	xs := make([]string, len(r.Config.Loads))
	for i, l := range r.Config.Loads {
		xs[i] = loadLabel(l)
	}
	figure := []struct {
		name string
		get  func(*group) Spread
		logY bool
		unit string
	}{
		{"p50", func(x *group) Spread { return x.P50 }, true, "ms"},
		{"p99", func(x *group) Spread { return x.P99 }, true, "ms"},
		{"over budget", func(x *group) Spread { return x.Over }, false, "fraction"},
	}
	for _, fig := range figure {
		for _, wl := range r.Config.Workloads {
			p := panel{title: fmt.Sprintf("%s: %s", wl, fig.name), xlabel: "batch load (% of vCPUs)", ylabel: fig.name + " " + fig.unit, xs: xs, logY: fig.logY, refName: "floor (no batch)"}
			if floor := g[key{wl, 0, EEVDF}]; floor != nil {
				p.ref = fig.get(floor).Median
				if fig.name == "over budget" && p.ref == 0 {
					p.ref = 1e-9 // keep the legend entry; a zero line sits on the axis
				}
			}
			for _, s := range r.Config.Schedulers {
				p.series = append(p.series, seriesOf(s, r.Config.Loads, func(l int) (Spread, bool) {
					x := g[key{wl, l, s}]
					if x == nil {
						return Spread{}, false
					}
					return fig.get(x), true
				}))
			}
			panels = append(panels, p)
		}
	}
	title := fmt.Sprintf("Latency workloads vs batch load, %d vCPUs under qemu TCG, median and range over %d repetitions", r.VCPUs, r.Config.Reps)
	return renderPNG(f, title, len(r.Config.Workloads), panels)
}

func throughputPlot(f *os.File, r *Results) error {
	g := aggregate(r)
	xs := make([]string, len(r.Config.Loads))
	for i, l := range r.Config.Loads {
		xs[i] = loadLabel(l)
	}
	figure := []struct {
		title, ylabel string
		get           func(*group) Spread
	}{
		{"stress-ng bogo-ops/s", "bogo-ops/s", func(x *group) Spread { return x.Bogo }},
		{"batch cgroup CPU", "cores", func(x *group) Spread { return x.BatchCores }},
		{"fork/exec job", "spawns/s", func(x *group) Spread { return x.Spawns }},
	}
	var panels []panel
	for _, fig := range figure {
		p := panel{title: fig.title + " (probe cells)", xlabel: "batch load (% of vCPUs)", ylabel: fig.ylabel, xs: xs}
		for _, s := range r.Config.Schedulers {
			p.series = append(p.series, seriesOf(s, r.Config.Loads, func(l int) (Spread, bool) {
				// Pool every workload's cells: the batch does not care which
				// latency workload ran beside it.
				var v []float64
				for _, wl := range r.Config.Workloads {
					if x := g[key{wl, l, s}]; x != nil && !math.IsNaN(fig.get(x).Median) {
						v = append(v, fig.get(x).Median)
					}
				}
				if len(v) == 0 {
					return Spread{}, false
				}
				return spreadOf(v), true
			}))
		}
		p.title = fig.title
		panels = append(panels, p)
	}
	title := "Batch throughput vs load (median over workloads and repetitions; bars: range of per-workload medians)"
	return renderPNG(f, title, len(panels), panels)
}

func seriesOf(sched string, loads []int, get func(int) (Spread, bool)) series {
	s := series{name: sched, color: palette[sched]}
	for _, l := range loads {
		v, ok := get(l)
		if !ok {
			v = Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
		}
		s.y, s.lo, s.hi = append(s.y, v.Median), append(s.lo, v.Min), append(s.hi, v.Max)
	}
	return s
}

// ResultsDir is bench/results/<UTC date> under root.
func ResultsDir(root string, now time.Time) string {
	return filepath.Join(root, "results", now.UTC().Format("2006-01-02"))
}

func hostCol(x *group) string {
	return num(x.HostBusy.Median) + " / " + num(x.Qemu.Median) + " (load " + num(x.Load1.Median) + ")"
}

// peerSection states how the peers were built, how they slice time, and
// why any peer cell failed.
func peerSection(r *Results) string {
	if !r.Config.usesPeers() {
		return ""
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Peer schedulers\n\n")
	if p := r.Peers; p != nil && p.Build != nil {
		i := p.Build
		w("Built by `scx-slo-lab peers` (internal/testbed/peers) from Debian's `%s` %s (%s), the lab kernel's own version, with vmlinux.h from the BTF of %s; recipe sha256 `%s`, cached in `%s`:\n\n", i.Source, i.Version, i.Suite, i.Kernel, i.RecipeSHA256[:12], p.Dir)
		w("```\n%s```\n\n", i.Recipe)
		w("| peer | ops | slicing (from its source) |\n|---|---|---|\n")
		for _, pe := range i.Peers {
			w("| %s | %s | %s |\n", pe.Name, pe.Ops, pe.Slice)
		}
		w("\nSetups: `%s` runs `scx_simple`; `%s` runs `scx_flatcg`; `%s` runs `scx_flatcg -s 1` (1 µs, the shortest cgroup slice `-s` keeps: the CPU passes to the next cgroup at every dispatch; task slices stay %s). Neither peer preempts on wakeup, so a latency task that wakes behind a batch task on a busy CPU waits up to a whole task slice.\n\n",
			SCXSimple, SCXFlatCG, SCXFlatCGShort, time.Duration(i.SliceDflNs))
	} else if p != nil {
		w("**No peer build:** %s\n\n", p.Error)
	}
	seen := map[string]bool{}
	for _, c := range r.Cells {
		if IsPeer(c.Scheduler) && c.Err != "" && !seen[c.Scheduler+c.Err] {
			seen[c.Scheduler+c.Err] = true
			w("- `%s` cell failed (%s, %d%%): %s\n", c.Scheduler, c.Workload, c.Load, c.Err)
		}
	}
	if len(seen) > 0 {
		w("\n")
	}
	return b.String()
}

// wrkSection puts wrk's closed-loop figures next to the open-loop http
// workload's at the same load and setup.
func wrkSection(cfg Config, g map[key]*group) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("wrk next to the open-loop generator (`http`, %d req/s) at the same load and setup. wrk waits for each answer before it sends the next request on that connection, so while the server is stalled it sends nothing and the stall costs one slow request instead of every request that would have arrived meanwhile (coordinated omission): its percentiles flatter a setup that stalls, and the loss shows as fewer requests per second instead. The open-loop figures, timed from each request's scheduled send, stay the headline; wrk's requests/s say how much the server got through with the batch beside it.\n\n", cfg.HTTPRate)
	w("| load | setup | wrk req/s | wrk p50 | wrk p99 | wrk over | http p50 | http p99 | http over |\n|---|---|---|---|---|---|---|---|---|\n")
	row := func(load string, s string, x, h *group) {
		hp50, hp99, hover := "", "", ""
		if h != nil {
			hp50, hp99, hover = fmtMs(h.P50), fmtMs(h.P99), pct(h.Over)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", load, s, fmtMs(x.RPS), fmtMs(x.P50), fmtMs(x.P99), pct(x.Over), hp50, hp99, hover)
	}
	if x := g[key{Wrk, 0, EEVDF}]; x != nil {
		row("0", "floor", x, g[key{HTTP, 0, EEVDF}])
	}
	for _, l := range cfg.Loads {
		for _, s := range cfg.Schedulers {
			if x := g[key{Wrk, l, s}]; x != nil {
				row(fmt.Sprintf("%d%%", l), s, x, g[key{HTTP, l, s}])
			}
		}
	}
	w("\n")
	return b.String()
}

// ratioTable sets every setup's fraction over budget against every other
// setup's at the same load: row ÷ column, so under 1 means the row's
// setup missed less often.
func ratioTable(cfg Config, g map[key]*group, wl string) string {
	if len(cfg.Schedulers) < 2 {
		return ""
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("Fraction over budget of the row's setup ÷ the column's, same load (medians; under 1: the row missed less often):\n\n| load | setup |")
	for _, s := range cfg.Schedulers {
		w(" %s |", s)
	}
	w("\n|---|---|%s\n", strings.Repeat("---|", len(cfg.Schedulers)))
	for _, l := range cfg.Loads {
		for _, row := range cfg.Schedulers {
			x := g[key{wl, l, row}]
			if x == nil {
				continue
			}
			w("| %d%% | %s |", l, row)
			for _, col := range cfg.Schedulers {
				y := g[key{wl, l, col}]
				switch {
				case col == row:
					w(" 1 |")
				case y == nil:
					w(" – |")
				default:
					w(" %s |", ratio(x.Over.Median, y.Over.Median))
				}
			}
			w("\n")
		}
	}
	w("\n")
	return b.String()
}
