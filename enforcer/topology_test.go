package enforcer

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]uint32{
		"0":         {0},
		"0-3":       {0, 1, 2, 3},
		"0-1,4,6-7": {0, 1, 4, 6, 7},
		"":          nil,
	} {
		got, err := parseCPUList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "3-1", "1-", "-2"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q): no error", bad)
		}
	}
}

// writeSysfs lays out a sysfs cpu tree: llc[i] is CPU i's shared_cpu_list
// at level 3 ("" for a CPU without cache information).
func writeSysfs(t *testing.T, possible string, llc []string) string {
	t.Helper()
	root := t.TempDir()
	cpu := filepath.Join(root, "devices", "system", "cpu")
	must := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(filepath.Join(cpu, "possible"), possible)
	for i, l := range llc {
		if l == "" {
			continue
		}
		dir := filepath.Join(cpu, "cpu"+itoa(i), "cache")
		must(filepath.Join(dir, "index2", "level"), "2")
		must(filepath.Join(dir, "index2", "shared_cpu_list"), itoa(i))
		must(filepath.Join(dir, "index3", "level"), "3")
		must(filepath.Join(dir, "index3", "shared_cpu_list"), l)
	}
	return root
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestReadTopology(t *testing.T) {
	// Two sockets of four, interleaved ids as on many servers.
	root := writeSysfs(t, "0-7", []string{"0,2,4,6", "1,3,5,7", "0,2,4,6", "1,3,5,7", "0,2,4,6", "1,3,5,7", "0,2,4,6", "1,3,5,7"})
	topo, err := ReadTopology(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{0, 1, 0, 1, 0, 1, 0, 1}; !reflect.DeepEqual(topo.CPUDom, want) {
		t.Errorf("CPUDom = %v, want %v", topo.CPUDom, want)
	}
	if want := [][]uint32{{0, 2, 4, 6}, {1, 3, 5, 7}}; !reflect.DeepEqual(topo.Domains, want) {
		t.Errorf("Domains = %v, want %v", topo.Domains, want)
	}
	// No cache information at all: one domain.
	topo, err = ReadTopology(writeSysfs(t, "0-3", []string{"", "", "", ""}))
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]uint32{{0, 1, 2, 3}}; !reflect.DeepEqual(topo.Domains, want) {
		t.Errorf("no cache info: Domains = %v, want %v", topo.Domains, want)
	}
	// Too many CPUs for the scheduler's arrays: a clear error.
	if _, err := ReadTopology(writeSysfs(t, "0-599", nil)); err == nil {
		t.Error("600 possible CPUs accepted")
	}
}
