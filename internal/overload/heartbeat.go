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

	"github.com/scx-slo/scx-slo/internal/monoclock"
	"github.com/scx-slo/scx-slo/internal/pindir"
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
	if err := pinFresh(dir, HeartbeatPin, m); err != nil {
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

var monotonicNs = monoclock.Now

// pinFresh pins m as dir/name, replacing what is there.
func pinFresh(dir, name string, m *ebpf.Map) error {
	p := filepath.Join(dir, name)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale pin %s: %w", p, err)
	}
	if err := m.Pin(p); err != nil {
		return fmt.Errorf("pinning %s: %w", p, err)
	}
	return nil
}
