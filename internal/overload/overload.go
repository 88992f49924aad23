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
	"sync"

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

// Publisher owns the published pins in one directory: the only writer
// of <dir>/slos and <dir>/overload. The exporter tells it which maps judge
// deadlines now (the tracer's or the scheduler's) and it re-pins only when
// those are other maps than the ones published.
type Publisher struct {
	dir string

	mu  sync.Mutex
	ids [2]ebpf.MapID // of the published slos and overload maps
}

// NewPublisher makes dir (a bpffs directory) if needed; nothing is pinned
// until Publish.
func NewPublisher(dir string) (*Publisher, error) {
	if err := pindir.Prepare(PinDirFlag, dir); err != nil {
		return nil, err
	}
	return &Publisher{dir: dir}, nil
}

// Publish pins slos and overload unless they are the maps already
// published, and reports whether it re-pinned. Each pin goes through a
// handle of its own: cilium/ebpf's Map.Pin on a map it already pinned
// elsewhere moves that pin, and the enforcer's pins (for
// --enforce.keep-pinned) must stay where they are. A pin is replaced by a
// rename, so readers always find one.
func (p *Publisher) Publish(slos, overload *ebpf.Map) (repinned bool, err error) {
	ids, err := mapIDs(slos, overload)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ids == p.ids {
		return false, nil
	}
	for _, pin := range []struct {
		name string
		m    *ebpf.Map
	}{{SLOsPin, slos}, {OverloadPin, overload}} {
		if err := pinAtomically(pin.m, filepath.Join(p.dir, pin.name)); err != nil {
			p.ids = [2]ebpf.MapID{} // half published: redo both next time
			return false, err
		}
	}
	p.ids = ids
	return true, nil
}

// Close removes the pins (the maps live on while the exporter holds them).
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = [2]ebpf.MapID{}
	return Unpublish(p.dir)
}

func mapIDs(slos, overload *ebpf.Map) ([2]ebpf.MapID, error) {
	var ids [2]ebpf.MapID
	for i, m := range []*ebpf.Map{slos, overload} {
		info, err := m.Info()
		if err != nil {
			return ids, fmt.Errorf("reading map info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return ids, fmt.Errorf("map %s: the kernel reports no id", info.Name)
		}
		ids[i] = id
	}
	return ids, nil
}

// pinAtomically pins a fresh handle of m (Clone: not pinned anywhere) at a
// temporary name and renames it over path. (bpffs refuses names with a
// dot, hence "_new" rather than a hidden file.)
func pinAtomically(m *ebpf.Map, path string) error {
	c, err := m.Clone()
	if err != nil {
		return err
	}
	defer c.Close()
	tmp := path + "_new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale %s: %w", tmp, err)
	}
	if err := c.Pin(tmp); err != nil {
		return fmt.Errorf("pinning %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publishing %s: %w", path, err)
	}
	return nil
}

// Unpublish removes the pins in dir (the maps live on while the exporter
// holds them).
func Unpublish(dir string) error {
	var errs []error
	for _, name := range []string{SLOsPin, OverloadPin, HeartbeatPin} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
