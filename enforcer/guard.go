package enforcer

import (
	"fmt"
	"time"

	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// Guard is the attainment guard: if SLO attainment with the scheduler
// attached stays below the observe-mode baseline for a sustained window,
// the enforcer detaches and stays detached (the exporter keeps observing).
//
// Attainment is met/judged wakeups summed over every cgroup with an SLO,
// the same numbers the slo collector exports, taken per Window from the
// scheduler's own maps.
type Guard struct {
	// Baseline returns attainment measured in observe mode before the
	// scheduler was attached; ok=false disables the guard (no baseline yet).
	Baseline func() (attainment float64, ok bool)
	Window   time.Duration // default 1 minute
	Sustain  int           // consecutive bad windows before detaching; default 3
	Margin   float64       // tolerated shortfall, e.g. 0.005; default 0
	// MinJudged ignores windows with fewer judged wakeups (too little data);
	// default 100.
	MinJudged uint64
}

func (g *Guard) validate() error {
	if g.Baseline == nil {
		return fmt.Errorf("enforcer: Guard.Baseline is nil")
	}
	if g.Window < 0 || g.Sustain < 0 || g.Margin < 0 || g.Margin >= 1 {
		return fmt.Errorf("enforcer: Guard window %s, sustain %d, margin %v: want non-negative values and margin < 1", g.Window, g.Sustain, g.Margin)
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
