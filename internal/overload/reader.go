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

// ErrStale means the published state stopped beating: the exporter died
// without removing its pins, or is stopped. Its bits say nothing.
var ErrStale = errors.New("published overload state is stale")

// SlotRefresh is how often the reader re-resolves a cgroup's slot: slots
// change only when the SLO config or the cgroup changes.
const SlotRefresh = time.Second

// PinRecheck is how often the reader checks that the pins it holds are
// still the ones in the directory: the exporter re-pins when the
// scheduler attaches or detaches, and a restarted exporter pins new maps
// (the old ones live on, frozen, while a reader holds them).
const PinRecheck = time.Second

// Reader reads overload bits from the pins in one directory. It is the
// one place that follows re-pins and judges the heartbeat; safe for
// concurrent use.
type Reader struct {
	dir string

	mu      sync.Mutex
	pins    *pinSet // nil while the pins cannot be opened
	checked time.Time
	openErr error // of the last recheck
	slots   map[uint64]slot
	beat    uint64    // last heartbeat word seen
	beatAt  time.Time // when it was written, by this reader's clock
}

type slot struct {
	n        uint32
	ok       bool // false: the cgroup has no SLO
	resolved time.Time
}

// Open opens the pins in dir; it fails if they are not all there.
func Open(dir string) (*Reader, error) {
	r := &Reader{dir: dir}
	if err := r.recheck(time.Now()); err != nil {
		return nil, err
	}
	return r, nil
}

// OpenLazy returns a Reader that opens the pins on its first read and
// retries at most once per PinRecheck while they are missing.
func OpenLazy(dir string) *Reader { return &Reader{dir: dir} }

// Close releases the maps.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop()
	return nil
}

// Overloaded reads cgroupID's bit: a memory load for the heartbeat and one
// for the bit, plus a map lookup per SlotRefresh and a pin check per
// PinRecheck. It returns ErrNoSLO for a cgroup without an SLO and an error
// wrapping ErrStale when the heartbeat stopped.
func (r *Reader) Overloaded(cgroupID uint64) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.checked) >= PinRecheck {
		r.openErr = r.recheck(now)
	}
	if r.openErr != nil {
		return false, r.openErr
	}
	if err := r.fresh(now); err != nil {
		return false, err
	}
	s, err := r.slot(cgroupID, now)
	if err != nil {
		return false, err
	}
	if !s.ok {
		return false, ErrNoSLO
	}
	var b [4]byte
	if _, err := r.pins.bits.ReadAt(b[:], int64(s.n)*elemStride(r.pins.overload)); err != nil {
		return false, err
	}
	return binary.NativeEndian.Uint32(b[:]) != 0, nil
}

// recheck opens the pins, or compares them with the ones held and swaps
// when the exporter re-pinned.
func (r *Reader) recheck(now time.Time) error {
	r.checked = now
	p, err := loadPins(r.dir)
	if err != nil {
		r.drop()
		return err
	}
	if r.pins != nil && p.ids == r.pins.ids {
		p.close()
		return nil
	}
	if err := p.mapMemory(); err != nil {
		p.close()
		r.drop()
		return err
	}
	r.drop()
	r.pins = p
	// Until the word changes, trust its own timestamp, but never into the
	// future: a reader whose monotonic clock differs (another time
	// namespace) then waits at most one beat or StaleAfter.
	r.beat = p.heartbeat()
	age := time.Duration(int64(monotonicNs() - r.beat))
	r.beatAt = now.Add(-max(age, 0))
	return nil
}

// fresh checks the heartbeat: it counts as written when this reader
// first sees it change.
func (r *Reader) fresh(now time.Time) error {
	if v := r.pins.heartbeat(); v != r.beat {
		r.beat, r.beatAt = v, now
		return nil
	}
	if age := now.Sub(r.beatAt); age > StaleAfter {
		return fmt.Errorf("%w: %s unchanged for %v (bound %v): the exporter is gone or stopped",
			ErrStale, filepath.Join(r.dir, HeartbeatPin), age.Round(time.Millisecond), StaleAfter)
	}
	return nil
}

func (r *Reader) slot(cgroupID uint64, now time.Time) (slot, error) {
	if s, ok := r.slots[cgroupID]; ok && now.Sub(s.resolved) < SlotRefresh {
		return s, nil
	}
	var e slomaps.Entry
	err := r.pins.slos.Lookup(cgroupID, &e)
	s := slot{resolved: now}
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
	case err != nil:
		return slot{}, err
	default:
		s.n, s.ok = e.Slot, true
	}
	if r.slots == nil {
		r.slots = map[uint64]slot{}
	}
	r.slots[cgroupID] = s
	return s, nil
}

func (r *Reader) drop() {
	if r.pins != nil {
		r.pins.close()
	}
	r.pins, r.slots = nil, nil
}

// pinSet is one opening of the three pins.
type pinSet struct {
	slos, overload, beat *ebpf.Map
	ids                  [3]ebpf.MapID
	bits, beatMem        *ebpf.Memory
}

func loadPins(dir string) (*pinSet, error) {
	p := &pinSet{}
	for i, x := range []struct {
		name string
		m    **ebpf.Map
	}{{SLOsPin, &p.slos}, {OverloadPin, &p.overload}, {HeartbeatPin, &p.beat}} {
		path := filepath.Join(dir, x.name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		*x.m = m
		info, err := m.Info()
		if err != nil {
			p.close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		p.ids[i], _ = info.ID()
	}
	return p, nil
}

func (p *pinSet) mapMemory() error {
	var err error
	if p.bits, err = p.overload.Memory(); err != nil {
		return fmt.Errorf("mapping %s: %w", OverloadPin, err)
	}
	if p.beatMem, err = p.beat.Memory(); err != nil {
		return fmt.Errorf("mapping %s: %w", HeartbeatPin, err)
	}
	return nil
}

func (p *pinSet) heartbeat() uint64 {
	var b [8]byte
	if _, err := p.beatMem.ReadAt(b[:], 0); err != nil {
		return 0
	}
	return binary.NativeEndian.Uint64(b[:])
}

func (p *pinSet) close() {
	for _, m := range []*ebpf.Map{p.slos, p.overload, p.beat} {
		if m != nil {
			m.Close()
		}
	}
}

// elemStride is the distance between array elements in the mapping: the
// kernel rounds each array value up to 8 bytes, so slot i of a u32 array
// is at 8*i, not 4*i.
func elemStride(m *ebpf.Map) int64 {
	return int64(m.ValueSize()+7) &^ 7
}
