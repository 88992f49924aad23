package overload

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// TestPublisherLeavesOtherPinsInPlace: publishing maps the enforcer has
// already pinned elsewhere (--enforce.keep-pinned) adds pins and moves
// none; publishing the same maps again is a no-op; other maps replace the
// pins; Close removes them.
func TestPublisherLeavesOtherPinsInPlace(t *testing.T) {
	root := bpffsDir(t)
	enforcerDir := filepath.Join(root, "enforcer")
	if err := os.Mkdir(enforcerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	slos, ov := newMaps(t), newMaps(t)
	for name, m := range map[string]*ebpf.Map{SLOsPin: slos, OverloadPin: ov} {
		if err := m.Pin(filepath.Join(enforcerDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewPublisher(filepath.Join(root, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if repinned, err := p.Publish(slos, ov); err != nil || !repinned {
		t.Fatalf("first Publish: repinned %v, %v", repinned, err)
	}
	for _, name := range []string{SLOsPin, OverloadPin} {
		if _, err := os.Stat(filepath.Join(enforcerDir, name)); err != nil {
			t.Errorf("the enforcer's pin %s is gone after Publish: %v", name, err)
		}
	}
	wantPinned(t, filepath.Join(root, "state"), slos, ov)
	if repinned, err := p.Publish(slos, ov); err != nil || repinned {
		t.Errorf("Publish of the published maps: repinned %v, %v; want a no-op", repinned, err)
	}

	slos2, ov2 := newMaps(t), newMaps(t)
	if repinned, err := p.Publish(slos2, ov2); err != nil || !repinned {
		t.Fatalf("Publish of other maps: repinned %v, %v", repinned, err)
	}
	wantPinned(t, filepath.Join(root, "state"), slos2, ov2)
	if left, _ := filepath.Glob(filepath.Join(root, "state", "*_new")); len(left) > 0 {
		t.Errorf("temporary pins left behind: %v", left)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{SLOsPin, OverloadPin} {
		if _, err := os.Stat(filepath.Join(root, "state", name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin %s after Close: %v, want it removed", name, err)
		}
	}
}

func wantPinned(t *testing.T, dir string, slos, ov *ebpf.Map) {
	t.Helper()
	for name, want := range map[string]*ebpf.Map{SLOsPin: slos, OverloadPin: ov} {
		got, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			t.Fatalf("opening the published %s: %v", name, err)
		}
		gotIDs, err1 := mapIDs(got, got)
		wantIDs, err2 := mapIDs(want, want)
		got.Close()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if gotIDs != wantIDs {
			t.Errorf("published %s is map %d, want %d", name, gotIDs[0], wantIDs[0])
		}
	}
}

func newMaps(t *testing.T) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatalf("creating a BPF map (needs root): %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// bpffsDir makes a unique directory in the bpffs at /sys/fs/bpf, removed
// with everything in it at the end; it skips without root or bpffs
// (fails instead under SCX_SLO_LAB_REQUIRED=1).
func bpffsDir(t *testing.T) string {
	t.Helper()
	dir := needs.BPFFSDir(t, "scx-slo-publisher-test")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
