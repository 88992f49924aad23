// Package overload publishes each SLO cgroup's overload bit for readers on
// the node, and reads it back. The exporter pins three BPF maps in bpffs:
//
//	<dir>/overload   ARRAY, BPF_F_MMAPABLE: one u32 per slot, 1 = overloaded;
//	                 the kernel lays array values 8 bytes apart, so slot i is
//	                 at byte offset 8*i of the mapping
//	<dir>/slos       HASH: cgroup id (u64) -> struct slo_entry (slot at offset 16)
//	<dir>/heartbeat  ARRAY, BPF_F_MMAPABLE, one u64: the exporter's
//	                 CLOCK_MONOTONIC time in ns, rewritten every
//	                 HeartbeatInterval while the exporter lives
//
// A reader looks its cgroup's slot up in slos once in a while and reads
// the bit through a shared memory mapping of overload: no syscall per read,
// so polling every few milliseconds is free. The same two maps serve both
// modes: the tracer judges deadlines in observe mode, the scheduler while
// it is attached, and both write the one pinned array.
//
// The heartbeat is the published state's liveness. An exporter killed
// without cleaning up (SIGKILL, OOM, a panic) leaves its pins behind with
// every bit frozen, possibly at 1; a reader that sees the heartbeat word
// unchanged for StaleAfter reports ErrStale instead of a bit, so shedding
// fails open.
//
// Permissions: pins are created 0600 (root) in a directory created 0700
// and refused when another user owns it or may write it (internal/pindir).
// Mapping the arrays needs a read-write open (the kernel refuses to mmap a
// map opened read-only), so readers run as root or with CAP_BPF and DAC
// access to the pins; readers without that use the exporter's /overload
// HTTP endpoint instead.
package overload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/scx-slo/scx-slo/internal/pindir"
)

// Pin file names inside the pin directory.
const (
	OverloadPin  = "overload"
	SLOsPin      = "slos"
	HeartbeatPin = "heartbeat"
	// DefaultDir is where the exporter pins them.
	DefaultDir = "/sys/fs/bpf/scx-slo-state"
)

// PinDirFlag names the pin directory in errors.
const PinDirFlag = "--overload.pin-dir"

// Publish pins slos and overload in dir, replacing stale pins a previous
// run left behind.
func Publish(dir string, slos, overload *ebpf.Map) error {
	if err := pindir.Prepare(PinDirFlag, dir); err != nil {
		return err
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
	for _, name := range []string{SLOsPin, OverloadPin, HeartbeatPin} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
