package overload

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// pinRoot returns a fresh directory path under the host's bpffs, or skips
// (fails under SCX_SLO_LAB_REQUIRED=1) without root or bpffs.
func pinRoot(t testing.TB) string {
	t.Helper()
	return needs.BPFFSDir(t, "scx-slo-overload-test")
}

// exporterMaps stands in for a judging program's two maps: cgroup id ->
// slot, and the bit of that slot set to on.
func exporterMaps(t testing.TB, cgroupID uint64, slot uint32, on bool) (slos, bits *ebpf.Map) {
	t.Helper()
	slos, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 24, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	bits, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 16, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slos.Close(); bits.Close() })
	var entry [24]byte
	binary.NativeEndian.PutUint32(entry[16:], slot)
	if err := slos.Put(cgroupID, entry); err != nil {
		t.Fatal(err)
	}
	v := uint32(0)
	if on {
		v = 1
	}
	if err := bits.Put(slot, v); err != nil {
		t.Fatal(err)
	}
	return slos, bits
}

// TestReaderFollowsHeartbeatAndRepins: the reader accepts a beating
// state for longer than the bound, reports ErrStale within the bound
// once the heartbeat stops with the bit frozen at 1 (an exporter killed
// without unpinning), follows a new exporter's pins, and errors once the
// pins are removed.
func TestReaderFollowsHeartbeatAndRepins(t *testing.T) {
	dir := pinRoot(t)
	ctx := context.Background()
	const cg = 42
	slos, bits := exporterMaps(t, cg, 3, true)
	hb, err := StartHeartbeat(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := publishOnce(dir, slos, bits); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Overloaded(7); !errors.Is(err, ErrNoSLO) {
		t.Errorf("cgroup without an SLO: %v, want ErrNoSLO", err)
	}
	// Read for longer than the bound while the exporter beats.
	for end := time.Now().Add(StaleAfter + HeartbeatInterval); time.Now().Before(end); {
		on, err := r.Overloaded(cg)
		if err != nil || !on {
			t.Fatalf("live state read as %v, %v", on, err)
		}
		time.Sleep(5 * time.Millisecond) // the sidecar's poll interval
	}

	hb.Stop() // the exporter dies; its pins stay, bit at 1
	died := time.Now()
	for {
		_, err := r.Overloaded(cg)
		if errors.Is(err, ErrStale) {
			break
		}
		if err != nil {
			t.Fatalf("reading after the heartbeat stopped: %v", err)
		}
		if time.Since(died) > StaleAfter+time.Second {
			t.Fatalf("still following the frozen bit %v after the heartbeat stopped", time.Since(died))
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(died)
	t.Logf("stale %v after the heartbeat stopped (bound %v)", took.Round(time.Millisecond), StaleAfter)
	if took < StaleAfter-HeartbeatInterval {
		t.Errorf("stale after only %v: the bound is %v", took, StaleAfter)
	}
	// A reader started now (a sidecar started after the death) knows at once.
	late, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.Overloaded(cg); !errors.Is(err, ErrStale) {
		t.Errorf("a reader opened on dead pins: %v, want ErrStale", err)
	}
	late.Close()

	// A new exporter starts beating before it has maps to publish: the
	// dead one's frozen bit must not come back to life meanwhile.
	hb2, err := StartHeartbeat(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer hb2.Stop()
	var on bool
	if !eventually(PinRecheck+time.Second, func() bool {
		on, err = r.Overloaded(cg)
		return err != nil && !errors.Is(err, ErrStale)
	}) {
		t.Fatalf("between a new exporter's heartbeat and its maps: %v, %v; want the pins missing", on, err)
	}
	if on {
		t.Fatal("read the dead exporter's frozen bit under the new heartbeat")
	}
	// It publishes new maps (cg in slot 5, clear).
	slos2, bits2 := exporterMaps(t, cg, 5, false)
	if err := publishOnce(dir, slos2, bits2); err != nil {
		t.Fatal(err)
	}
	if !eventually(PinRecheck+time.Second, func() bool { on, err = r.Overloaded(cg); return err == nil && !on }) {
		t.Fatalf("the reader did not follow the new exporter's pins: %v, %v", on, err)
	}

	if err := Unpublish(dir); err != nil {
		t.Fatal(err)
	}
	if !eventually(PinRecheck+time.Second, func() bool { _, err = r.Overloaded(cg); return err != nil }) {
		t.Fatal("the reader still reads after the pins were removed")
	}
	if _, err := Open(dir); err == nil {
		t.Error("Open succeeded with no pins")
	}
}

func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// publishOnce publishes slos and bits in dir as the exporter's Publisher
// does.
func publishOnce(dir string, slos, bits *ebpf.Map) error {
	p, err := NewPublisher(dir)
	if err != nil {
		return err
	}
	_, err = p.Publish(slos, bits)
	return err
}
