package slosync_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/bpf/runqueue"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/slosync"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// prefixOwners is the test's stand-in for the Kubernetes side: a cgroup
// and its children belong to the owner registered for its path.
type prefixOwners struct {
	mu  sync.Mutex
	by  map[string]slosync.Owner
	ver uint64
}

func (o *prefixOwners) set(prefix string, owner *slosync.Owner) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.by == nil {
		o.by = map[string]slosync.Owner{}
	}
	if owner == nil {
		delete(o.by, prefix)
	} else {
		o.by[prefix] = *owner
	}
	o.ver++
}

func (o *prefixOwners) Version() uint64 { o.mu.Lock(); defer o.mu.Unlock(); return o.ver }

func (o *prefixOwners) Owner(path string) (slosync.Owner, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for p, own := range o.by {
		if path == p || strings.HasPrefix(path, p+"/") {
			return own, true
		}
	}
	return slosync.Owner{}, false
}

// Kubernetes' SLOs win over the file's, cover a container's child
// cgroups, and leave the real tracer's slos map when the pod goes (the
// file's SLO takes over) and when the cgroups go.
func TestOwnersOverrideFile(t *testing.T) {
	exportertest.RequireRoot(t)
	cg := exportertest.NewCgroups(t, "auto")
	ctr := cg.Make(t, "pod1")
	child := cg.Make(t, "pod1/child")
	plain := cg.Make(t, "plain")
	tr, err := runqueue.Load(runqueue.Options{Hierarchy: cg.H})
	needs.Part(t, "the BPF run-queue tracer", err)
	defer tr.Close()
	cfg := &configVar{}
	cfg.p.Store(parse(t, cg.Parent+"/* 5ms"))
	owners := &prefixOwners{}
	pod := slosync.Pod{Namespace: "shop", Name: "checkout-0", Container: "api"}
	owners.set(ctr, &slosync.Owner{Pod: pod, SLO: &sloconfig.SLO{LatencyBudget: time.Millisecond, Importance: 100, Target: 0.99}, Source: "annotation"})
	s := slosync.New(slosync.Options{Hierarchy: cg.H, Config: cfg.get, Owners: owners,
		Targets: func() []slomaps.Maps { return []slomaps.Maps{tr.Maps()} }})
	must(t, s.Sync())

	entry := func(path string) (slomaps.Entry, uint64, bool) {
		t.Helper()
		for id, c := range s.View().Cgroups {
			if c.Path == path {
				var e slomaps.Entry
				err := tr.Maps().SLOs.Lookup(id, &e)
				return e, id, err == nil
			}
		}
		t.Fatalf("%s not walked", path)
		return slomaps.Entry{}, 0, false
	}
	for _, p := range []string{ctr, child} {
		e, id, ok := entry(p)
		a := s.View().SLOs[id]
		if !ok || e.BudgetNs != uint64(time.Millisecond) || a.Source != "annotation" || a.Pod != pod {
			t.Errorf("%s: slos entry %+v (present %v), assignment %+v; want the annotation's 1ms for %v", p, e, ok, a, pod)
		}
		if got := s.View().Pods[id]; got != pod {
			t.Errorf("%s: View.Pods says %+v, want %+v", p, got, pod)
		}
	}
	e, id, ok := entry(plain)
	if a := s.View().SLOs[id]; !ok || e.BudgetNs != uint64(5*time.Millisecond) || a.Source != slosync.SourceFile || !a.Pod.IsZero() {
		t.Errorf("%s: entry %+v (present %v), assignment %+v; want the file's 5ms and no pod", plain, e, ok, a)
	}

	// The pod goes from the API first: the file's SLO applies again.
	owners.set(ctr, nil)
	must(t, s.Sync())
	e, id, ok = entry(ctr)
	if a := s.View().SLOs[id]; !ok || e.BudgetNs != uint64(5*time.Millisecond) || a.Source != slosync.SourceFile {
		t.Errorf("after the pod went: %s entry %+v (present %v), source %q; want the file's 5ms", ctr, e, ok, a.Source)
	}
	if _, ok := s.View().Pods[id]; ok {
		t.Errorf("after the pod went: %s still listed in View.Pods", ctr)
	}

	// And its cgroups: the entries leave the map.
	_, childID, _ := entry(child)
	must(t, cg.Remove(child))
	must(t, cg.Remove(ctr))
	must(t, s.Sync())
	for _, id := range []uint64{id, childID} {
		var e slomaps.Entry
		if err := tr.Maps().SLOs.Lookup(id, &e); err == nil {
			t.Errorf("cgroup %d removed but still in the slos map: %+v", id, e)
		}
	}
}
