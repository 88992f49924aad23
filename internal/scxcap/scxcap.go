// Package scxcap reports what the running kernel offers scx-slo: whether
// sched_ext is built in, its current state, and whether the scx-slo
// scheduler can be loaded. The scx collector exports it, and the enforcer
// loads only when it says the kernel is compatible.
package scxcap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// RequiredKfuncs are the kernel functions the scheduler calls. A name may
// list alternatives separated by "|": any one of them is enough (sched_ext
// renamed several kfuncs across releases).
var RequiredKfuncs = []string{
	// bpf/scheduler calls the ___v2 variants only: cilium/ebpf v0.22.0
	// cannot resolve the plain names on kernels that also carry ___v2
	// siblings (see bpf/scheduler/sched_ext.h).
	"scx_bpf_dsq_insert___v2",
	"scx_bpf_dsq_move_to_local___v2",
	"__scx_bpf_dsq_insert_vtime",
	"scx_bpf_create_dsq",
	"scx_bpf_dsq_nr_queued",
	"scx_bpf_dsq_peek",
	"scx_bpf_select_cpu_dfl",
	"scx_bpf_pick_idle_cpu",
	"scx_bpf_kick_cpu",
	"bpf_cpumask_test_cpu",
	"scx_bpf_nr_cpu_ids",
	"scx_bpf_now",
	"scx_bpf_task_cpu",
	"scx_bpf_error_bstr",
	"bpf_iter_scx_dsq_new",
	"bpf_iter_scx_dsq_next",
	"bpf_iter_scx_dsq_destroy",
	"scx_bpf_test_and_clear_cpu_idle",
	"bpf_iter_num_new",
	"bpf_iter_num_next",
	"bpf_iter_num_destroy",
	"scx_bpf_dsq_move_set_vtime",
	"scx_bpf_dsq_move",
	"scx_bpf_dsq_move_vtime",
}

// Capability is one reading of the kernel's state.
type Capability struct {
	KernelRelease string
	BTF           bool
	Supported     bool   // /sys/kernel/sched_ext exists
	State         string // enabled, disabled, enabling, disabling; "" if unsupported
	Ops           string // name of the loaded scheduler, "" if none
	EnableSeq     uint64
	NrRejected    uint64
	Events        map[string]uint64 // root/events, where the kernel has it
	MissingKfuncs []string
}

// Compatible reports whether the scx-slo scheduler can load, and if not,
// every reason why.
func (c Capability) Compatible() (bool, []string) {
	var why []string
	if !c.Supported {
		why = append(why, "kernel built without sched_ext (CONFIG_SCHED_CLASS_EXT)")
	}
	if !c.BTF {
		why = append(why, "no kernel BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)")
	}
	for _, k := range c.MissingKfuncs {
		why = append(why, "missing kfunc "+k)
	}
	return len(why) == 0, why
}

// Paths lets tests and odd mounts point elsewhere.
type Paths struct {
	SchedExt string // /sys/kernel/sched_ext
	BTF      string // /sys/kernel/btf/vmlinux
}

// DefaultPaths are the kernel's standard locations.
var DefaultPaths = Paths{SchedExt: "/sys/kernel/sched_ext", BTF: "/sys/kernel/btf/vmlinux"}

// Probe reads the capability. Kernel BTF is parsed only when sched_ext is
// present (that is the only case where kfuncs matter), and cached by
// cilium/ebpf after the first call.
func Probe(p Paths) (Capability, error) {
	var c Capability
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		c.KernelRelease = unix.ByteSliceToString(uts.Release[:])
	}
	if _, err := os.Stat(p.BTF); err == nil {
		c.BTF = true
	}
	if _, err := os.Stat(p.SchedExt); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return c, nil
		}
		return c, err
	}
	c.Supported = true
	var errs []error
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(p.SchedExt, name))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	num := func(name string) uint64 {
		s := read(name)
		if s == "" {
			return 0
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %q is not a number", p.SchedExt, name, s))
		}
		return v
	}
	c.State = read("state")
	c.Ops = read("root/ops")
	c.EnableSeq = num("enable_seq")
	c.NrRejected = num("nr_rejected")
	c.Events = readEvents(filepath.Join(p.SchedExt, "root/events"))
	if c.BTF && len(RequiredKfuncs) > 0 {
		missing, err := missingKfuncs(RequiredKfuncs)
		if err != nil {
			errs = append(errs, err)
		}
		c.MissingKfuncs = missing
	}
	return c, errors.Join(errs...)
}

// readEvents parses "NAME value" (or "NAME: value") lines; a kernel
// without the file yields nil.
func readEvents(path string) map[string]uint64 {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := make(map[string]uint64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.ReplaceAll(sc.Text(), ":", " "))
		if len(fields) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
			out[strings.ToLower(strings.TrimPrefix(fields[0], "SCX_EV_"))] = v
		}
	}
	return out
}

func missingKfuncs(names []string) ([]string, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("loading kernel BTF: %w", err)
	}
	var missing []string
	for _, alt := range names {
		found := false
		for _, name := range strings.Split(alt, "|") {
			var fn *btf.Func
			if err := spec.TypeByName(name, &fn); err == nil {
				found = true
				break
			} else if strings.Contains(err.Error(), "multiple") {
				found = true // present, just ambiguous to TypeByName
				break
			}
		}
		if !found {
			missing = append(missing, alt)
		}
	}
	return missing, nil
}
