package exportertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/cgroupfs"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// Cgroups makes real cgroups under a per-test parent and removes them (and
// moves their tasks out) when the test ends.
type Cgroups struct {
	H      cgroupfs.Hierarchy
	Parent string // path of the per-test parent, relative to the root
	made   []string
}

// NewCgroups creates the per-test parent in the hierarchy mode selects
// ("auto", "v2", "v1"), or skips if that hierarchy is not mounted.
func NewCgroups(t testing.TB, mode string) *Cgroups {
	t.Helper()
	h, err := cgroupfs.Detect("/sys/fs/cgroup", mode)
	if err != nil {
		needs.Part(t, "the "+mode+" cgroup hierarchy", err)
	}
	c := &Cgroups{H: h, Parent: fmt.Sprintf("/scx-slo-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	if err := os.Mkdir(h.Dir(c.Parent), 0o755); err != nil {
		t.Fatal(err)
	}
	if h.V2 {
		// Let children have cpu.weight where the controller is available.
		_ = os.WriteFile(filepath.Join(h.Root, "cgroup.subtree_control"), []byte("+cpu"), 0)
		_ = os.WriteFile(filepath.Join(h.Dir(c.Parent), "cgroup.subtree_control"), []byte("+cpu"), 0)
	}
	t.Cleanup(func() { c.removeAll(t) })
	return c
}

// Make creates a child of the parent and returns its path.
func (c *Cgroups) Make(t testing.TB, name string) string {
	t.Helper()
	p := c.Parent + "/" + name
	if err := os.Mkdir(c.H.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	c.made = append(c.made, p)
	return p
}

// Remove deletes a child made by Make (it must be empty).
func (c *Cgroups) Remove(p string) error {
	return syscall.Rmdir(c.H.Dir(p))
}

// Move puts pid into the cgroup at path p.
func (c *Cgroups) Move(p string, pid int) error {
	return os.WriteFile(filepath.Join(c.H.Dir(p), "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// SetWeight sets a relative CPU weight in cgroup2 units (1-10000, default
// 100), translated to cpu.shares on v1. It reports false where the
// hierarchy has no cpu controller.
func (c *Cgroups) SetWeight(p string, weight int) bool {
	if c.H.V2 {
		return os.WriteFile(filepath.Join(c.H.Dir(p), "cpu.weight"), []byte(strconv.Itoa(weight)), 0) == nil
	}
	shares := max(2, weight*1024/100)
	return os.WriteFile(filepath.Join(c.H.Dir(p), "cpu.shares"), []byte(strconv.Itoa(shares)), 0) == nil
}

func (c *Cgroups) removeAll(t testing.TB) {
	// Children first (newest first), then the parent, moving any leftover
	// task to the root.
	var all []string
	for i := len(c.made) - 1; i >= 0; i-- {
		all = append(all, c.made[i])
	}
	all = append(all, c.Parent)
	for _, p := range all {
		dir := c.H.Dir(p)
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(c.H.Root, "cgroup.procs"), []byte(pid), 0)
			}
		}
		for try := 0; try < 50; try++ {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Workload is a process of the test binary running a workload of
// package workload (call workload.Main first thing in TestMain), started
// inside a cgroup.
type Workload struct {
	cmd  *exec.Cmd
	done chan error
}

// StartWorkload re-executes the test binary as kind ("probe": 1 ms period
// with 100 µs of work after each wakeup; "hog": threads spinning), moves
// it into cgroup p before it does any work, then lets it go. It runs
// until the test ends.
func (c *Cgroups) StartWorkload(t testing.TB, p, kind string, threads int) *Workload {
	t.Helper()
	threads = max(threads, 1)
	cmd, err := workload.CommandWith(kind, -1, threads, map[string]string{
		workload.GateEnv: "1",
		"RUN_FOR":        "24h",
		"PROBE_PERIOD":   "1ms",
		"PROBE_WORK":     "100us",
		"HOG_THREADS":    strconv.Itoa(threads),
	})
	if err != nil {
		t.Fatal(err)
	}
	gate, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &Workload{cmd: cmd, done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait() }()
	t.Cleanup(w.Stop)
	if err := c.Move(p, cmd.Process.Pid); err != nil {
		t.Fatalf("moving workload into %s: %v", p, err)
	}
	gate.Close() // the workload starts when its stdin closes
	return w
}

// Stop kills the workload and waits for it.
func (w *Workload) Stop() {
	if w.cmd.ProcessState != nil {
		return
	}
	_ = w.cmd.Process.Kill()
	<-w.done
	w.done <- nil
}

// Pid returns the workload's process id.
func (w *Workload) Pid() int { return w.cmd.Process.Pid }
