package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

	reader, err := overload.Open(pins)
	if err != nil {
		t.Fatalf("opening pinned maps: %v\n%s", err, e.Log())
	}
	defer reader.Close()
	ids := map[string]uint64{}
	for _, p := range paths {
		if ids[p], err = cgroupfs.ID(cg.H.Dir(p)); err != nil {
			t.Fatal(err)
		}
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
			on, err := reader.Overloaded(ids[p])
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
		if on, _ := reader.Overloaded(ids[paths[3]]); on {
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
	if _, err := overload.Open(pins); err == nil {
		t.Errorf("pins left behind after the exporter stopped")
	}
}

// TestRefusesForeignPinDir: a pin directory another user created first
// in a world-writable bpffs would let that user delete the pins later;
// the exporter refuses to start on it and says why.
func TestRefusesForeignPinDir(t *testing.T) {
	exportertest.RequireRoot(t)
	needs.BPFFS(t, "/sys/fs/bpf")
	pins := fmt.Sprintf("/sys/fs/bpf/scx-slo-test-foreign-%d", time.Now().UnixNano())
	if err := os.Mkdir(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pins) })
	const nobody = 65534
	if err := os.Chown(pins, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	e := exportertest.StartNoWait(t, "--overload.pin-dir="+pins, "--no-collector.runqueue", "--no-collector.slo")
	err, exited := e.Wait(30 * time.Second)
	if !exited {
		t.Fatalf("the exporter runs with a pin directory owned by uid %d\n%s", nobody, e.Log())
	}
	want := fmt.Sprintf("--overload.pin-dir=%q: unsafe pin directory: owned by uid %d", pins, nobody)
	if err == nil || !strings.Contains(e.Log(), want) {
		t.Errorf("exit %v; log does not say %q:\n%s", err, want, e.Log())
	}
	if _, err := os.Stat(filepath.Join(pins, overload.HeartbeatPin)); err == nil {
		t.Errorf("pinned into the refused directory")
	}
}
