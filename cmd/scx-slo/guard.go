package main

import (
	"context"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/scx-slo/scx-slo/enforcer"
)

// guardFromBaseline observes for --enforce.guard-baseline with the tracer
// judging deadlines, and returns a guard that holds the scheduler to the
// attainment measured (nil when disabled or when too few wakeups were
// judged to call it a baseline).
func guardFromBaseline(ctx context.Context, f *enforceFlags, node *app, logger log.Logger) *enforcer.Guard {
	if f.guardBaseline <= 0 || node.Tracer == nil {
		return nil
	}
	level.Info(logger).Log("msg", "measuring observe-mode SLO attainment before attaching", "for", f.guardBaseline)
	before := judged(node)
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(f.guardBaseline):
	}
	after := judged(node)
	deadlines, misses := after[0]-before[0], after[1]-before[1]
	if deadlines < 100 {
		level.Info(logger).Log("msg", "too few judged wakeups for a baseline; the attainment guard is off", "wakeups", deadlines)
		return nil
	}
	attainment := 1 - float64(misses)/float64(deadlines)
	level.Info(logger).Log("msg", "observe-mode baseline", "attainment", attainment, "wakeups", deadlines)
	return &enforcer.Guard{
		Baseline: func() (float64, bool) { return attainment, true },
		Window:   f.guardWindow,
	}
}

// judged sums deadlines and misses over the SLO cgroups in the tracer's map.
func judged(node *app) [2]uint64 {
	var sum [2]uint64
	m := node.Tracer.Maps()
	for id := range node.Sync.View().SLOs {
		if s, ok, err := m.StatsOf(id); err == nil && ok {
			sum[0] += s.Deadlines
			sum[1] += s.Misses
		}
	}
	return sum
}
