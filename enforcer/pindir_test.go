package enforcer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/pindir"
)

// TestPinRefusesForeignDir: pinning the scheduler into a --enforce.pin-dir
// another user created first fails before anything is pinned there.
func TestPinRefusesForeignDir(t *testing.T) {
	var st unix.Statfs_t
	if os.Geteuid() != 0 || unix.Statfs("/sys/fs/bpf", &st) != nil || st.Type != unix.BPF_FS_MAGIC {
		if os.Getenv("SCX_SLO_LAB_REQUIRED") != "" {
			t.Fatal("SCX_SLO_LAB_REQUIRED is set: needs root and bpffs at /sys/fs/bpf")
		}
		t.Skip("needs root and bpffs at /sys/fs/bpf")
	}
	dir := fmt.Sprintf("/sys/fs/bpf/scx-slo-enforcer-test-%d", time.Now().UnixNano())
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
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
