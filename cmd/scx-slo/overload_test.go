package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/exportertest"
	"github.com/scx-slo/scx-slo/internal/overload"
)

// TestOverloadPublished reads a cgroup's overload bit the two ways readers
// on the node do, through the pinned mmapable map and over HTTP, and
// checks both follow the kernel's state.
func TestOverloadPublished(t *testing.T) {
	exportertest.RequireRoot(t)
	if !isBPFFS("/sys/fs/bpf") {
		t.Skip("bpffs is not mounted at /sys/fs/bpf (.ci/run mounts it)")
	}
	cg := exportertest.NewCgroups(t, "auto")
	ls := cg.Make(t, "ls")
	pins := fmt.Sprintf("/sys/fs/bpf/scx-slo-test-%d", time.Now().UnixNano())
	cfg := filepath.Join(t.TempDir(), "slo.yaml")
	writeSLO(t, cfg, "slos:\n  - cgroup: "+ls+"\n    latencyBudget: 1ns\n    target: 0.9\n")
	e := exportertest.Start(t, "--slo.config-file="+cfg, "--overload.pin-dir="+pins, "--slo.resync-interval=100ms")
	w := cg.StartWorkload(t, ls, "probe", 1)
	defer w.Stop()

	id, err := cgroupfs.ID(cg.H.Dir(ls))
	if err != nil {
		t.Fatal(err)
	}
	r, err := overload.Open(pins, id)
	if err != nil {
		t.Fatalf("opening pinned maps: %v\n%s", err, e.Log())
	}
	defer r.Close()
	viaHTTP := func() bool {
		_, body, err := e.Get("/overload?cgroup=" + ls)
		if err != nil {
			t.Fatal(err)
		}
		var st []overloadState
		if err := json.Unmarshal(body, &st); err != nil || len(st) != 1 {
			t.Fatalf("/overload answered %q (%v)", body, err)
		}
		return st[0].Overloaded
	}
	ctx := context.Background()
	if !exportertest.Eventually(ctx, 10*time.Second, func() bool { on, err := r.Overloaded(); return err == nil && on }) {
		t.Fatalf("pinned bit never set under a 1ns budget")
	}
	if !viaHTTP() {
		t.Errorf("HTTP /overload disagrees with the pinned map (clear while set)")
	}
	writeSLO(t, cfg, "slos:\n  - cgroup: "+ls+"\n    latencyBudget: 10s\n    target: 0.9\n")
	if !exportertest.Eventually(ctx, 30*time.Second, func() bool { on, err := r.Overloaded(); return err == nil && !on }) {
		t.Fatalf("pinned bit never cleared under a 10s budget")
	}
	if viaHTTP() {
		t.Errorf("HTTP /overload still says overloaded after the pinned bit cleared")
	}
	// A cgroup without an SLO is reported as such, not as "fine".
	if resp, _, _ := e.Get("/overload?cgroup=/nope"); resp.StatusCode != 404 {
		t.Errorf("/overload for a cgroup without SLO: %s", resp.Status)
	}
	e.Stop(t)
	if _, err := overload.Open(pins, id); err == nil {
		t.Errorf("pins left behind after the exporter stopped")
	}
}

func isBPFFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}
