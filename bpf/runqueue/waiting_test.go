package runqueue

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// spinners is how many threads runSpinners keeps runnable on one CPU.
const spinners = 4

func init() { workload.Register("spinners", runSpinners) }

// runSpinners answers each stdin line "spin" by starting spinners threads
// pinned to CPU 0 that spin until the line "stop", then block; it prints
// "ok" after each line and ends at the end of stdin.
func runSpinners() (any, error) {
	var stop atomic.Bool
	var running sync.WaitGroup
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "spin":
			stop.Store(false)
			for i := 0; i < spinners; i++ {
				running.Add(1)
				go func() {
					runtime.LockOSThread()
					var cpu0 unix.CPUSet
					cpu0.Set(0)
					if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
						panic(err)
					}
					for !stop.Load() {
					}
					running.Done()
					select {} // blocks this thread for good: it is locked
				}()
			}
		case "stop":
			stop.Store(true)
			running.Wait()
		default:
			return nil, fmt.Errorf("spinners: unknown command %q", in.Text())
		}
		fmt.Println("ok")
	}
	return struct{}{}, in.Err()
}

// TestWaitingCountsRunnableTasks: spinners threads of one cgroup on one
// CPU leave spinners-1 of them runnable and not running at any moment,
// counted by the per-CPU wait slots; once they block, none. A wait must
// end in the slot it was counted in, or the count drifts.
func TestWaitingCountsRunnableTasks(t *testing.T) {
	tr := loadForTest(t)
	t.Cleanup(func() { tr.Close() })
	cgs := exportertest.NewCgroups(t, "auto")
	path, id := makeWithFreeSlots(t, tr, cgs, "spinners")
	_, stdin, lines := startWorkload(t, cgs, path, "spinners")
	send := func(c string) {
		t.Helper()
		if _, err := io.WriteString(stdin, c+"\n"); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || lines.Text() != "ok" {
			t.Fatalf("spinners workload after %q: %q, %v", c, lines.Text(), lines.Err())
		}
	}
	maps := tr.Maps()
	// waitFor polls the cgroup's waiting count until ok; the last
	// readings go into the failure.
	waitFor := func(want string, ok func(int64) bool, inSlots bool) {
		t.Helper()
		var seen []int64
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			st, found, err := maps.StatsOf(id)
			if err != nil {
				t.Fatal(err)
			}
			slots, err := tr.Maps().Slots()
			if err != nil {
				t.Fatal(err)
			}
			if found && ok(st.Waiting) && (!inSlots || slots[id] != nil && slots[id].Waiting > 0) {
				return
			}
			seen = append(seen, st.Waiting)
			if len(seen) > 20 {
				seen = seen[1:]
			}
			runtime.Gosched()
		}
		t.Fatalf("%s: waiting tasks never %s (in slots: %v); last readings %v", path, want, inSlots, seen)
	}

	// The process's other threads (the Go runtime's) may wait too, now
	// and then: at least the spinners beside the running one wait.
	send("spin")
	waitFor(fmt.Sprintf(">= %d", spinners-1), func(n int64) bool { return n >= spinners-1 }, true)
	send("stop")
	waitFor("0", func(n int64) bool { return n == 0 }, false)
}

// TestMovedWaiterTakesNoSlot: tasks waiting in a cgroup when they are
// moved out and it is removed end their waits charged to it; that must
// not give the removed cgroup a histogram slot, which no cgroup_rmdir
// would free again.
func TestMovedWaiterTakesNoSlot(t *testing.T) {
	tr := loadForTest(t)
	t.Cleanup(func() { tr.Close() })
	cgs := exportertest.NewCgroups(t, "auto")
	from, fromID := makeWithFreeSlots(t, tr, cgs, "from")
	to, toID := makeWithFreeSlots(t, tr, cgs, "to")
	cmd, stdin, lines := startWorkload(t, cgs, from, "spinners")
	if _, err := io.WriteString(stdin, "spin\n"); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() || lines.Text() != "ok" {
		t.Fatalf("spinners workload: %q, %v", lines.Text(), lines.Err())
	}
	// slotCount is what id's histogram slots hold.
	slotCount := func(id uint64) uint64 {
		t.Helper()
		slots, err := tr.Maps().Slots()
		if err != nil {
			t.Fatal(err)
		}
		if slots[id] == nil {
			return 0
		}
		return slots[id].Count
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
		}
	}
	until(from+" has waits in its slot", func() bool { return slotCount(fromID) > 0 })

	// spinners-1 of the threads wait in from as they move.
	if err := cgs.Move(to, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := cgs.Remove(from); err != nil {
		t.Fatal(err)
	}
	until(to+" has 50 waits in its slot", func() bool { return slotCount(toID) >= 50 })
	if held := heldHistSlots(t, tr, fromID); held != 0 {
		t.Fatalf("%s removed: %d histogram slots held by it", from, held)
	}
}

// heldHistSlots counts the per-CPU histogram slots cgroup id holds.
func heldHistSlots(t *testing.T, tr *Tracer, id uint64) int {
	t.Helper()
	held := 0
	err := slomaps.ForEach(tr.objs.HistSlots, func(v *slomaps.HistSlot) {
		if v.Cgid == id {
			held++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// slotHash is slot_hash in runqueue.bpf.c.
func slotHash(id uint64, n uint32) uint32 {
	return uint32((id*0x9E3779B97F4A7C15)>>56) & (n - 1)
}

// makeWithFreeSlots makes a cgroup whose waiting and histogram slots are
// free on every CPU, so that a test's waits are counted in slots rather
// than falling back to the stats because some other cgroup on the host
// holds them: it makes cgroups name-0, name-1, ... until one hashes to
// free slots.
func makeWithFreeSlots(t *testing.T, tr *Tracer, cgs *exportertest.Cgroups, name string) (string, uint64) {
	t.Helper()
	var waitPerCPU, histPerCPU uint32
	if err := tr.objs.WaitSlotsPerCpu.Get(&waitPerCPU); err != nil {
		t.Fatal(err)
	}
	if err := tr.objs.HistSlotsPerCpu.Get(&histPerCPU); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		path := cgs.Make(t, fmt.Sprintf("%s-%d", name, i))
		id, err := cgroupfs.ID(cgs.H.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		w, h := slotHash(id, waitPerCPU), slotHash(id, histPerCPU)
		free := true
		var k uint32
		if err := slomaps.ForEach(tr.objs.WaitingSlots, func(v *slomaps.WaitingSlot) {
			if k%waitPerCPU == w && v.Cgid != id && v.Waiting != 0 {
				free = false
			}
			k++
		}); err != nil {
			t.Fatal(err)
		}
		k = 0
		if err := slomaps.ForEach(tr.objs.HistSlots, func(v *slomaps.HistSlot) {
			if k%histPerCPU == h && v.Cgid != 0 && v.Cgid != id {
				free = false
			}
			k++
		}); err != nil {
			t.Fatal(err)
		}
		if free {
			return path, id
		}
	}
	t.Fatalf("50 cgroups made, none with free slots on every CPU")
	return "", 0
}

// startWorkload starts the named workload program (internal/testbed/workload)
// in the cgroup at path and returns it, its stdin and its output lines; it is
// killed when the test ends.
func startWorkload(t *testing.T, cgs *exportertest.Cgroups, path, name string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	cmd, err := workload.CommandWith(name, -1, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if err := cgs.Move(path, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return cmd, stdin, bufio.NewScanner(stdout)
}
