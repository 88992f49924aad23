package enforcer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/scx-slo/scx-slo/bpf/scheduler"
	"github.com/scx-slo/scx-slo/internal/pindir"
	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/slomaps"
)

// Pinned file names under Options.PinDir.
const (
	pinLink      = "link"
	pinRmdirLink = "rmdir_link"
)

// pinFiles names each kept map's file under Options.PinDir; a restarted
// exporter re-adopts by these names, so they never change.
func pinFiles(m *scheduler.Maps) map[string]**ebpf.Map {
	return map[string]**ebpf.Map{
		"cgroup_stats":  &m.CgroupStats,
		"slos":          &m.Slos,
		"overload":      &m.Overload,
		"stats":         &m.Stats,
		"exit":          &m.Exit,
		"knob":          &m.Knob,
		"waiting_slots": &m.WaitingSlots,
		"hist_slots":    &m.HistSlots,
	}
}

// optionalPins may be missing from a pin directory: a scheduler pinned
// by a release before the per-CPU slots has none, and keeps all its
// counts in cgroup_stats.
var optionalPins = map[string]bool{"waiting_slots": true, "hist_slots": true}

// instance is one attached scheduler: fresh from a load, or adopted from pins.
type instance struct {
	ops, rmdir link.Link
	maps       scheduler.Maps
	loaded     *loaded // nil when adopted
}

// loaded is what a fresh load holds besides the kept maps.
type loaded struct {
	opsMap *ebpf.Map
	rmdir  *ebpf.Program
	rest   *ebpf.Collection // the maps and programs nobody outside reads
}

func (in *instance) slomaps() slomaps.Maps {
	m := slomaps.Maps{Stats: in.maps.CgroupStats, SLOs: in.maps.Slos, Overload: in.maps.Overload}
	if in.maps.WaitingSlots != nil && in.maps.HistSlots != nil {
		m.Slots = slomaps.SlotReader(in.maps.WaitingSlots, in.maps.HistSlots)
	}
	return m
}

// close drops our references; the kernel detaches unless a pin remains.
func (in *instance) close() error {
	var errs []error
	for _, l := range []link.Link{in.ops, in.rmdir} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	for _, m := range pinFiles(&in.maps) {
		if *m != nil {
			errs = append(errs, (*m).Close())
		}
	}
	if l := in.loaded; l != nil {
		errs = append(errs, l.opsMap.Close(), l.rmdir.Close())
		l.rest.Close()
	}
	return errors.Join(errs...)
}

// loadSpec returns the spec of the scheduler object that fits the running
// kernel (scxcap.SelectVariant) with the ops flags set and the callbacks
// the kernel lacks removed.
func loadSpec(partial bool) (*ebpf.CollectionSpec, error) {
	// Without kernel BTF or a fitting variant, the newest object: loading
	// it then fails naming a missing kfunc (scxcap refuses such kernels
	// before that).
	variant, degraded := scxcap.VariantV2.Name, []string(nil)
	kspec, kerr := btf.LoadKernelSpec()
	if kerr == nil {
		if v, _ := scxcap.SelectVariant(kspec); v != "" {
			variant = v
		}
		degraded = scxcap.DegradedFeatures(kspec)
	}
	spec, err := scheduler.Spec(variant)
	if err != nil {
		return nil, fmt.Errorf("reading the scheduler object: %w", err)
	}
	if partial {
		if err := orOpsFlags(spec, scheduler.SwitchPartial); err != nil {
			return nil, err
		}
	}
	// 7.1+: a task the kernel would leave in a local DSQ behind a higher
	// class (RT, deadline) is handed back to ops.enqueue instead: what
	// ops.cpu_release did before that kernel removed it.
	// Kernels that have SCX_OPS_HAS_CGROUP_WEIGHT (6.12, not 7.x) log
	// that the scheduler ignores cpu.weight unless it sets that flag.
	for _, name := range []string{"SCX_OPS_ALWAYS_ENQ_IMMED", "SCX_OPS_HAS_CGROUP_WEIGHT"} {
		if kerr != nil {
			break
		}
		if bit, ok := scxcap.OpsFlag(kspec, name); ok {
			if err := orOpsFlags(spec, bit); err != nil {
				return nil, err
			}
		}
	}
	// Before 6.17 sched_ext_ops has no cgroup_set_bandwidth: a struct_ops
	// program for a member the kernel lacks cannot load.
	if slices.Contains(degraded, scxcap.FeatureCPUMax) {
		delete(spec.Programs, scheduler.BandwidthProg)
	}
	if err := slomaps.SizeSlots(spec); err != nil {
		return nil, err
	}
	topo, err := ReadTopology("/sys")
	if err != nil {
		return nil, err
	}
	if err := setTopology(spec, topo); err != nil {
		return nil, err
	}
	return spec, nil
}

