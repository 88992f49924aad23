package overload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// ErrNoSLO means the cgroup has no SLO (no slot): never overloaded.
var ErrNoSLO = errors.New("cgroup has no SLO")

// Reader reads one cgroup's bit from the pinned maps.
type Reader struct {
	dir      string
	cgroupID uint64
	slos     *ebpf.Map
	overload *ebpf.Map
	mem      *ebpf.Memory

	mu       sync.Mutex
	slot     uint32
	hasSlot  bool
	resolved time.Time
}

// SlotRefresh is how often the reader re-resolves its slot: slots change
// only when the SLO config or the cgroup changes.
const SlotRefresh = time.Second

// Open opens the pins in dir for the cgroup with id cgroupID.
func Open(dir string, cgroupID uint64) (*Reader, error) {
	r := &Reader{dir: dir, cgroupID: cgroupID}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// open (re)opens both pins and maps the overload array.
func (r *Reader) open() error {
	slos, ov, mem, err := openPins(r.dir)
	if err != nil {
		return err
	}
	if r.slos != nil {
		r.Close()
	}
	r.slos, r.overload, r.mem = slos, ov, mem
	return nil
}

func openPins(dir string) (*ebpf.Map, *ebpf.Map, *ebpf.Memory, error) {
	slos, err := ebpf.LoadPinnedMap(filepath.Join(dir, SLOsPin), nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening %s: %w", filepath.Join(dir, SLOsPin), err)
	}
	ov, err := ebpf.LoadPinnedMap(filepath.Join(dir, OverloadPin), nil)
	if err != nil {
		slos.Close()
		return nil, nil, nil, fmt.Errorf("opening %s: %w", filepath.Join(dir, OverloadPin), err)
	}
	mem, err := ov.Memory()
	if err != nil {
		slos.Close()
		ov.Close()
		return nil, nil, nil, fmt.Errorf("mapping %s: %w", filepath.Join(dir, OverloadPin), err)
	}
	return slos, ov, mem, nil
}

// repinned reports whether the exporter pinned other maps since we opened
// ours (it re-publishes when the scheduler attaches or detaches).
func (r *Reader) repinned() bool {
	m, err := ebpf.LoadPinnedMap(filepath.Join(r.dir, OverloadPin), nil)
	if err != nil {
		return false // keep reading what we have
	}
	defer m.Close()
	a, errA := m.Info()
	b, errB := r.overload.Info()
	if errA != nil || errB != nil {
		return false
	}
	idA, _ := a.ID()
	idB, _ := b.ID()
	return idA != idB
}

// Close releases the maps.
func (r *Reader) Close() error {
	return errors.Join(r.slos.Close(), r.overload.Close())
}

// Overloaded reads the bit: one memory load, plus a map lookup once per
// SlotRefresh.
func (r *Reader) Overloaded() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.resolved) > SlotRefresh {
		if err := r.resolve(); err != nil {
			return false, err
		}
	}
	if !r.hasSlot {
		return false, ErrNoSLO
	}
	var b [4]byte
	if _, err := r.mem.ReadAt(b[:], int64(r.slot)*elemStride(r.overload)); err != nil {
		return false, err
	}
	return binary.NativeEndian.Uint32(b[:]) != 0, nil
}

func (r *Reader) resolve() error {
	if r.repinned() {
		if err := r.open(); err != nil {
			return err
		}
	}
	var e slomaps.Entry
	err := r.slos.Lookup(r.cgroupID, &e)
	r.resolved = time.Now()
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		r.hasSlot = false
		return nil
	}
	if err != nil {
		return err
	}
	r.slot = e.Slot
	r.hasSlot = true
	return nil
}

// elemStride is the distance between array elements in the mapping: the
// kernel rounds each array value up to 8 bytes, so slot i of a u32 array
// is at 8*i, not 4*i.
func elemStride(m *ebpf.Map) int64 {
	return int64(m.ValueSize()+7) &^ 7
}
