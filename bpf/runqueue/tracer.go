package runqueue

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// Options configures the tracer.
type Options struct {
	Hierarchy cgroupfs.Hierarchy
	// MaxCgroups bounds the per-cgroup stats map; cgroups beyond it are
	// counted as dropped events.
	MaxCgroups uint32
	// MaxPreemptPairs bounds the (victim, by) preemption map.
	MaxPreemptPairs uint32
}

// Tracer is the loaded and attached observe-mode tracer.
type Tracer struct {
	objs  tracerObjects
	links []link.Link
}

// PreemptKey names who was preempted by whom (cgroup ids).
type PreemptKey = tracerPreemptKey

// DropReasons names the drops array's slots, in enum drop_reason order.
var DropReasons = []string{"map_full", "no_storage"}

// Load loads the tracer and attaches it to the scheduler tracepoints.
func Load(opts Options) (*Tracer, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising memlock limit: %w", err)
	}
	spec, err := loadTracer()
	if err != nil {
		return nil, err
	}
	if opts.MaxCgroups > 0 {
		spec.Maps[tracerMapCgroupStats].MaxEntries = opts.MaxCgroups
	}
	if opts.MaxPreemptPairs > 0 {
		spec.Maps[tracerMapPreempts].MaxEntries = opts.MaxPreemptPairs
	}
	if err := slomaps.SizeSlots(spec); err != nil {
		return nil, err
	}
	if err := spec.Variables[tracerVarUseCgroup2].Set(opts.Hierarchy.V2); err != nil {
		return nil, err
	}
	if err := spec.Variables[tracerVarV1HierarchyId].Set(int32(opts.Hierarchy.ID)); err != nil {
		return nil, err
	}
	t := &Tracer{}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading run-queue tracer: %+v", ve)
		}
		return nil, fmt.Errorf("loading run-queue tracer: %w", err)
	}
	for _, p := range []*ebpf.Program{t.objs.OnWakeup, t.objs.OnWakeupNew, t.objs.OnSwitch, t.objs.OnCgroupMkdir, t.objs.OnCgroupRmdir} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attaching %s: %w", p, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

// Close detaches and frees everything.
func (t *Tracer) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}

// Maps returns the maps shared with the scheduler's layout.
func (t *Tracer) Maps() slomaps.Maps {
	return slomaps.Maps{Stats: t.objs.CgroupStats, SLOs: t.objs.Slos, Overload: t.objs.Overload,
		SLOsGeneration: t.objs.SlosGeneration, Slots: slomaps.SlotReader(t.objs.WaitingSlots, t.objs.HistSlots)}
}

// JudgeSLOs switches the tracer's deadline accounting on or off; off while
// the scheduler, which judges deadlines itself, is attached.
func (t *Tracer) JudgeSLOs(on bool) error {
	return t.objs.JudgeSlos.Set(on)
}

// CgroupGeneration counts cgroup creations and removals in the hierarchy
// since the tracer loaded.
func (t *Tracer) CgroupGeneration() (uint64, error) {
	var g uint64
	err := t.objs.CgroupGeneration.Get(&g)
	return g, err
}

// Programs returns the attached programs, for run-time statistics.
func (t *Tracer) Programs() map[string]*ebpf.Program {
	return map[string]*ebpf.Program{
		"sched_wakeup":     t.objs.OnWakeup,
		"sched_wakeup_new": t.objs.OnWakeupNew,
		"sched_switch":     t.objs.OnSwitch,
		"cgroup_mkdir":     t.objs.OnCgroupMkdir,
		"cgroup_rmdir":     t.objs.OnCgroupRmdir,
	}
}

// Preemptions returns the preemption counts by (victim, by) pair.
func (t *Tracer) Preemptions() (map[PreemptKey]uint64, error) {
	out := make(map[PreemptKey]uint64)
	var k PreemptKey
	var v uint64
	it := t.objs.Preempts.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading preempts: %w", err)
	}
	return out, nil
}

// DeletePreemptions removes pairs that name a cgroup for which gone is true.
func (t *Tracer) DeletePreemptions(gone func(id uint64) bool) error {
	pairs, err := t.Preemptions()
	if err != nil {
		return err
	}
	var errs []error
	for k := range pairs {
		if gone(k.Victim) || gone(k.By) {
			if err := t.objs.Preempts.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Drops sums the per-CPU drop counters by reason.
func (t *Tracer) Drops() (map[string]uint64, error) {
	out := make(map[string]uint64, len(DropReasons))
	for i, name := range DropReasons {
		var perCPU []uint64
		if err := t.objs.Drops.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("reading drops: %w", err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

// Spec returns the tracer's collection spec, for tests that inspect it.
func Spec() (*ebpf.CollectionSpec, error) { return loadTracer() }
