package runqueue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/slomaps"
	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

func TestMain(m *testing.M) {
	workload.Main()
	os.Exit(m.Run())
}

func init() { workload.Register("bounce", runBounce) }

// runBounce keeps two threads for its lifetime; for each number n read
// from stdin they bounce a byte n times over two pipes, then it prints a
// line. It ends at the end of stdin.
func runBounce() (any, error) {
	ping, err := startBouncer()
	if err != nil {
		return nil, err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(in.Text())
		if err != nil {
			return nil, fmt.Errorf("round trips %q: %w", in.Text(), err)
		}
		if err := ping(n); err != nil {
			return nil, err
		}
		fmt.Println("done")
	}
	return struct{}{}, in.Err()
}

// startBouncer starts two locked threads that never exit and returns a
// function that has them bounce a byte n times.
func startBouncer() (func(n int) error, error) {
	var ab, ba [2]int
	if err := syscall.Pipe(ab[:]); err != nil {
		return nil, err
	}
	if err := syscall.Pipe(ba[:]); err != nil {
		return nil, err
	}
	thread := func(jobs chan int, errs chan error, read, write int, readFirst bool) {
		runtime.LockOSThread()
		buf := make([]byte, 1)
		for n := range jobs {
			var err error
			for i := 0; i < n && err == nil; i++ {
				if readFirst {
					_, err = syscall.Read(read, buf)
				}
				if err == nil {
					_, err = syscall.Write(write, buf)
				}
				if err == nil && !readFirst {
					_, err = syscall.Read(read, buf)
				}
			}
			errs <- err
		}
	}
	pingJobs, echoJobs, errs := make(chan int), make(chan int), make(chan error, 2)
	go thread(pingJobs, errs, ba[0], ab[1], false)
	go thread(echoJobs, errs, ab[0], ba[1], true)
	return func(n int) error {
		echoJobs <- n
		pingJobs <- n
		return errors.Join(<-errs, <-errs)
	}, nil
}

// TestSLOAddedLaterIsJudged: a task whose cgroup has no SLO remembers
// that, to skip the slos lookup on each switch; writing an SLO through
// slomaps must end that for the same, still running, task.
func TestSLOAddedLaterIsJudged(t *testing.T) {
	tr := loadForTest(t)
	t.Cleanup(func() { tr.Close() })
	cgs := exportertest.NewCgroups(t, "auto")
	path := cgs.Make(t, "bounce")
	id, err := cgroupfs.ID(cgs.H.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	_, stdin, lines := startWorkload(t, cgs, path, "bounce")
	bounce := func(n int) {
		t.Helper()
		if _, err := io.WriteString(stdin, strconv.Itoa(n)+"\n"); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || lines.Text() != "done" {
			t.Fatalf("bounce workload: %q, %v", lines.Text(), lines.Err())
		}
	}
	maps := tr.Maps()

	bounce(2000)
	st, ok, err := maps.StatsOf(id)
	if err != nil || !ok {
		t.Fatalf("stats of %s (%d): ok=%v, %v", path, id, ok, err)
	}
	if st.Count == 0 || st.Deadlines != 0 {
		t.Fatalf("%s without an SLO: %d waits recorded, %d judged; want some, none", path, st.Count, st.Deadlines)
	}

	if err := maps.SyncSLOs(map[uint64]slomaps.Entry{id: slomaps.NewEntry(1, 0.99, 1, 0)}); err != nil {
		t.Fatal(err)
	}
	bounce(2000)
	if st, _, err = maps.StatsOf(id); err != nil {
		t.Fatal(err)
	}
	if st.Deadlines < 1000 { // 2000 round trips wake the two threads up to 4000 times
		t.Fatalf("%s after its SLO was added: %d wakeups judged, want at least 1000", path, st.Deadlines)
	}
}

// TestHistogramInSlots: waits recorded in the per-CPU histogram slots add
// up with the cgroup's stats (the histogram sums to the count, totals
// only grow), and removing the cgroup frees its slots.
func TestHistogramInSlots(t *testing.T) {
	tr := loadForTest(t)
	t.Cleanup(func() { tr.Close() })
	cgs := exportertest.NewCgroups(t, "auto")
	path, id := makeWithFreeSlots(t, tr, cgs, "bounce")
	cmd, stdin, lines := startWorkload(t, cgs, path, "bounce")
	maps := tr.Maps()
	var last uint64
	for round := 0; round < 3; round++ {
		if _, err := io.WriteString(stdin, "2000\n"); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() || lines.Text() != "done" {
			t.Fatalf("bounce workload: %q, %v", lines.Text(), lines.Err())
		}
		st, ok, err := maps.StatsOf(id)
		if err != nil || !ok {
			t.Fatalf("stats of %s (%d): ok=%v, %v", path, id, ok, err)
		}
		var inHist uint64
		for _, n := range st.Hist {
			inHist += n
		}
		if inHist != st.Count || st.Count < last+1000 || st.SumNs == 0 {
			t.Fatalf("round %d: count %d (before %d), histogram holds %d, sum %d ns: want the histogram to hold the count, at least 1000 more waits than before, a sum",
				round, st.Count, last, inHist, st.SumNs)
		}
		last = st.Count
	}
	slots, err := tr.Maps().Slots()
	if err != nil {
		t.Fatal(err)
	}
	if slots[id] == nil || slots[id].Count == 0 {
		t.Fatalf("%s: no waits recorded in the histogram slots (%+v)", path, slots[id])
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cgs.Remove(path); err != nil {
		t.Fatal(err)
	}
	if held := heldHistSlots(t, tr, id); held != 0 {
		t.Fatalf("%s removed: %d histogram slots still held by it", path, held)
	}
}
