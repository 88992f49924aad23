package runqueue

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/pingpong"
)

func loadForTest(tb testing.TB) *Tracer {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to load BPF")
	}
	h, err := cgroupfs.Detect("/sys/fs/cgroup", "auto")
	if err != nil {
		tb.Skip(err)
	}
	tr, err := Load(Options{Hierarchy: h})
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

// costPairs is how many rounds of interleaved measurements each case takes.
const costPairs = 15

// BenchmarkTracerCost measures what the observe-mode tracer costs the
// scheduler path, all in one run so the figures share one machine state:
//
//   - pipe-ratio: pipe ping-pong throughput with the tracer attached over
//     without it, the median of costPairs rounds (each round measures
//     without and every attached setup in a rotating order, so a drift in
//     machine load favours none);
//   - cpu-ratio: the same for the ping-pong threads' CPU time per round
//     trip, which leaves out waits behind other processes and so is the
//     steadier figure on a shared host;
//   - floor-*-ratio: the same with programs that do nothing attached to
//     the tracepoints the tracer uses (sched_switch, sched_wakeup,
//     sched_wakeup_new): the kernel's cost of running any BPF program
//     there, which no tracer of these events can avoid;
//   - clock-*-ratio: programs that only read bpf_ktime_get_ns, the clock
//     both ends of a wait are read from: the floor plus one clock read
//     per event;
//   - <program>-ns/run: each program's mean run time from bpf_stats
//     (kernel.bpf_stats_enabled), taken in a separate pass because the
//     statistics cost time themselves.
//
// "saturated" runs one ping-pong pair pinned to each CPU, so every CPU
// always has a task to switch to and every switch is local; "single"
// runs one unpinned pair, which leaves CPUs idle between round trips. b.N is the round trips per measurement:
//
//	sudo go test -run '^$' -bench TracerCost -benchtime 20000x ./bpf/runqueue
func BenchmarkTracerCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to load BPF")
	}
	b.Run("saturated", func(b *testing.B) { benchTracerCost(b, 0) })
	b.Run("single", func(b *testing.B) { benchTracerCost(b, 1) })
}

// costSetup is one set of programs whose cost BenchmarkTracerCost measures.
type costSetup struct {
	name  string // metric prefix; "" for the tracer itself
	progs []*ebpf.Program
}

