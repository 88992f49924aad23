// Package needs decides what a test does when a part it depends on (the
// lab VM, a cgroup hierarchy, bpffs, promtool, nginx, stress-ng, root) is
// missing on this machine: outside CI it skips, so a developer's laptop
// runs what it can; with SCX_SLO_LAB_REQUIRED=1 (CI sets it) it fails, so
// CI never goes green by skipping the tests that matter. Every such skip
// in the repository goes through here.
package needs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequiredEnv is the variable that turns a missing part into a failure.
const RequiredEnv = "SCX_SLO_LAB_REQUIRED"

// Required reports whether missing parts are failures (CI).
func Required() bool { return os.Getenv(RequiredEnv) != "" }

// Part skips t (or fails it when Required) if err says part is missing.
// It returns normally when err is nil.
func Part(t testing.TB, part string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if Required() {
		t.Fatalf("%s is missing and %s is set: %v", part, RequiredEnv, err)
	}
	t.Skipf("%s is missing: %v (set %s=1 to make this a failure)", part, err, RequiredEnv)
}

// Root needs the test to run as root (BPF, cgroups, bpffs pins).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Part(t, "root", errors.New("needs root for BPF and cgroups (CI runs as root)"))
	}
}

// BPFFS needs bpffs mounted at dir (.ci/run mounts /sys/fs/bpf).
func BPFFS(t testing.TB, dir string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		Part(t, "bpffs", err)
	} else if st.Type != unix.BPF_FS_MAGIC {
		Part(t, "bpffs", fmt.Errorf("%s is not a bpffs mount (.ci/run mounts it)", dir))
	}
}

// Command needs the program name on PATH, installed by the Debian package
// pkg, and returns its path.
func Command(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Part(t, name, fmt.Errorf("not installed (apt-get install %s): %w", pkg, err))
	}
	return p
}

// BPFFSDir needs root and bpffs at /sys/fs/bpf and returns a fresh,
// not yet created path there (removed when the test ends): a private pin
// directory that never collides with a running exporter's.
func BPFFSDir(t testing.TB, prefix string) string {
	t.Helper()
	Root(t)
	BPFFS(t, "/sys/fs/bpf")
	dir := fmt.Sprintf("/sys/fs/bpf/%s-%d", prefix, time.Now().UnixNano())
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
