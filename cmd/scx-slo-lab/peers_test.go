package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
	"github.com/scx-slo/scx-slo/internal/testbed/peers"
)

// TestLabPeers runs the real "scx-slo-lab peers": it prints the cache
// entry and each peer's ops name as build.json records them. Outside CI it
// runs only when the peers are already built (a build takes minutes).
func TestLabPeers(t *testing.T) {
	k := labtest.Kernel(t)
	if _, err := peers.Cached(t.Context(), "", k); err != nil && !needs.Required() {
		if errors.Is(err, peers.ErrNotBuilt) || errors.Is(err, exec.ErrNotFound) {
			needs.Part(t, "the sched_ext peers", err)
		}
		t.Fatal(err)
	}
	labBin := exportertest.BuildPackage(t, "./cmd/scx-slo-lab")
	out, err := exec.CommandContext(t.Context(), labBin, "peers").Output()
	if err != nil {
		t.Fatalf("scx-slo-lab peers: %v\n%s", err, out)
	}
	set, err := peers.Cached(t.Context(), "", k)
	if err != nil {
		t.Fatalf("after scx-slo-lab peers: %v", err)
	}
	want := []string{"dir      " + set.Dir, set.Info.Source + " " + set.Info.Version}
	for _, p := range set.Info.Peers {
		want = append(want, fmt.Sprintf("%s %s (ops %q", p.Name, set.Binary(p.Name), p.Ops))
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}