// benchTracerCost measures with one ping-pong pair, or with pairs 0 one
// pinned pair per CPU.
func benchTracerCost(b *testing.B, pairs int) {
	run := func() pingpong.Result {
		measure := pingpong.MeasurePinned
		if pairs > 0 {
			measure = func(n int) (pingpong.Result, error) { return pingpong.Measure(pairs, n) }
		}
		r, err := measure(b.N)
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	// Loaded once; each measurement with it attaches its programs and
	// detaches them after, so rounds are short and close together.
	tr := loadForTest(b)
	defer tr.Close()
	setAttached(b, tr, false)
	setups := []costSetup{
		{name: "floor", progs: stubPrograms(b, false)},
		{name: "clock", progs: stubPrograms(b, true)},
		{progs: slices.Collect(maps.Values(tr.Programs()))},
	}
	measure := func(i int) pingpong.Result {
		if i < 0 {
			return run()
		}
		links := attachAll(b, setups[i].progs)
		defer closeAll(b, links)
		return run()
	}
	wallRatios := make([][]float64, len(setups))
	cpuRatios := make([][]float64, len(setups))
	var without, with []float64
	for round := 0; round < costPairs; round++ {
		got := make(map[int]pingpong.Result)
		for j := 0; j <= len(setups); j++ {
			i := (round+j)%(len(setups)+1) - 1 // -1: nothing attached
			got[i] = measure(i)
		}
		off := got[-1]
		for i := range setups {
			wallRatios[i] = append(wallRatios[i], float64(off.RoundTrip)/float64(got[i].RoundTrip))
			cpuRatios[i] = append(cpuRatios[i], float64(off.CPU)/float64(got[i].CPU))
		}
		without = append(without, float64(off.RoundTrip))
		with = append(with, float64(got[len(setups)-1].RoundTrip))
	}
	for i, s := range setups {
		prefix := ""
		if s.name != "" {
			prefix = s.name + "-"
		}
		b.Logf("%d pairs (0: one pinned per CPU), %s: wall ratios %.3f, CPU ratios %.3f", pairs, cmp.Or(s.name, "tracer"), wallRatios[i], cpuRatios[i])
		b.ReportMetric(median(wallRatios[i]), prefix+"pipe-ratio")
		b.ReportMetric(median(cpuRatios[i]), prefix+"cpu-ratio")
	}
	b.ReportMetric(median(without), "roundtrip-ns-without")
	b.ReportMetric(median(with), "roundtrip-ns-with")

	setAttached(b, tr, true)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	perRun := map[string][]float64{}
	for i := 0; i < costPairs; i++ {
		before := programStats(b, tr.Programs())
		run()
		after := programStats(b, tr.Programs())
		for _, name := range []string{"sched_switch", "sched_wakeup"} {
			perRun[name] = append(perRun[name], nsPerRun(b, name, before[name], after[name]))
		}
	}
	for name, v := range perRun {
		b.Logf("%s ns/run of %d ping-pongs: %.1f", name, costPairs, v)
		b.ReportMetric(median(v), name+"-ns/run")
	}
}

// stubPrograms loads programs for the tracepoints the tracer's wakeup
// and switch programs use that do nothing but, if clock, read
// bpf_ktime_get_ns once. Built from instructions, so there is no second
// object to keep in step with the tracer's.
func stubPrograms(b *testing.B, clock bool) []*ebpf.Program {
	var insns asm.Instructions
	if clock {
		insns = append(insns, asm.FnKtimeGetNs.Call())
	}
	insns = append(insns, asm.Mov.Imm(asm.R0, 0), asm.Return())
	var progs []*ebpf.Program
	for _, tp := range []string{"sched_switch", "sched_wakeup", "sched_wakeup_new"} {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "stub", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tp,
			Instructions: insns, License: "GPL",
		})
		if err != nil {
			b.Fatalf("loading a stub program for %s: %v", tp, err)
		}
		b.Cleanup(func() { p.Close() })
		progs = append(progs, p)
	}
	return progs
}

func attachAll(b *testing.B, progs []*ebpf.Program) []link.Link {
	var links []link.Link
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			b.Fatal(err)
		}
		links = append(links, l)
	}
	return links
}

