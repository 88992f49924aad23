package exportertest

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// MapEntries counts the entries of every BPF map in the kernel with one of
// the given names, summed by name: a look at the exporter's real kernel
// state from outside the process.
func MapEntries(t testing.TB, names ...string) map[string]int {
	t.Helper()
	want := make(map[string]bool)
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]int)
	var id ebpf.MapID
	for {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return out
		}
		if err != nil {
			t.Fatalf("listing BPF maps: %v", err)
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue // freed meanwhile
		}
		info, err := m.Info()
		if err == nil && want[info.Name] {
			var key, val []byte
			it := m.Iterate()
			n := 0
			for it.Next(&key, &val) {
				n++
			}
			out[info.Name] += n
		}
		m.Close()
	}
}
