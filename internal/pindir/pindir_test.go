package pindir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// bpffsRoot returns a fresh path under the host's bpffs, or skips (fails
// under SCX_SLO_LAB_REQUIRED=1) without root or bpffs: chown needs root.
func bpffsRoot(t *testing.T) string {
	t.Helper()
	return needs.BPFFSDir(t, "scx-slo-pindir-test")
}

// nobody is the uid that pre-creates directories in the attacks below.
const nobody = 65534

func TestPrepare(t *testing.T) {
	root := bpffsRoot(t)
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, mode os.FileMode, uid int) string {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.Mkdir(p, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fresh := filepath.Join(root, "fresh", "nested")
	link := filepath.Join(root, "link")
	if err := os.Symlink(mk("target", 0o700, 0), link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir string
		want      []string // empty: accepted
	}{
		{"missing: created 0700", fresh, nil},
		{"root's, 0755 (what older versions made)", mk("old", 0o755, 0), nil},
		{"another user's", mk("theirs", 0o700, nobody), []string{"owned by uid 65534", "chown it to uid 0"}},
		{"another user's, world-writable", mk("theirs-open", 0o777, nobody), []string{"owned by uid 65534"}},
		{"root's, world-writable", mk("open", 0o777, 0), []string{"mode 0777 is writable by group or others", "chmod go-w"}},
		{"root's, group-writable", mk("group", 0o770, 0), []string{"mode 0770"}},
		{"root's, sticky and world-writable", mk("sticky", 0o1777, 0), []string{"mode 0777"}},
		{"a symlink to root's directory", link, []string{"is not a directory"}},
	} {
		err := Prepare("--overload.pin-dir", c.dir)
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s: %v, want ErrUnsafe", c.name, err)
			continue
		}
		for _, w := range append(c.want, fmt.Sprintf("--overload.pin-dir=%q", c.dir)) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	fi, err := os.Stat(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("created %s with mode %v, want 0700", fresh, fi.Mode().Perm())
	}
}
