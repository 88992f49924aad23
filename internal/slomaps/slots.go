package slomaps

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// WaitingSlot is struct waiting_slot (bpf/include/wait_slots.h): part of
// one cgroup's waiting count, kept per CPU.
type WaitingSlot = accountWaitingSlot

// HistSlot is struct hist_slot: one cgroup's waits that ended on one CPU.
type HistSlot = accountHistSlot

// Names wait_slots.h gives its maps and variables in every program that
// includes it.
const (
	waitingSlotsMap = "waiting_slots"
	histSlotsMap    = "hist_slots"
	slotNrCPUsVar   = "slot_nr_cpus"
)

// SizeSlots gives every possible CPU its waiting and histogram slots in
// spec, a program that includes wait_slots.h, before it is loaded.
func SizeSlots(spec *ebpf.CollectionSpec) error {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("counting possible CPUs: %w", err)
	}
	v, ok := spec.Variables[slotNrCPUsVar]
	if !ok {
		return fmt.Errorf("program has no %s: does it include wait_slots.h?", slotNrCPUsVar)
	}
	if err := v.Set(uint32(cpus)); err != nil {
		return fmt.Errorf("setting %s: %w", slotNrCPUsVar, err)
	}
	for m, perCPUVar := range map[string]string{waitingSlotsMap: "wait_slots_per_cpu", histSlotsMap: "hist_slots_per_cpu"} {
		var perCPU uint32
		pv, ok := spec.Variables[perCPUVar]
		if !ok {
			return fmt.Errorf("program has no %s", perCPUVar)
		}
		if err := pv.Get(&perCPU); err != nil {
			return fmt.Errorf("reading %s: %w", perCPUVar, err)
		}
		ms, ok := spec.Maps[m]
		if !ok {
			return fmt.Errorf("program has no map %s", m)
		}
		ms.MaxEntries = uint32(cpus) * perCPU
	}
	return nil
}

// SlotReader returns a Maps.Slots for a program's waiting_slots and
// hist_slots: what they hold, summed by cgroup id.
func SlotReader(waiting, hist *ebpf.Map) func() (map[uint64]*Stats, error) {
	return func() (map[uint64]*Stats, error) {
		out := make(map[uint64]*Stats)
		of := func(id uint64) *Stats {
			s := out[id]
			if s == nil {
				s = &Stats{}
				out[id] = s
			}
			return s
		}
		err := ForEach(waiting, func(v *WaitingSlot) {
			if v.Cgid != 0 && v.Waiting != 0 {
				of(v.Cgid).Waiting += v.Waiting
			}
		})
		if err != nil {
			return nil, fmt.Errorf("reading waiting_slots: %w", err)
		}
		err = ForEach(hist, func(v *HistSlot) {
			if v.Cgid == 0 || v.Count == 0 {
				return
			}
			s := of(v.Cgid)
			s.Count += v.Count
			s.SumNs += v.SumNs
			for i, n := range v.Hist {
				s.Hist[i] += n
			}
		})
		if err != nil {
			return nil, fmt.Errorf("reading hist_slots: %w", err)
		}
		return out, nil
	}
}

// ForEach calls each with every value of an array map, in batches.
func ForEach[V any](m *ebpf.Map, each func(*V)) error {
	keys := make([]uint32, min(int(m.MaxEntries()), 1024))
	vals := make([]V, len(keys))
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range vals[:n] {
			each(&vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // the last batch
		}
		if err != nil {
			return err
		}
	}
}
