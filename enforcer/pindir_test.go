package enforcer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/pindir"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// TestPinRefusesForeignDir: pinning the scheduler into a --enforce.pin-dir
// another user created first fails before anything is pinned there.
func TestPinRefusesForeignDir(t *testing.T) {
	dir := needs.BPFFSDir(t, "scx-slo-enforcer-test")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// Never reaches the link or maps: the directory check comes first.
	err := (&instance{}).pin(dir)
	if !errors.Is(err, pindir.ErrUnsafe) {
		t.Fatalf("pin into a directory owned by uid 65534: %v, want pindir.ErrUnsafe", err)
	}
	if want := fmt.Sprintf("--enforce.pin-dir=%q", dir); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
}
