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
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

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

// HeartbeatInterval is how often the exporter rewrites the heartbeat;
// StaleAfter is how long readers accept an unchanged heartbeat. The
// margin (eight beats) covers an exporter briefly starved of CPU, which
// is likely exactly when cgroups are overloaded: failing open then would
// stop shedding when it matters.
const (
	HeartbeatInterval = 250 * time.Millisecond
	StaleAfter        = 2 * time.Second
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
		if err := pin(dir, name, m); err != nil {
			return err
		}
	}
	return nil
}

// pin pins m as dir/name, replacing what is there.
func pin(dir, name string, m *ebpf.Map) error {
	p := filepath.Join(dir, name)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale pin %s: %w", p, err)
	}
	if err := m.Pin(p); err != nil {
		return fmt.Errorf("pinning %s: %w", p, err)
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

// Heartbeat is the exporter's side of the liveness word.
type Heartbeat struct {
	m    *ebpf.Map
	mem  *ebpf.Memory
	stop context.CancelFunc
	done chan struct{}
}

// StartHeartbeat creates the heartbeat map, beats once, pins it in dir
// (replacing a dead exporter's) and beats every HeartbeatInterval until
// ctx ends or Stop. Errors from pindir.Prepare wrap pindir.ErrUnsafe when
// the directory is refused.
//
// A dead exporter's slos and overload pins are removed first: under a
// fresh heartbeat their frozen bits would look live until Publish
// replaces them.
func StartHeartbeat(ctx context.Context, dir string) (*Heartbeat, error) {
	if err := pindir.Prepare(PinDirFlag, dir); err != nil {
		return nil, err
	}
	if err := Unpublish(dir); err != nil {
		return nil, fmt.Errorf("removing stale pins: %w", err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "scx_slo_beat", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		return nil, fmt.Errorf("creating the heartbeat map: %w", err)
	}
	mem, err := m.Memory()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("mapping the heartbeat map: %w", err)
	}
	h := &Heartbeat{m: m, mem: mem, done: make(chan struct{})}
	h.beat()
	if err := pin(dir, HeartbeatPin, m); err != nil {
		m.Close()
		return nil, err
	}
	ctx, h.stop = context.WithCancel(ctx)
	go h.run(ctx)
	return h, nil
}

func (h *Heartbeat) run(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.beat()
		}
	}
}

// beat writes the monotonic clock: one aligned 8-byte store.
func (h *Heartbeat) beat() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], monotonicNs())
	_, _ = h.mem.WriteAt(b[:], 0)
}

// Stop ends the beating and releases the map; the pin, if still there,
// goes stale. Safe on nil.
func (h *Heartbeat) Stop() {
	if h == nil {
		return
	}
	h.stop()
	<-h.done
	h.m.Close()
}

func monotonicNs() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
