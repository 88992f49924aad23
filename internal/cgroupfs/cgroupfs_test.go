package cgroupfs

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestWalkMatchesStat builds a directory tree (getdents and stat work the
// same on any file system) and checks Walk's ids and paths against stat.
func TestWalkMatchesStat(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Control files, as cgroupfs has, must not show up as cgroups.
	if err := os.WriteFile(filepath.Join(root, "a", "cpu.weight"), []byte("100"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Hierarchy{Root: root, V2: true}.Walk()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, cg := range got {
		paths = append(paths, cg.Path)
		id, err := ID(filepath.Join(root, cg.Path))
		if err != nil || id != cg.ID {
			t.Errorf("%s: walk id %d, stat id %d (%v)", cg.Path, cg.ID, id, err)
		}
		if want := strings.Count(cg.Path, "/"); cg.Path != "/" && cg.Depth != want {
			t.Errorf("%s: depth %d, want %d", cg.Path, cg.Depth, want)
		}
	}
	sort.Strings(paths)
	want := []string{"/", "/a", "/a/b", "/a/b/c", "/a/d", "/e"}
	if len(paths) != len(want) {
		t.Fatalf("paths %v, want %v", paths, want)
	}
	for i := range want {
		if paths[i] != want[i] {
			t.Fatalf("paths %v, want %v", paths, want)
		}
	}
}

func TestAncestor(t *testing.T) {
	cases := map[[2]any]string{
		{"/a/b/c", 2}: "/a/b", {"/a", 3}: "/a", {"/a/b", 0}: "/", {"/", 1}: "/",
	}
	for in, want := range cases {
		if got := Ancestor(in[0].(string), in[1].(int)); got != want {
			t.Errorf("Ancestor(%v, %v) = %q, want %q", in[0], in[1], got, want)
		}
	}
}
