package enforcer

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// TestGuestOverloadBit: a cgroup whose budget cannot be met under load
// gets its overload bit quickly and loses it once the load is gone.
func TestGuestOverloadBit(t *testing.T) {
	inGuest(t)
	e := attached(t)
	m, _ := e.Maps()
	tight, rival := newCgroup(t, "tight"), newCgroup(t, "rival")
	const slot = 3
	// The probe's cgroup: 1 ms budget at importance 1; the bit sets above
	// 20% misses and clears below 10%. The rival hogs' cgroup has a 100 us
	// budget at importance 1000, so while it runs the probe's deadlines
	// come last and it misses nearly every one.
	if err := m.SyncSLOs(map[uint64]slomaps.Entry{
		tight.id: slomaps.NewEntry(uint64(time.Millisecond), 0.8, 1, slot),
		rival.id: slomaps.NewEntry(uint64(100*time.Microsecond), 0.8, 1000, slot+1),
	}); err != nil {
		t.Fatal(err)
	}
	probe := start(t, "probe", tight, map[string]string{"RUN_FOR": "16s", "PROBE_PERIOD": "1ms", "PROBE_WORK": "100us"})
	time.Sleep(500 * time.Millisecond)
	if on, _ := m.Overloaded(slot); on {
		t.Fatal("overload bit set before any load")
	}
	began := time.Now()
	var hogs []*proc
	for i := 0; i < 4; i++ {
		hogs = append(hogs, start(t, "hog", rival, map[string]string{"RUN_FOR": "6s"}))
	}
	setAfter := pollBit(t, m, slot, true, 6*time.Second)
	if setAfter >= 0 {
		setAfter = time.Since(began)
	}
	for _, h := range hogs {
		var r workload.HogReport
		if err := h.wait(&r); err != nil {
			t.Fatal(err)
		}
	}
	loadGone := time.Now()
	clearAfter := pollBit(t, m, slot, false, 8*time.Second)
	var rep workload.ProbeReport
	if err := probe.wait(&rep); err != nil {
		t.Fatal(err)
	}
	st, _ := m.ReadStats()
	s := st[tight.id]
	t.Logf("bit set %s after the load started; cleared %s after it stopped; judged %d, missed %d",
		setAfter, clearAfter, s.Deadlines, s.Misses)
	writeResult(t, "overload", map[string]any{"set_after_ns": setAfter, "clear_after_ns": clearAfter,
		"began": began, "load_gone": loadGone, "judged": s.Deadlines, "misses": s.Misses})
	if setAfter < 0 {
		t.Error("overload bit never set under load")
	}
	if clearAfter < 0 {
		t.Error("overload bit did not clear within 8 s after the load stopped")
	}
}

// pollBit polls the overload bit every millisecond until it equals want;
// returns how long that took, or -1.
func pollBit(t *testing.T, m slomaps.Maps, slot uint32, want bool, within time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for time.Since(begin) < within {
		on, err := m.Overloaded(slot)
		if err != nil {
			t.Fatal(err)
		}
		if on == want {
			return time.Since(begin)
		}
		time.Sleep(time.Millisecond)
	}
	return -1
}

// TestGuestChurn: 2,000 cgroups created and removed and a fork storm
// while the scheduler runs: it stays enabled and its per-cgroup maps hold
// no entry of a removed cgroup.
func TestGuestChurn(t *testing.T) {
	inGuest(t)
	e := attached(t)
	const n = 2000
	ids := make(map[uint64]string, n)
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join("/sys/fs/cgroup", fmt.Sprintf("churn%04d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		ids[st.Ino] = p
		paths = append(paths, p)
	}
	// Fork storm: short processes in every 10th cgroup, 20 at a time.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := 0; i < n; i += 10 {
		fd, err := syscall.Open(paths[i], syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer syscall.Close(fd)
			cmd, err := workload.Command("hog", fd, map[string]string{"RUN_FOR": "5ms"})
			if err == nil {
				err = cmd.Run()
			}
			if err != nil {
				t.Errorf("fork storm: %v", err)
			}
		}()
	}
	wg.Wait()
	start := time.Now()
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("created %d cgroups, ran %d processes, removed them (rmdir took %s)", n, n/10, time.Since(start))
	if s := schedExt(t, "state"); s != "enabled" || !e.Attached() {
		t.Fatalf("after churn: state %q, attached %v, exit %+v", s, e.Attached(), e.LastExit())
	}
	// cgroup removal is asynchronous (css offline work); give it a moment.
	waitFor(t, "per-cgroup maps to drop removed cgroups", 10*time.Second, func() bool {
		return staleEntries(t, e, ids) == 0
	})
}

// staleEntries counts entries of removed cgroups in the scheduler's
// per-cgroup maps keyed by id (cg_ctxs is cgroup local storage: it goes
// with the cgroup).
func staleEntries(t *testing.T, e *Enforcer, removed map[uint64]string) int {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	stale := 0
	for _, m := range []*ebpf.Map{e.cur.maps.CgroupStats} {
		it := m.Iterate()
		var id uint64
		var val []byte
		for it.Next(&id, &val) {
			if _, gone := removed[id]; gone {
				stale++
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return stale
}
