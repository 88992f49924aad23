package enforcer

import (
	"testing"
	"time"
)

func TestGuardStateTripsAfterSustainedShortfall(t *testing.T) {
	g := &Guard{Sustain: 2, Margin: 0.01, MinJudged: 100}
	var s guardState
	steps := []struct {
		judged, missed uint64
		trip, counted  bool
	}{
		{1000, 10, false, false},  // primes
		{2000, 20, false, true},   // 99% met: fine
		{3000, 120, false, true},  // 90%: first bad window
		{3050, 125, false, false}, // too few wakeups: ignored, streak kept
		{4050, 225, true, true},   // 90% again: second bad window trips
	}
	for i, st := range steps {
		trip, att, counted := s.observe(g, st.judged, st.missed, 0.99)
		if trip != st.trip || counted != st.counted {
			t.Errorf("step %d: trip=%v counted=%v (attainment %.3f), want trip=%v counted=%v", i, trip, counted, att, st.trip, st.counted)
		}
	}
}

func TestGuardStateResetsOnNewMapsAndGoodWindows(t *testing.T) {
	g := &Guard{Sustain: 2, MinJudged: 100}
	var s guardState
	s.observe(g, 1000, 0, 0.99)
	if trip, _, _ := s.observe(g, 2000, 500, 0.99); trip {
		t.Fatal("tripped after one bad window with Sustain 2")
	}
	// Counters went backwards: the scheduler was re-attached with fresh maps.
	if _, _, counted := s.observe(g, 300, 100, 0.99); counted {
		t.Error("a window spanning a re-attach was counted")
	}
	if s.bad != 0 {
		t.Errorf("bad streak %d after re-attach, want 0", s.bad)
	}
	s.observe(g, 1300, 600, 0.99) // bad
	s.observe(g, 2300, 600, 0.99) // good: streak resets
	if trip, _, _ := s.observe(g, 3300, 1100, 0.99); trip {
		t.Error("tripped although a good window broke the streak")
	}
}

func TestGuardValidate(t *testing.T) {
	for _, g := range []Guard{
		{},
		{Margin: 1.5},
		{Window: -time.Second},
		{BaselineFor: -time.Second},
	} {
		if err := g.validate(); err == nil {
			t.Errorf("validate(%+v) = nil, want an error", g)
		}
	}
}
