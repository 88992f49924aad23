// Package slosync keeps the BPF side in step with the SLO config and the
// cgroup tree: it walks the hierarchy, matches every cgroup against the
// config (only cgroups it has not seen), assigns each SLO cgroup a stable
// slot in the overload array (explicitly listed cgroups first),
// writes the slos map of every loaded program, and sweeps entries of
// cgroups that no longer exist so nothing leaks.
package slosync

import (
	"errors"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/monoclock"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// Assignment is one cgroup under an SLO.
type Assignment struct {
	Cgroup cgroupfs.Cgroup
	SLO    sloconfig.SLO
	Slot   uint32
	// Pod is the pod and container the cgroup belongs to (zero outside
	// Kubernetes).
	Pod Pod
	// Source is where the SLO came from: SourceFile or the Owner's Source.
	Source string
}

// View is a consistent snapshot of the last pass.
type View struct {
	Cgroups map[uint64]cgroupfs.Cgroup
	SLOs    map[uint64]Assignment // only cgroups that have a slot
	// Pods maps the cgroups that belong to a Kubernetes pod (by the
	// matching pass, so cgroups listed by Refresh since are not in it).
	Pods map[uint64]Pod
	// WithoutSlot counts cgroups under an SLO that got no overload slot
	// (all slomaps.MaxSlots in use): they are neither judged nor enforced.
	WithoutSlot int
	Walked      time.Time
}

// Options configures a Syncer.
type Options struct {
	Hierarchy cgroupfs.Hierarchy
	// Config returns the current SLO config (nil means no SLOs).
	Config func() *sloconfig.Config
	// Targets returns the map sets to keep in step (the tracer's, and the
	// scheduler's while it is attached).
	Targets func() []slomaps.Maps
	// Sweepers delete other per-cgroup state of removed cgroups.
	Sweepers []func(gone func(id uint64) bool) error
	// IdleClear clears the overload bit of a cgroup with no judged wakeup
	// for this long: an idle cgroup can't be missing deadlines, and the
	// in-kernel estimate only moves on wakeups.
	IdleClear time.Duration
	// Generation, if set, counts cgroup creations and removals (the
	// tracer's cgroup_mkdir/rmdir hooks). Run then re-walks the tree only
	// when it moved, on a kick, or every FullInterval; other ticks only
	// clear idle overload bits.
	Generation func() (uint64, error)
	// Owners, in Kubernetes mode, says which pod each cgroup belongs to
	// and the SLO it gets from its annotations or an SLOPolicy; those win
	// over Config.
	Owners Owners
	Logger log.Logger
}

// FullInterval bounds how long Run goes without a full pass.
const FullInterval = time.Minute

// Syncer does the work; Sync is safe to call from several goroutines.
type Syncer struct {
	opts    Options
	mu      sync.Mutex
	view    View
	slots   map[uint64]uint32 // cgroup id -> slot, stable while the cgroup lives
	lastGen uint64
	matches matchCache
	// withoutSlot is the last pass's View.WithoutSlot, so that a change
	// is logged once rather than every pass.
	withoutSlot int
}

// New returns a Syncer; call Sync or Run to populate it.
func New(opts Options) *Syncer {
	if opts.Logger == nil {
		opts.Logger = log.NewNopLogger()
	}
	return &Syncer{opts: opts, slots: make(map[uint64]uint32)}
}

// View returns the last pass's snapshot.
func (s *Syncer) View() View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view
}

// Sync runs one pass: walk the tree, match the cgroups not seen before,
// hand out slots, write the maps and sweep what is gone.
func (s *Syncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cgs, err := s.walk()
	if err != nil {
		return err
	}
	view := View{Cgroups: make(map[uint64]cgroupfs.Cgroup, len(cgs)), SLOs: make(map[uint64]Assignment), Pods: make(map[uint64]Pod), Walked: time.Now()}
	for _, cg := range cgs {
		view.Cgroups[cg.ID] = cg
	}
	matched := s.matches.update(s.opts.Config(), s.opts.Owners, cgs)
	for id, m := range matched {
		if !m.pod.IsZero() {
			view.Pods[id] = m.pod
		}
		if !m.hasSLO {
			delete(matched, id)
		}
	}
	s.assignSlots(&view, cgs, matched)
	s.logSlotChange(view)
	errs := s.apply(view)
	s.view = view
	return errors.Join(errs...)
}

// Refresh re-walks the tree so that cgroups created since the last pass
// have paths in View, without matching them against the config: that
// waits for the next pass of Run, which the generation (or the full
// interval) triggers. Scrapes call this, so their cost does not depend on
// the config.
func (s *Syncer) Refresh() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cgs, err := s.opts.Hierarchy.Walk()
	if err != nil {
		return err
	}
	paths := make(map[uint64]cgroupfs.Cgroup, len(cgs))
	for _, cg := range cgs {
		paths[cg.ID] = cg
	}
	s.view.Cgroups = paths
	return nil
}

// walk lists the cgroups, noting the generation first: a change during
// the walk then triggers another pass.
func (s *Syncer) walk() ([]cgroupfs.Cgroup, error) {
	if s.opts.Generation != nil {
		if g, err := s.opts.Generation(); err == nil {
			s.lastGen = g
		}
	}
	return s.opts.Hierarchy.Walk()
}

