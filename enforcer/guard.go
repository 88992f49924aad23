package enforcer

import (
	"context"
	"fmt"
	"time"

	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// Guard is the attainment guard. Before the first attach, Start watches
// deadlines being judged without the scheduler (in Observe, the
// observe-mode tracer's maps) for BaselineFor; that attainment is the
// baseline. If attainment with the scheduler attached then stays below the
// baseline for Sustain windows in a row, the enforcer detaches and stays
// detached (the exporter keeps observing). A re-adopted scheduler has no
// baseline, so the guard stays off for it.
//
// Attainment is met/judged wakeups summed over every cgroup in the SLO
// map, the same numbers the slo collector exports: one sum (sloTotals)
// for the baseline and for every window, one floor (MinJudged) below
// which neither says anything.
type Guard struct {
	Observe     slomaps.Maps  // where deadlines are judged without the scheduler
	BaselineFor time.Duration // how long to observe before attaching; default 10 s
	Window      time.Duration // default 1 minute
	Sustain     int           // consecutive bad windows before detaching; default 3
	Margin      float64       // tolerated shortfall, e.g. 0.005; default 0
	// MinJudged: a baseline or window with fewer judged wakeups is too
	// little data (no baseline: the guard is off; a window: ignored);
	// default 100.
	MinJudged uint64
}

func (g *Guard) validate() error {
	if g.BaselineFor < 0 || g.Window < 0 || g.Sustain < 0 || g.Margin < 0 || g.Margin >= 1 {
		return fmt.Errorf("enforcer: Guard baseline %s, window %s, sustain %d, margin %v: want non-negative values and margin < 1", g.BaselineFor, g.Window, g.Sustain, g.Margin)
	}
	if g.Observe.SLOs == nil || g.Observe.Stats == nil {
		return fmt.Errorf("enforcer: Guard.Observe needs the observe-mode SLOs and Stats maps")
	}
	if g.BaselineFor == 0 {
		g.BaselineFor = 10 * time.Second
	}
	if g.Window == 0 {
		g.Window = time.Minute
	}
	if g.Sustain == 0 {
		g.Sustain = 3
	}
	if g.MinJudged == 0 {
		g.MinJudged = 100
	}
	return nil
}

// guardState turns cumulative counters into per-window verdicts.
type guardState struct {
	lastJudged, lastMissed uint64
	bad                    int
	primed                 bool
}

// observe takes cumulative judged/missed totals at the end of a window and
// reports whether the guard should trip, with the window's attainment.
func (s *guardState) observe(g *Guard, judged, missed uint64, baseline float64) (trip bool, attainment float64, counted bool) {
	if !s.primed || judged < s.lastJudged || missed < s.lastMissed {
		// First sample, or the maps were recreated (re-attach): restart.
		s.lastJudged, s.lastMissed, s.primed, s.bad = judged, missed, true, 0
		return false, 0, false
	}
	dj, dm := judged-s.lastJudged, missed-s.lastMissed
	s.lastJudged, s.lastMissed = judged, missed
	if dj < g.MinJudged {
		return false, 0, false
	}
	attainment = 1 - float64(dm)/float64(dj)
	if attainment < baseline-g.Margin {
		s.bad++
	} else {
		s.bad = 0
	}
	return s.bad >= g.Sustain, attainment, true
}

// measureBaseline watches Observe for BaselineFor and returns the SLO
// attainment there; ok is false with fewer than MinJudged judged wakeups.
func (g *Guard) measureBaseline(ctx context.Context) (attainment float64, ok bool, err error) {
	j0, m0, err := sloTotals(g.Observe)
	if err != nil {
		return 0, false, fmt.Errorf("attainment guard baseline: %w", err)
	}
	t := time.NewTimer(g.BaselineFor)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, false, ctx.Err()
	case <-t.C:
	}
	j1, m1, err := sloTotals(g.Observe)
	if err != nil {
		return 0, false, fmt.Errorf("attainment guard baseline: %w", err)
	}
	if j1 < j0 || m1 < m0 || j1-j0 < g.MinJudged {
		return 0, false, nil
	}
	return 1 - float64(m1-m0)/float64(j1-j0), true, nil
}

// sloTotals sums judged and missed wakeups over cgroups that have an SLO.
func sloTotals(m slomaps.Maps) (judged, missed uint64, err error) {
	stats, err := m.ReadStats()
	if err != nil {
		return 0, 0, err
	}
	var id uint64
	var e slomaps.Entry
	it := m.SLOs.Iterate()
	for it.Next(&id, &e) {
		if s := stats[id]; s != nil {
			judged += s.Deadlines
			missed += s.Misses
		}
	}
	return judged, missed, it.Err()
}
