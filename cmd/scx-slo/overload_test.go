package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/overload"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// TestOverloadPublished reads cgroups' overload bits the two ways readers
// on the node do, through the pinned mmapable map and over HTTP, and
// checks both follow the kernel's state. Four SLO cgroups, two of them
// busy, so the readers must find each cgroup's own slot.
func TestOverloadPublished(t *testing.T) {
	exportertest.RequireRoot(t)
	needs.BPFFS(t, "/sys/fs/bpf")
	cg := exportertest.NewCgroups(t, "auto")
	var paths []string
	for _, n := range []string{"a", "b", "c", "d"} {
		paths = append(paths, cg.Make(t, n))
	}
	busy := map[string]bool{paths[1]: true, paths[3]: true}
	pins := fmt.Sprintf("/sys/fs/bpf/scx-slo-test-%d", time.Now().UnixNano())
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeBudget := func(budget string) {
		writeSLO(t, cfg, "slos:\n  - cgroup: "+cg.Parent+"/*\n    latencyBudget: "+budget+"\n    target: 0.9\n")
	}
	writeBudget("1ns")
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--overload.pin-dir="+pins, "--slo.resync-interval=100ms")
	if !exportertest.Eventually(context.Background(), 10*time.Second, func() bool {
		v, _ := e.Scrape(t).Value("scx_slo_budget_seconds", map[string]string{"cgroup": paths[3]})
		return v > 0
	}) {
		t.Fatalf("SLOs never applied\n%s", e.Log())
	}

	readers := map[string]*overload.Reader{}
	for _, p := range paths {
		id, err := cgroupfs.ID(cg.H.Dir(p))
		if err != nil {
			t.Fatal(err)
		}
		r, err := overload.Open(pins, id)
		if err != nil {
			t.Fatalf("opening pinned maps: %v\n%s", err, e.Log())
		}
		defer r.Close()
		readers[p] = r
	}
	viaHTTP := func(p string) bool {
		_, body, err := e.Get("/overload?cgroup=" + p)
		if err != nil {
			t.Fatal(err)
		}
		var st []overloadState
		if err := json.Unmarshal(body, &st); err != nil || len(st) != 1 {
			t.Fatalf("/overload answered %q (%v)", body, err)
		}
		return st[0].Overloaded
	}
	// state returns whether every cgroup's pinned bit is want(p), and
	// the pinned bits it saw.
	state := func(want func(p string) bool) (bool, map[string]bool) {
		seen := map[string]bool{}
		ok := true
		for _, p := range paths {
			on, err := readers[p].Overloaded()
			if err != nil {
				t.Fatalf("reading %s: %v", p, err)
			}
			seen[p] = on
			ok = ok && on == want(p)
		}
		return ok, seen
	}
	// How fast the bit follows the kernel: start the probes under the
	// impossible budget and poll the pinned bit every millisecond.
	start := time.Now()
	for p := range busy {
		w := cg.StartWorkload(t, p, "probe", 1)
		defer w.Stop()
	}
	for time.Since(start) < 5*time.Second {
		if on, _ := readers[paths[3]].Overloaded(); on {
			t.Logf("bit set %v after the probe started under an impossible budget", time.Since(start).Round(100*time.Microsecond))
			break
		}
		time.Sleep(time.Millisecond)
	}

	ctx := context.Background()
	var seen map[string]bool
	if !exportertest.Eventually(ctx, 10*time.Second, func() bool {
		var ok bool
		ok, seen = state(func(p string) bool { return busy[p] })
		return ok
	}) {
		t.Fatalf("pinned bits %v, want set exactly for the busy cgroups %v", seen, busy)
	}
	for _, p := range paths {
		if got := viaHTTP(p); got != seen[p] {
			t.Errorf("%s: HTTP /overload says %v, pinned map %v", p, got, seen[p])
		}
	}

	writeBudget("10s")
	if !exportertest.Eventually(ctx, 30*time.Second, func() bool {
		var ok bool
		ok, seen = state(func(string) bool { return false })
		return ok
	}) {
		t.Fatalf("pinned bits never all cleared under a 10s budget: %v", seen)
	}
	for _, p := range paths {
		if viaHTTP(p) {
			t.Errorf("%s: HTTP /overload still says overloaded after the pinned bit cleared", p)
		}
	}
	// A cgroup without an SLO is reported as such, not as "fine".
	if resp, _, _ := e.Get("/overload?cgroup=/nope"); resp.StatusCode != 404 {
		t.Errorf("/overload for a cgroup without SLO: %s", resp.Status)
	}
	e.Stop(t)
	if _, err := overload.Open(pins, 1); err == nil {
		t.Errorf("pins left behind after the exporter stopped")
	}
}
