package enforcer

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// TestGuestWaitSlots: the scheduler keeps a cgroup's waiting count and
// wait histogram in per-CPU slots (bpf/include/wait_slots.h), and what
// userspace reads adds them back: a 1 ms probe in an SLO cgroup beside a
// hog per CPU leaves its waits in the slots, its stats read whole (the
// histogram holds the count, at least as many waits as the probe made),
// no task counted as waiting once it exited, and removing the cgroup
// frees every slot it held.
func TestGuestWaitSlots(t *testing.T) {
	inGuest(t)
	n := runtime.NumCPU()
	e := attached(t)
	lat, be := newCgroup(t, "slotsprobe"), newCgroup(t, "slotsbe")
	sloFor(t, e, map[uint64]slomaps.Entry{lat.id: slomaps.NewEntry(uint64(time.Millisecond), 0.99, 100, 0)})
	rep, _ := phase(t, lat, be, n, 2*time.Second)

	m, ok := e.Maps()
	if !ok || m.Slots == nil {
		t.Fatalf("attached %v, slot reader %v: want the scheduler's per-CPU slots", ok, m.Slots != nil)
	}
	slots, err := m.Slots()
	if err != nil {
		t.Fatal(err)
	}
	all, err := m.ReadStats()
	if err != nil {
		t.Fatal(err)
	}
	inSlots, st := slots[lat.id], all[lat.id]
	if inSlots == nil || inSlots.Count == 0 || st == nil {
		t.Fatalf("probe cgroup: slots %+v, stats %+v: want its waits in the slots", inSlots, st)
	}
	var inHist uint64
	for _, c := range st.Hist {
		inHist += c
	}
	t.Logf("probe: %d wakeups; kernel: %d waits (%d of them in per-CPU slots), %d judged, %d waiting",
		len(rep.LatenessNs), st.Count, inSlots.Count, st.Deadlines, st.Waiting)
	if inHist != st.Count || st.Count < uint64(len(rep.LatenessNs)) || st.Count < inSlots.Count {
		t.Errorf("stats read: count %d, histogram holds %d, slots %d, probe wakeups %d: want the histogram to hold the count, which covers the slots and every wakeup",
			st.Count, inHist, inSlots.Count, len(rep.LatenessNs))
	}
	if st.Deadlines == 0 {
		t.Error("no deadline judged for the SLO cgroup")
	}
	if st.Waiting != 0 {
		t.Errorf("%d tasks of the exited probe still counted as waiting", st.Waiting)
	}

	if err := os.Remove(lat.path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed cgroup's histogram slots to be freed", 5*time.Second, func() bool {
		slots, err := m.Slots()
		return err == nil && slots[lat.id] == nil
	})
}
