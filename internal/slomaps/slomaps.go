// Package slomaps reads and writes the maps every scx-slo BPF program
// shares (bpf/include/slo_account.h): cgroup_stats, slos and overload, and
// the per-CPU slots beside cgroup_stats (wait_slots.h, slots.go). The
// observe-mode tracer and the scheduler both carry them with identical
// layouts, so the slo collector has one code path for both modes.
package slomaps

import (
	"errors"
	"fmt"
	"math"

	"github.com/cilium/ebpf"
)

// MaxSlots is SLO_MAX_SLOTS in slo_account.h, the entries of the slos and
// overload maps (a test checks both objects).
const MaxSlots = 4096

// Stats is struct cg_stats, one cgroup's value in cgroup_stats.
type Stats = accountCgStats

// MeanWaitNs is the mean recorded wait; 0 with none.
func (s *Stats) MeanWaitNs() uint64 { return s.SumNs / max(s.Count, 1) }

// MissRatio is the share of judged wakeups that missed the budget; 0 with none.
func (s *Stats) MissRatio() float64 { return float64(s.Misses) / float64(max(s.Deadlines, 1)) }

// Entry is struct slo_entry, one cgroup's value in slos.
type Entry = accountSloEntry

// NewEntry builds the kernel's view of one SLO: the allowed miss fraction
// is kept in the same 32-bit fixed point as the in-kernel EWMA.
func NewEntry(budgetNs uint64, target float64, importance int, slot uint32) Entry {
	return Entry{
		BudgetNs:    budgetNs,
		AllowedMiss: uint64(math.Round((1 - target) * (1 << 32))),
		Slot:        slot,
		Importance:  uint32(importance),
	}
}

// Maps holds one program's three shared maps.
type Maps struct {
	Stats, SLOs, Overload *ebpf.Map
	// SLOsGeneration, if set, is bumped after every change to SLOs: the
	// tracer caches "this cgroup has no SLO" per task until it moves.
	SLOsGeneration *ebpf.Variable
	// Slots, if set, returns the counts kept apart from Stats by cgroup
	// id (the tracer's per-CPU slots: waiting tasks, histogram, count and
	// sum); ReadStats and StatsOf add them to each cgroup's stats.
	Slots func() (map[uint64]*Stats, error)
}

// addSlots adds the counts Slots keeps apart to the stats read. It runs
// after the stats are read: slot counts never move into the stats, so a
// cgroup's totals only grow from one reading to the next.
func (m Maps) addSlots(stats map[uint64]*Stats) error {
	if m.Slots == nil {
		return nil
	}
	slots, err := m.Slots()
	if err != nil {
		return err
	}
	for id, s := range stats {
		if o := slots[id]; o != nil {
			s.Waiting += o.Waiting
			s.Count += o.Count
			s.SumNs += o.SumNs
			for i, n := range o.Hist {
				s.Hist[i] += n
			}
		}
	}
	return nil
}

// ReadStats returns every cgroup's stats, keyed by cgroup id. It reads in
// batches (one syscall per 256 cgroups) where the kernel allows.
func (m Maps) ReadStats() (map[uint64]*Stats, error) {
	out := make(map[uint64]*Stats)
	keys := make([]uint64, 256)
	vals := make([]Stats, 256)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.Stats.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			v := vals[i]
			out[keys[i]] = &v
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, m.addSlots(out) // end of map
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading cgroup_stats: %w", err)
		}
	}
	var id uint64
	var s Stats
	it := m.Stats.Iterate()
	for it.Next(&id, &s) {
		c := s
		out[id] = &c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading cgroup_stats: %w", err)
	}
	return out, m.addSlots(out)
}

// StatIDs lists the cgroup ids in cgroup_stats without reading values.
func (m Maps) StatIDs() ([]uint64, error) {
	var ids []uint64
	var key, next uint64
	var err error
	for err = m.Stats.NextKey(nil, &next); err == nil; err = m.Stats.NextKey(key, &next) {
		ids = append(ids, next)
		key = next
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("listing cgroup_stats: %w", err)
	}
	return ids, nil
}

// StatsOf reads one cgroup's stats; ok is false if it has none.
func (m Maps) StatsOf(id uint64) (s Stats, ok bool, err error) {
	err = m.Stats.Lookup(id, &s)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return s, false, nil
	}
	if err == nil {
		err = m.addSlots(map[uint64]*Stats{id: &s})
	}
	return s, err == nil, err
}

// Overloaded reads one slot's overload bit.
func (m Maps) Overloaded(slot uint32) (bool, error) {
	var v uint32
	if err := m.Overload.Lookup(slot, &v); err != nil {
		return false, fmt.Errorf("reading overload[%d]: %w", slot, err)
	}
	return v != 0, nil
}

// SetOverloaded writes one slot's bit (userspace clears idle cgroups and
// new slots).
func (m Maps) SetOverloaded(slot uint32, on bool) error {
	var v uint32
	if on {
		v = 1
	}
	return m.Overload.Put(slot, v)
}

// SyncSLOs makes the slos map equal to want: stale cgroups are deleted,
// new and changed ones written. A new or moved slot starts not overloaded.
func (m Maps) SyncSLOs(want map[uint64]Entry) error {
	var errs []error
	var id uint64
	var cur Entry
	have := make(map[uint64]Entry)
	it := m.SLOs.Iterate()
	for it.Next(&id, &cur) {
		have[id] = cur
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading slos: %w", err)
	}
	changed := false
	for id := range have {
		if _, ok := want[id]; !ok {
			changed = true
			if err := m.SLOs.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("deleting slo of cgroup %d: %w", id, err))
			}
		}
	}
	for id, e := range want {
		old, ok := have[id]
		if ok && old == e {
			continue
		}
		changed = true
		if !ok || old.Slot != e.Slot {
			if err := m.SetOverloaded(e.Slot, false); err != nil {
				errs = append(errs, err)
			}
		}
		if err := m.SLOs.Put(id, e); err != nil {
			errs = append(errs, fmt.Errorf("writing slo of cgroup %d: %w", id, err))
		}
	}
	if changed && m.SLOsGeneration != nil {
		var g uint64
		if err := m.SLOsGeneration.Get(&g); err != nil {
			errs = append(errs, fmt.Errorf("reading slos_generation: %w", err))
		} else if err := m.SLOsGeneration.Set(g + 1); err != nil {
			errs = append(errs, fmt.Errorf("bumping slos_generation: %w", err))
		}
	}
	return errors.Join(errs...)
}

// DeleteStats removes the stats of cgroups that no longer exist.
func (m Maps) DeleteStats(ids []uint64) error {
	var errs []error
	for _, id := range ids {
		if err := m.Stats.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("deleting stats of cgroup %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
