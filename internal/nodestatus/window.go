package nodestatus

import (
	"sync"
	"time"

	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// Window keeps periodic snapshots of per-cgroup stats so the status can show
// recent quantiles (an SRE at a node wants "now", not "since boot").
type Window struct {
	Span  time.Duration // how far back the status looks
	mu    sync.Mutex
	snaps []snapshot
}

type snapshot struct {
	at    time.Time
	stats map[uint64]*slomaps.Stats
}

// Add records a snapshot and drops those older than needed.
func (w *Window) Add(at time.Time, stats map[uint64]*slomaps.Stats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.snaps = append(w.snaps, snapshot{at, stats})
	// Keep the newest snapshot that is at least Span old, and all after it.
	for len(w.snaps) > 1 && at.Sub(w.snaps[1].at) >= w.Span {
		w.snaps = w.snaps[1:]
	}
}

// Delta returns cur minus the oldest kept snapshot (cur itself when there
// is none) and the span it covers.
func (w *Window) Delta(now time.Time, cur map[uint64]*slomaps.Stats) (map[uint64]*slomaps.Stats, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.snaps) == 0 {
		return cur, 0
	}
	base := w.snaps[0]
	out := make(map[uint64]*slomaps.Stats, len(cur))
	for id, s := range cur {
		d := *s
		if b, ok := base.stats[id]; ok && b.Count <= s.Count {
			for i := range d.Hist {
				d.Hist[i] -= min(b.Hist[i], d.Hist[i])
			}
			d.Count -= b.Count
			d.SumNs -= min(b.SumNs, d.SumNs)
			d.Deadlines -= min(b.Deadlines, d.Deadlines)
			d.Misses -= min(b.Misses, d.Misses)
		}
		out[id] = &d
	}
	return out, now.Sub(base.at)
}
