package enforcer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/workload"
)

// cgroup is a test cgroup under /sys/fs/cgroup.
type cgroup struct {
	path string
	id   uint64
	fd   int
}

func newCgroup(t *testing.T, name string) *cgroup {
	t.Helper()
	return newCgroupUnder(t, "/sys/fs/cgroup", name)
}

// newCgroupUnder makes cgroup name below the cgroup2 mount root.
func newCgroupUnder(t *testing.T, root, name string) *cgroup {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cg := &cgroup{path: p, id: st.Ino, fd: fd}
	t.Cleanup(func() {
		syscall.Close(fd)
		os.Remove(p) // fails harmlessly while processes remain
	})
	return cg
}

func (c *cgroup) set(t *testing.T, file, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.path, file), []byte(value), 0o644); err != nil {
		t.Fatalf("writing %s to %s/%s: %v", value, c.path, file, err)
	}
}

// proc is a running workload whose JSON report arrives on stdout.
type proc struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func start(t *testing.T, name string, cg *cgroup, params map[string]string) *proc {
	t.Helper()
	cmd, err := workload.Command(name, cg.fd, params)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd}
	cmd.Stdout = &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s in %s: %v", name, cg.path, err)
	}
	return p
}

func (p *proc) wait(v any) error {
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("%v: %w", p.cmd.Env[len(p.cmd.Env)-1], err)
	}
	return json.Unmarshal(p.out.Bytes(), v)
}

// phase runs one probe plus hogs for d and returns their reports.
func phase(t *testing.T, lat, batch *cgroup, hogs int, d time.Duration) (workload.ProbeReport, []workload.HogReport) {
	t.Helper()
	run := map[string]string{"RUN_FOR": d.String()}
	var hs []*proc
	for i := 0; i < hogs; i++ {
		hs = append(hs, start(t, "hog", batch, run))
	}
	time.Sleep(100 * time.Millisecond) // hogs on CPU before the probe starts
	pr := start(t, "probe", lat, map[string]string{"RUN_FOR": d.String(), "PROBE_PERIOD": "1ms", "PROBE_WORK": "100us"})
	var rep workload.ProbeReport
	if err := pr.wait(&rep); err != nil {
		t.Fatal(err)
	}
	var hr []workload.HogReport
	for _, h := range hs {
		var r workload.HogReport
		if err := h.wait(&r); err != nil {
			t.Fatal(err)
		}
		hr = append(hr, r)
	}
	return rep, hr
}