// assignSlots puts the matched cgroups that get an overload slot into
// view. A cgroup keeps its slot while it lives and stays matched; slots of
// the others are released. Newcomers take the lowest free slots, those
// the config names explicitly first; when none is free, an explicit one
// takes a slot from a cgroup that only a glob covers. The rest go without.
func (s *Syncer) assignSlots(view *View, cgs []cgroupfs.Cgroup, matched map[uint64]match) {
	used := make([]bool, slomaps.MaxSlots)
	for id, slot := range s.slots {
		if _, ok := matched[id]; ok {
			used[slot] = true
		} else {
			delete(s.slots, id)
		}
	}
	var free []uint32
	for slot, u := range used {
		if !u {
			free = append(free, uint32(slot))
		}
	}
	var globHolders []uint64 // evicted last-walked first
	for _, explicit := range []bool{true, false} {
		for _, cg := range cgs {
			m, ok := matched[cg.ID]
			if _, has := s.slots[cg.ID]; !ok || has || m.explicit != explicit {
				continue
			}
			if len(free) == 0 && explicit {
				if globHolders == nil {
					globHolders = s.globHolders(cgs, matched)
				}
				if len(globHolders) > 0 {
					victim := globHolders[0]
					globHolders = globHolders[1:]
					free = append(free, s.slots[victim])
					delete(s.slots, victim)
				}
			}
			if len(free) == 0 {
				continue
			}
			s.slots[cg.ID], free = free[0], free[1:]
		}
	}
	for _, cg := range cgs {
		m, ok := matched[cg.ID]
		if !ok {
			continue
		}
		if slot, ok := s.slots[cg.ID]; ok {
			view.SLOs[cg.ID] = Assignment{Cgroup: cg, SLO: m.slo, Slot: slot, Pod: m.pod, Source: m.source}
		} else {
			view.WithoutSlot++
		}
	}
}

// globHolders lists the cgroups holding a slot through a glob match, last
// in walk order first: the ones an explicit SLO takes a slot from.
func (s *Syncer) globHolders(cgs []cgroupfs.Cgroup, matched map[uint64]match) []uint64 {
	out := []uint64{}
	for i := len(cgs) - 1; i >= 0; i-- {
		id := cgs[i].ID
		if _, has := s.slots[id]; has && !matched[id].explicit {
			out = append(out, id)
		}
	}
	return out
}

// logSlotChange logs when the number of SLO cgroups without a slot
// changes: once per change, not once per cgroup or pass.
func (s *Syncer) logSlotChange(view View) {
	if view.WithoutSlot == s.withoutSlot {
		return
	}
	if view.WithoutSlot == 0 {
		level.Info(s.opts.Logger).Log("msg", "every SLO cgroup has an overload slot again", "slos", len(view.SLOs))
	} else {
		level.Warn(s.opts.Logger).Log("msg", "SLO cgroups got no overload slot: they are not judged or enforced; narrow the globs of the SLO config",
			"without_slot", view.WithoutSlot, "slots", slomaps.MaxSlots)
	}
	s.withoutSlot = view.WithoutSlot
}

// apply writes the view's SLOs into every target's slos map and deletes
// state of cgroups that are gone.
func (s *Syncer) apply(view View) []error {
	want := make(map[uint64]slomaps.Entry, len(view.SLOs))
	for id, a := range view.SLOs {
		want[id] = slomaps.NewEntry(uint64(a.SLO.LatencyBudget.Nanoseconds()), a.SLO.Target, a.SLO.Importance, a.Slot)
	}
	gone := func(id uint64) bool { _, ok := view.Cgroups[id]; return !ok }
	var errs []error
	for _, m := range s.opts.Targets() {
		if err := m.SyncSLOs(want); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, sweepStats(m, gone), s.clearIdle(m, view))
	}
	for _, sweep := range s.opts.Sweepers {
		errs = append(errs, sweep(gone))
	}
	return errs
}

// sweepStats deletes the stats entries of cgroups that are gone.
func sweepStats(m slomaps.Maps, gone func(uint64) bool) error {
	ids, err := m.StatIDs()
	if err != nil {
		return err
	}
	var stale []uint64
	for _, id := range ids {
		if gone(id) {
			stale = append(stale, id)
		}
	}
	return m.DeleteStats(stale)
}

// clearIdle clears the overload bit of SLO cgroups without a judged
// wakeup for IdleClear.
func (s *Syncer) clearIdle(m slomaps.Maps, view View) error {
	if s.opts.IdleClear <= 0 {
		return nil
	}
	var errs []error
	now := monotonicNs()
	for id, a := range view.SLOs {
		st, ok, err := m.StatsOf(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok || now-st.LastJudgedNs > uint64(s.opts.IdleClear.Nanoseconds()) {
			if on, err := m.Overloaded(a.Slot); err == nil && on {
				errs = append(errs, m.SetOverloaded(a.Slot, false))
			}
		}
	}
	return errors.Join(errs...)
}

// needsWalk reports whether the cgroup tree may have changed since the
// last full pass.
func (s *Syncer) needsWalk() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Generation == nil || time.Since(s.view.Walked) > FullInterval {
		return true
	}
	if s.opts.Owners != nil && s.opts.Owners.Version() != s.matches.owners {
		return true
	}
	g, err := s.opts.Generation()
	return err != nil || g != s.lastGen
}

// Run syncs every interval and whenever kick receives, until stop closes.
func (s *Syncer) Run(stop <-chan struct{}, interval time.Duration, kick <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	full := true
	for {
		var err error
		if full || s.needsWalk() {
			err = s.Sync()
		} else {
			err = s.light()
		}
		if err != nil {
			level.Warn(s.opts.Logger).Log("msg", "SLO sync incomplete", "err", err)
		}
		full = false
		select {
		case <-stop:
			return
		case <-t.C:
		case <-kick:
			full = true
		}
	}
}

// light is the pass for ticks where the tree did not change.
func (s *Syncer) light() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, m := range s.opts.Targets() {
		errs = append(errs, s.clearIdle(m, s.view))
	}
	return errors.Join(errs...)
}

var monotonicNs = monoclock.Now
