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
	cfg    *sloconfig.Config
	owners uint64 // Owners.Version the cache holds answers of
	byID   map[uint64]cachedMatch
}

type cachedMatch struct {
	path string
	match
	ok bool
}

// match is the SLO a cgroup is under; explicit when the config names the
// cgroup's path rather than a glob covering it, or when Kubernetes gives
// it (a pod's SLO names its cgroups). pod is set for a pod's cgroups,
// with or without an SLO.
type match struct {
	slo      sloconfig.SLO
	explicit bool
	source   string
	pod      Pod
	hasSLO   bool
}

// update matches the cgroups of one walk under owners (nil outside
// Kubernetes) and cfg (nil: no file SLOs) and returns those under an SLO
// or in a pod. An SLO from Kubernetes wins over the file's. Entries of
// cgroups not in the walk are dropped.
func (m *matchCache) update(cfg *sloconfig.Config, owners Owners, cgs []cgroupfs.Cgroup) map[uint64]match {
	var ver uint64
	if owners != nil {
		ver = owners.Version()
	}
	if cfg != m.cfg || ver != m.owners || m.byID == nil {
		m.cfg, m.owners, m.byID = cfg, ver, make(map[uint64]cachedMatch, len(cgs))
	}
	matched := make(map[uint64]match)
	seen := make(map[uint64]bool, len(cgs))
	for _, cg := range cgs {
		seen[cg.ID] = true
		c, ok := m.byID[cg.ID]
		if !ok || c.path != cg.Path {
			c = cachedMatch{path: cg.Path, match: matchOne(cfg, owners, cg.Path)}
			c.ok = c.hasSLO || !c.pod.IsZero()
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

// matchOne applies the precedence to one cgroup: Kubernetes' SLO (the
// annotation or policy already chosen by its side), then the file.
func matchOne(cfg *sloconfig.Config, owners Owners, path string) match {
	var out match
	if owners != nil {
		if o, ok := owners.Owner(path); ok {
			out.pod = o.Pod
			if o.SLO != nil {
				out.slo, out.hasSLO, out.explicit, out.source = *o.SLO, true, true, o.Source
				return out
			}
		}
	}
	if cfg != nil {
		if slo, ok := cfg.Match(path); ok {
			out.slo, out.hasSLO, out.explicit, out.source = slo, true, !slo.IsGlob(), SourceFile
		}
	}
	return out
}