// orOpsFlags sets bits in sched_ext_ops.flags. cilium/ebpf copies the ops
// struct from the map spec's raw value, so we patch those bytes at the
// offset BTF gives for "flags".
func orOpsFlags(spec *ebpf.CollectionSpec, bits uint64) error {
	ms, ok := spec.Maps[scheduler.OpsMap]
	if !ok || len(ms.Contents) != 1 {
		return fmt.Errorf("scheduler object: struct_ops map %q missing or empty", scheduler.OpsMap)
	}
	st, ok := ms.Value.(*btf.Struct)
	if !ok {
		return fmt.Errorf("scheduler object: %q value is %T, not a struct", scheduler.OpsMap, ms.Value)
	}
	val, ok := ms.Contents[0].Value.([]byte)
	if !ok {
		return fmt.Errorf("scheduler object: %q contents are %T, not bytes", scheduler.OpsMap, ms.Contents[0].Value)
	}
	for _, m := range st.Members {
		if m.Name != "flags" {
			continue
		}
		off := m.Offset.Bytes()
		if int(off)+8 > len(val) {
			return fmt.Errorf("scheduler object: flags at %d beyond ops value of %d bytes", off, len(val))
		}
		val = append([]byte(nil), val...)
		binary.LittleEndian.PutUint64(val[off:], binary.LittleEndian.Uint64(val[off:])|bits)
		ms.Contents[0].Value = val
		return nil
	}
	return fmt.Errorf("scheduler object: sched_ext_ops has no flags member")
}

// attach loads the scheduler, reusing shared's slos and overload maps if
// set, and enables it.
func attach(spec *ebpf.CollectionSpec, shared slomaps.Maps) (*instance, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising memlock limit: %w", err)
	}
	repl := map[string]*ebpf.Map{}
	if shared.SLOs != nil {
		repl["slos"] = shared.SLOs
	}
	if shared.Overload != nil {
		repl["overload"] = shared.Overload
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading the scheduler: %+v", ve)
		}
		return nil, fmt.Errorf("loading the scheduler: %w", err)
	}
	var objs scheduler.Objects
	if err := coll.Assign(&objs); err != nil {
		coll.Close()
		return nil, fmt.Errorf("scheduler object: %w", err)
	}
	in := &instance{maps: objs.Maps, loaded: &loaded{opsMap: objs.Ops, rmdir: objs.Rmdir, rest: coll}}
	if in.rmdir, err = link.AttachTracing(link.TracingOptions{Program: objs.Rmdir}); err != nil {
		in.close()
		return nil, fmt.Errorf("attaching %s: %w", scheduler.RmdirProg, err)
	}
	if in.ops, err = link.AttachStructOps(link.StructOpsOptions{Map: objs.Ops}); err != nil {
		in.close()
		return nil, fmt.Errorf("enabling the scheduler (sched_ext rejected it; see dmesg): %w", err)
	}
	return in, nil
}

// pin makes the instance outlive this process. The scheduler's link goes
// last: until it is pinned, our death detaches the scheduler; once it is,
// every pin adopt needs is there. A kill half-way thus leaves either the
// default scheduler or a scheduler the next process can re-adopt.
func (in *instance) pin(dir string) error {
	if err := pindir.Prepare("--enforce.pin-dir", dir); err != nil {
		return err
	}
	for name, m := range pinFiles(&in.maps) {
		if err := (*m).Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("pinning the scheduler's maps in %s (is bpffs mounted?): %w", dir, err)
		}
	}
	if err := in.rmdir.Pin(filepath.Join(dir, pinRmdirLink)); err != nil {
		return err
	}
	if err := in.ops.Pin(filepath.Join(dir, pinLink)); err != nil {
		return fmt.Errorf("pinning the scheduler link in %s: %w", dir, err)
	}
	return nil
}

// adopt opens a pinned scheduler; os.ErrNotExist if nothing is pinned.
func adopt(dir string) (*instance, error) {
	ops, err := link.LoadPinnedLink(filepath.Join(dir, pinLink), nil)
	if err != nil {
		return nil, err
	}
	in := &instance{ops: ops}
	if in.rmdir, err = link.LoadPinnedLink(filepath.Join(dir, pinRmdirLink), nil); err != nil {
		in.close()
		return nil, fmt.Errorf("pinned scheduler in %s is incomplete: %w", dir, err)
	}
	for name, m := range pinFiles(&in.maps) {
		if *m, err = ebpf.LoadPinnedMap(filepath.Join(dir, name), nil); err != nil {
			if optionalPins[name] && errors.Is(err, os.ErrNotExist) {
				continue
			}
			in.close()
			return nil, fmt.Errorf("pinned scheduler in %s is incomplete: %w", dir, err)
		}
	}
	return in, nil
}

// unpin removes every pin in dir that we may have made, and dir itself.
func unpin(dir string) error {
	var errs []error
	names := []string{pinLink, pinRmdirLink}
	for name := range pinFiles(&scheduler.Maps{}) {
		names = append(names, name)
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if _, marked := detachedMark(dir); marked {
		return errors.Join(errs...) // the directory keeps the detached-for-good mark
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Detach removes a scheduler pinned in pinDir (`scx-slo detach`, or
// --enforce=false): it detaches the link even if a process still holds
// it, then deletes the pins. Nothing pinned is not an error.
func Detach(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	var errs []error
	for _, name := range []string{pinLink, pinRmdirLink} {
		l, err := link.LoadPinnedLink(filepath.Join(pinDir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("opening pinned %s: %w", filepath.Join(pinDir, name), err))
			continue
		}
		if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			errs = append(errs, fmt.Errorf("detaching %s: %w", name, err))
		}
		l.Close()
	}
	// The operator's reset: a later --enforce may attach again.
	errs = append(errs, clearDetached(pinDir))
	errs = append(errs, unpin(pinDir))
	return errors.Join(errs...)
}
