package scheduler

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"

	"github.com/scx-slo/scx-slo/internal/scxcap"
)

func init() { scxcap.KfuncPrototypes = kfuncPrototypeMismatches }

// kfuncDecls caches each variant's kfunc declarations (.ksyms): the
// capability probe runs on every scrape.
var kfuncDecls sync.Map // variant -> []*btf.Func or error

func kfuncsOf(variant string) ([]*btf.Func, error) {
	if v, ok := kfuncDecls.Load(variant); ok {
		if err, isErr := v.(error); isErr {
			return nil, err
		}
		return v.([]*btf.Func), nil
	}
	var fns []*btf.Func
	spec, err := Spec(variant)
	if err == nil {
		var ds *btf.Datasec
		if err = spec.Types.TypeByName(".ksyms", &ds); err == nil {
			for _, v := range ds.Vars {
				if fn, ok := v.Type.(*btf.Func); ok {
					fns = append(fns, fn)
				}
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("scheduler object %s: %w", variant, err)
		kfuncDecls.Store(variant, err)
		return nil, err
	}
	kfuncDecls.Store(variant, fns)
	return fns, nil
}

// kfuncPrototypeMismatches checks each kfunc of variant's object that the
// kernel has as cilium/ebpf and the verifier would at load: its name must
// resolve to one function, whose prototype is the object's and callable.
func kfuncPrototypeMismatches(kernel *btf.Spec, variant string) []string {
	fns, err := kfuncsOf(variant)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, fn := range fns {
		var kfn *btf.Func
		err := kernel.TypeByName(fn.Name, &kfn)
		if errors.Is(err, btf.ErrMultipleMatches) {
			// See scxcap.Variant: even a weak declaration fails the load.
			out = append(out, fmt.Sprintf("kfunc %s cannot be resolved by cilium/ebpf in this kernel: its lookup also finds %s and fails with %q", fn.Name, strings.Join(flavours(kernel, fn.Name), ", "), btf.ErrMultipleMatches))
			continue
		}
		if err != nil {
			continue // missing: weak, or scxcap.MissingKfuncs names it
		}
		err = btf.CheckTypeCompatibility(fn.Type, kfn.Type)
		switch {
		case err == nil:
		case unsplitImplicitAux(kernel, kfn):
			out = append(out, fmt.Sprintf("kfunc %s cannot be called in this kernel: its BTF prototype still lists the implicit struct bpf_prog_aux argument and there is no %s_impl, which the verifier needs to check a call", fn.Name, fn.Name))
		default:
			out = append(out, fmt.Sprintf("kfunc %s has another prototype in this kernel: %v", fn.Name, err))
		}
	}
	return out
}

// unsplitImplicitAux reports whether kfn is a KF_IMPLICIT_ARGS kfunc whose
// BTF was not rewritten: resolve_btfids moves such a prototype, with its
// trailing struct bpf_prog_aux pointer, to a "<name>_impl" FUNC and strips
// the argument from the public one, but only for functions pahole tagged
// bpf_kfunc. Without the _impl the verifier refuses every call ("cannot
// find function <name>_impl in BTF"), whatever the program passes; Debian's
// 7.2.12 has 11 such sched_ext kfuncs, scx_bpf_kick_cpu among them.
func unsplitImplicitAux(kernel *btf.Spec, kfn *btf.Func) bool {
	proto, ok := kfn.Type.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return false
	}
	ptr, ok := btf.UnderlyingType(proto.Params[len(proto.Params)-1].Type).(*btf.Pointer)
	if !ok {
		return false
	}
	aux, ok := btf.UnderlyingType(ptr.Target).(*btf.Struct)
	if !ok || aux.Name != "bpf_prog_aux" {
		return false
	}
	return !hasFuncNamed(kernel, kfn.Name+"_impl")
}

// hasFuncNamed is scxcap.HasFunc without its ambiguity: for a flavoured
// name ("x___v2_impl") cilium/ebpf's lookup may also return siblings of
// the same essential name, but never drops the exact match.
func hasFuncNamed(kernel *btf.Spec, name string) bool {
	types, _ := kernel.AnyTypesByName(name)
	return slices.ContainsFunc(types, func(t btf.Type) bool {
		fn, ok := t.(*btf.Func)
		return ok && fn.Name == name
	})
}

// flavours lists the kernel's "___v2" flavours of name, which cilium/ebpf
// also finds when it looks name up (everything after "___" is ignored).
func flavours(kernel *btf.Spec, name string) []string {
	var out []string
	for _, f := range []string{name + "___v2", name + "___v2_impl"} {
		if hasFuncNamed(kernel, f) {
			out = append(out, f)
		}
	}
	return out
}
