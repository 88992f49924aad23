// Package overload publishes each SLO cgroup's overload bit for readers on
// the node, and reads it back. The exporter pins two BPF maps in bpffs:
//
//	<dir>/overload  ARRAY, BPF_F_MMAPABLE: one u32 per slot, 1 = overloaded;
//	                the kernel lays array values 8 bytes apart, so slot i is
//	                at byte offset 8*i of the mapping
//	<dir>/slos      HASH: cgroup id (u64) -> struct slo_entry (slot at offset 16)
//
// A reader looks its cgroup's slot up in slos once in a while and reads
// the bit through a shared memory mapping of overload: no syscall per read,
// so polling every few milliseconds is free. The same two maps serve both
// modes: the tracer judges deadlines in observe mode, the scheduler while
// it is attached, and both write the one pinned array.
//
// Permissions: pins are created 0600 (root). Mapping the array needs a
// read-write open (the kernel refuses to mmap a map opened read-only), so
// readers run as root or with CAP_BPF and DAC access to the pins; readers
// without that use the exporter's /overload HTTP endpoint instead.
package overload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// Pin file names inside the pin directory.
const (
	OverloadPin = "overload"
	SLOsPin     = "slos"
	// DefaultDir is where the exporter pins them.
	DefaultDir = "/sys/fs/bpf/scx-slo-state"
)

// Publish pins slos and overload in dir, replacing stale pins a previous
// run left behind.
func Publish(dir string, slos, overload *ebpf.Map) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating pin directory %s: %w (is bpffs mounted at its parent?)", dir, err)
	}
	for name, m := range map[string]*ebpf.Map{SLOsPin: slos, OverloadPin: overload} {
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing stale pin %s: %w", p, err)
		}
		if err := m.Pin(p); err != nil {
			return fmt.Errorf("pinning %s: %w", p, err)
		}
	}
	return nil
}

// Unpublish removes the pins (the maps live on while the exporter holds
// them).
func Unpublish(dir string) error {
	var errs []error
	for _, name := range []string{SLOsPin, OverloadPin} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
