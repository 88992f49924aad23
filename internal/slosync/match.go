package slosync

import (
	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
)

// matchCache remembers which SLO each cgroup matched under one config, so
// that a pass matches only cgroups it has not seen (or that were renamed):
// a pass over an unchanged tree costs map lookups, however many globs the
// config has. A new config starts it afresh.
type matchCache struct {
	cfg  *sloconfig.Config
	byID map[uint64]cachedMatch
}

type cachedMatch struct {
	path string
	match
	ok bool
}

// match is the SLO a cgroup is under; explicit when the config names the
// cgroup's path rather than a glob covering it.
type match struct {
	slo      sloconfig.SLO
	explicit bool
}

// update matches the cgroups of one walk under cfg (nil: no SLOs) and
// returns those under an SLO. Entries of cgroups not in the walk are
// dropped.
func (m *matchCache) update(cfg *sloconfig.Config, cgs []cgroupfs.Cgroup) map[uint64]match {
	if cfg != m.cfg || m.byID == nil {
		m.cfg, m.byID = cfg, make(map[uint64]cachedMatch, len(cgs))
	}
	matched := make(map[uint64]match)
	seen := make(map[uint64]bool, len(cgs))
	for _, cg := range cgs {
		seen[cg.ID] = true
		c, ok := m.byID[cg.ID]
		if !ok || c.path != cg.Path {
			c = cachedMatch{path: cg.Path}
			if cfg != nil {
				c.slo, c.ok = cfg.Match(cg.Path)
				c.explicit = c.ok && !c.slo.IsGlob()
			}
			m.byID[cg.ID] = c
		}
		if c.ok {
			matched[cg.ID] = c.match
		}
	}
	for id := range m.byID {
		if !seen[id] {
			delete(m.byID, id)
		}
	}
	return matched
}