func closeAll(b *testing.B, links []link.Link) {
	for _, l := range links {
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// nsPerRun is a program's mean run time between two readings of its stats.
func nsPerRun(b *testing.B, name string, before, after *ebpf.ProgramStats) float64 {
	runs := after.RunCount - before.RunCount
	if runs == 0 {
		b.Fatalf("%s never ran during the ping-pong", name)
	}
	return float64((after.Runtime - before.Runtime).Nanoseconds()) / float64(runs)
}

// BenchmarkTracerObjects compares builds of the tracer: the objects named
// in SCX_SLO_TRACER_OBJECTS (comma-separated .o paths, e.g. one from
// `git show <commit>:bpf/runqueue/tracer_bpfel.o`) are loaded side by
// side and attached in turn for objectRounds saturated ping-pongs of b.N
// round trips each (the order alternating), with bpf_stats on throughout.
// It reports each object's median sched_switch and sched_wakeup ns/run
// and logs quartiles: on a shared host, where one reading swings by a
// third, only many short interleaved readings separate two builds.
//
//	SCX_SLO_TRACER_OBJECTS=old.o,bpf/runqueue/tracer_bpfel.o \
//	  go test -run '^$' -bench TracerObjects -benchtime 5000x -v ./bpf/runqueue
func BenchmarkTracerObjects(b *testing.B) {
	paths := strings.Split(os.Getenv("SCX_SLO_TRACER_OBJECTS"), ",")
	if os.Getenv("SCX_SLO_TRACER_OBJECTS") == "" || os.Geteuid() != 0 {
		b.Skip("needs root and SCX_SLO_TRACER_OBJECTS")
	}
	h, err := cgroupfs.Detect("/sys/fs/cgroup", "auto")
	if err != nil {
		b.Fatal(err)
	}
	var objs []*ebpf.Collection
	for _, p := range paths {
		c, err := loadObject(p, h)
		if err != nil {
			b.Fatalf("%s: %v", p, err)
		}
		defer c.Close()
		objs = append(objs, c)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	progs := map[string]string{"sched_switch": "on_switch", "sched_wakeup": "on_wakeup"}
	perRun := make([]map[string][]float64, len(objs))
	for r := 0; r < objectRounds; r++ {
		for j := range objs {
			i := j
			if r%2 == 1 {
				i = len(objs) - 1 - j
			}
			named := map[string]*ebpf.Program{}
			for name, prog := range progs {
				named[name] = objs[i].Programs[prog]
			}
			var links []link.Link
			for _, p := range objs[i].Programs {
				l, err := link.AttachTracing(link.TracingOptions{Program: p})
				if err != nil {
					b.Fatal(err)
				}
				links = append(links, l)
			}
			before := programStats(b, named)
			if _, err := pingpong.MeasurePinned(b.N); err != nil {
				b.Fatal(err)
			}
			after := programStats(b, named)
			for _, l := range links {
				l.Close()
			}
			if perRun[i] == nil {
				perRun[i] = map[string][]float64{}
			}
			for name := range progs {
				perRun[i][name] = append(perRun[i][name], nsPerRun(b, name, before[name], after[name]))
			}
		}
	}
	for i, p := range paths {
		for _, name := range []string{"sched_switch", "sched_wakeup"} {
			v := slices.Clone(perRun[i][name])
			slices.Sort(v)
			b.ReportMetric(median(v), fmt.Sprintf("obj%d-%s-ns/run", i, name))
			if b.N == 1 {
				continue // the framework's probe run: too short to read
			}
			b.Logf("%s %s ns/run: median %.1f, quartiles %.1f-%.1f, range %.1f-%.1f",
				p, name, median(v), v[len(v)/4], v[3*len(v)/4], v[0], v[len(v)-1])
		}
	}
}

// objectRounds is how many times BenchmarkTracerObjects measures each object.
const objectRounds = 40

// sizeAnySlots sizes the slot maps of a tracer object of any build: with
// wait_slots.h (slot_nr_cpus), with the slots inline (nr_cpus, before
// they were shared with the scheduler), or none (older still).
func sizeAnySlots(spec *ebpf.CollectionSpec) error {
	if _, ok := spec.Maps[tracerMapHistSlots]; !ok {
		return nil
	}
	if _, ok := spec.Variables["slot_nr_cpus"]; ok {
		return slomaps.SizeSlots(spec)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	if err := spec.Variables["nr_cpus"].Set(uint32(cpus)); err != nil {
		return err
	}
	spec.Maps[tracerMapWaitingSlots].MaxEntries *= uint32(cpus)
	spec.Maps[tracerMapHistSlots].MaxEntries *= uint32(cpus)
	return nil
}

// loadObject loads a tracer object from a file, set up as Load does
// where the object has the same variables and maps (older builds may not).
func loadObject(path string, h cgroupfs.Hierarchy) (*ebpf.Collection, error) {
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return nil, err
	}
	if err := sizeAnySlots(spec); err != nil {
		return nil, err
	}
	if err := spec.Variables[tracerVarUseCgroup2].Set(h.V2); err != nil {
		return nil, err
	}
	if err := spec.Variables[tracerVarV1HierarchyId].Set(int32(h.ID)); err != nil {
		return nil, err
	}
	return ebpf.NewCollection(spec)
}

// setAttached attaches or detaches the tracer's programs.
func setAttached(b *testing.B, tr *Tracer, on bool) {
	for _, l := range tr.links {
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
	tr.links = nil
	if !on {
		return
	}
	for _, p := range tr.Programs() {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			b.Fatal(err)
		}
		tr.links = append(tr.links, l)
	}
}

func programStats(b *testing.B, progs map[string]*ebpf.Program) map[string]*ebpf.ProgramStats {
	out := map[string]*ebpf.ProgramStats{}
	for name, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		out[name] = s
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
