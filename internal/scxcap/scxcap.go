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

// Variant is one build of the scheduler object (bpf/scheduler) and the
// kfuncs it may call. sched_ext renamed several kfuncs between 6.12 and
// 6.19, and cilium/ebpf v0.22.0 cannot resolve a plain name on kernels that
// also carry "___v2" siblings, so no single object loads everywhere.
type Variant struct {
	Name string
	// Kfuncs the object needs. "a|b" lists weak alternatives: the object
	// calls a where the kernel has it, else b, and needs one of them.
	Kfuncs []string
	// Optional kfuncs are weak with a fallback that needs none.
	Optional []string
}

// commonKfuncs are called under the same name by every variant.
var commonKfuncs = []string{
	"scx_bpf_create_dsq",
	"scx_bpf_dsq_nr_queued",
	"scx_bpf_select_cpu_dfl",
	"scx_bpf_pick_idle_cpu",
	"scx_bpf_kick_cpu",
	"bpf_cpumask_test_cpu",
	"scx_bpf_nr_cpu_ids",
	"scx_bpf_task_cpu",
	"scx_bpf_error_bstr",
	"bpf_iter_scx_dsq_new",
	"bpf_iter_scx_dsq_next",
	"bpf_iter_scx_dsq_destroy",
	"scx_bpf_test_and_clear_cpu_idle",
	"bpf_iter_num_new",
	"bpf_iter_num_next",
	"bpf_iter_num_destroy",
}

// The scheduler's variants, preferred first.
var (
	// VariantV2 is for 6.19 and later: the ___v2 kfuncs (see
	// bpf/scheduler/sched_ext.h), all required.
	VariantV2 = Variant{Name: "v2", Kfuncs: append([]string{
		"scx_bpf_dsq_insert___v2",
		"scx_bpf_dsq_move_to_local___v2",
		"__scx_bpf_dsq_insert_vtime",
		"scx_bpf_dsq_peek",
		"scx_bpf_now",
		"scx_bpf_dsq_move_set_vtime",
		"scx_bpf_dsq_move",
		"scx_bpf_dsq_move_vtime",
	}, commonKfuncs...)}
	// VariantCompat is for 6.12 to 6.18: the 6.13 names, else the 6.12
	// ones (removed in 6.15).
	VariantCompat = Variant{Name: "compat", Kfuncs: append([]string{
		"scx_bpf_dsq_insert|scx_bpf_dispatch",
		"scx_bpf_dsq_insert_vtime|scx_bpf_dispatch_vtime",
		"scx_bpf_dsq_move_to_local|scx_bpf_consume",
		"scx_bpf_dsq_move_set_vtime|scx_bpf_dispatch_from_dsq_set_vtime",
		"scx_bpf_dsq_move|scx_bpf_dispatch_from_dsq",
		"scx_bpf_dsq_move_vtime|scx_bpf_dispatch_vtime_from_dsq",
	}, commonKfuncs...), Optional: []string{"scx_bpf_now"}}
	Variants = []Variant{VariantV2, VariantCompat}
)

// Features a kernel may lack while the scheduler still runs without
// them (docs/metrics.md, scx_slo_enforce_degraded_info).
const (
	// FeatureCPUMax: sched_ext passes cpu.max to the scheduler from 6.17
	// on (ops.cgroup_set_bandwidth, scx_cgroup_init_args.bw_*). Before,
	// cpu.max does not limit cgroups while scx-slo schedules.
	FeatureCPUMax = "cpu_max"
	// FeatureEnqImmed: SCX_OPS_ALWAYS_ENQ_IMMED (7.1+) hands a task back
	// to the scheduler when a higher class (RT, deadline) takes its CPU.
	// Before, the task waits in that CPU's local queue until the CPU is
	// free again.
	FeatureEnqImmed = "always_enq_immed"
)

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
	// Variant is the scheduler object this kernel loads, "" if none fits;
	// KfuncProblems then says why, for each object.
	Variant       string
	KfuncProblems []string
	Degraded      []string // Feature* the kernel lacks
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
	why = append(why, c.KfuncProblems...)
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
	if c.BTF {
		spec, err := btf.LoadKernelSpec()
		if err != nil {
			errs = append(errs, fmt.Errorf("loading kernel BTF: %w", err))
		} else {
			c.Variant, c.KfuncProblems = SelectVariant(spec)
			c.Degraded = DegradedFeatures(spec)
		}
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

// SelectVariant returns the first variant whose kfuncs the kernel has
// with the prototypes its object calls them with; if none fits, "" and
// every variant's problems, each prefixed with "<variant> object: " (the
// kernel may be refused for different reasons by each object).
func SelectVariant(kernel *btf.Spec) (string, []string) {
	var all []string
	for _, v := range Variants {
		var problems []string
		for _, k := range MissingKfuncs(kernel, v) {
			problems = append(problems, "missing kfunc "+strings.ReplaceAll(k, "|", " or "))
		}
		if len(problems) == 0 && KfuncPrototypes != nil {
			problems = KfuncPrototypes(kernel, v.Name)
		}
		if len(problems) == 0 {
			return v.Name, nil
		}
		for _, p := range problems {
			all = append(all, v.Name+" object: "+p)
		}
	}
	return "", all
}

// KfuncPrototypes, set by package bpf/scheduler (which owns the objects
// and imports this package), lists the kfuncs of a variant's object that
// the kernel has but a load would still fail on: a name cilium/ebpf cannot
// resolve to one function ("multiple matching types"), a prototype that
// differs from the object's ("function param mismatch"), or one the
// verifier cannot check calls to (Debian's 7.2.12 lists the implicit
// bpf_prog_aux argument of some kfuncs without their _impl twins).
var KfuncPrototypes func(kernel *btf.Spec, variant string) []string

// MissingKfuncs lists the entries of v.Kfuncs none of whose names the
// kernel has.
func MissingKfuncs(kernel *btf.Spec, v Variant) []string {
	var missing []string
	for _, alt := range v.Kfuncs {
		found := false
		for _, name := range strings.Split(alt, "|") {
			if HasFunc(kernel, name) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, alt)
		}
	}
	return missing
}

// HasFunc reports whether the kernel has a function of exactly that name.
func HasFunc(kernel *btf.Spec, name string) bool {
	var fn *btf.Func
	err := kernel.TypeByName(name, &fn)
	// Ambiguous to TypeByName (see Variant) is still present.
	return err == nil || errors.Is(err, btf.ErrMultipleMatches)
}

// DegradedFeatures lists the Feature* constants the kernel lacks.
func DegradedFeatures(kernel *btf.Spec) []string {
	var out []string
	var ops *btf.Struct
	if err := kernel.TypeByName("sched_ext_ops", &ops); err == nil && !hasMember(ops, "cgroup_set_bandwidth") {
		out = append(out, FeatureCPUMax)
	}
	if _, ok := OpsFlag(kernel, "SCX_OPS_ALWAYS_ENQ_IMMED"); !ok {
		out = append(out, FeatureEnqImmed)
	}
	return out
}

func hasMember(s *btf.Struct, name string) bool {
	for _, m := range s.Members {
		if m.Name == name {
			return true
		}
	}
	return false
}

// OpsFlag returns the value of an enum scx_ops_flags member, if the
// kernel has it.
func OpsFlag(kernel *btf.Spec, name string) (uint64, bool) {
	var e *btf.Enum
	if err := kernel.TypeByName("scx_ops_flags", &e); err != nil {
		return 0, false
	}
	for _, v := range e.Values {
		if v.Name == name {
			return v.Value, true
		}
	}
	return 0, false
}
