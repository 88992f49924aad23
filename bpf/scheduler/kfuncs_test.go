package scheduler

import (
	"debug/elf"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/scx-slo/scx-slo/internal/scxcap"
	"github.com/scx-slo/scx-slo/internal/testbed/lab/labtest"
)

// objectKfuncs returns the kfuncs an object calls (its undefined global
// and weak symbols), name -> weak.
func objectKfuncs(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range syms {
		bind := elf.ST_BIND(s.Info)
		if s.Section == elf.SHN_UNDEF && s.Name != "" && (bind == elf.STB_GLOBAL || bind == elf.STB_WEAK) {
			out[s.Name] = bind == elf.STB_WEAK
		}
	}
	return out
}

// TestVariantKfuncsMatchObjects keeps each scxcap.Variant (what the
// capability check looks for) equal to the kfuncs its object really
// calls: single names strong, alternatives and optional ones weak, so the
// enforcer never loads on a kernel that lacks one.
func TestVariantKfuncsMatchObjects(t *testing.T) {
	files := ObjectFiles()
	for _, v := range scxcap.Variants {
		want := map[string]bool{}
		for _, alt := range v.Kfuncs {
			names := strings.Split(alt, "|")
			for _, n := range names {
				want[n] = len(names) > 1
			}
		}
		for _, n := range v.Optional {
			want[n] = true
		}
		got := objectKfuncs(t, files[v.Name])
		if !mapsEqual(got, want) {
			t.Errorf("variant %s: kfuncs called by %s (name: weak):\n  %v\nscxcap.Variant%s lists:\n  %v", v.Name, files[v.Name], got, v.Name, want)
		}
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestLabKernelsResolveTheirVariant checks every kernel of the lab's
// matrix against the kfuncs of the object scxcap picks for it, the way
// cilium/ebpf resolves them when loading: each strong kfunc must resolve
// to exactly one function, each weak one to one or none. Ambiguity
// ("multiple matching types") is the failure the variants exist for.
func TestLabKernelsResolveTheirVariant(t *testing.T) {
	for _, spec := range append([]string{""}, labtest.MatrixKernels()...) {
		name := spec
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			k := labtest.KernelFor(t, spec)
			path, err := k.BTF(t.Context(), t.Output())
			if err != nil {
				t.Fatal(err)
			}
			kernel, err := btf.LoadSpec(path)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			variant, problems := scxcap.SelectVariant(kernel)
			if variant == "" {
				t.Fatalf("%s: no scheduler variant fits: %v", k.Release, problems)
			}
			t.Logf("%s: variant %s, degraded %v", k.Release, variant, scxcap.DegradedFeatures(kernel))
			if variant != scxcap.VariantV2.Name {
				// Before the compat object the gate refused such a kernel.
				t.Logf("%s: the v2 object alone would be refused for lacking %v", k.Release, scxcap.MissingKfuncs(kernel, scxcap.VariantV2))
			}
			called := 0
			for name, weak := range objectKfuncs(t, ObjectFiles()[variant]) {
				var fn *btf.Func
				err := kernel.TypeByName(name, &fn)
				switch {
				case err == nil:
					called++
				case weak && errors.Is(err, btf.ErrNotFound):
				default:
					t.Errorf("%s: kfunc %s (weak %v) does not resolve: %v", k.Release, name, weak, err)
				}
			}
			// Each alternative resolves at most one name: exactly one kfunc per entry is called.
			if want := len(variantOf(variant).Kfuncs); called < want {
				t.Errorf("%s: %d kfuncs resolve, want at least %d", k.Release, called, want)
			}
		})
	}
}

func variantOf(name string) scxcap.Variant {
	i := slices.IndexFunc(scxcap.Variants, func(v scxcap.Variant) bool { return v.Name == name })
	return scxcap.Variants[i]
}

// TestGateRefusesKernelWithOtherPrototypes: Debian's 7.2 has the ___v2
// kfuncs, but its BTF lists the implicit struct bpf_prog_aux argument of
// 11 KF_IMPLICIT_ARGS sched_ext kfuncs without their _impl twins, and the
// verifier then refuses every call to them ("cannot find function
// scx_bpf_kick_cpu_impl in BTF"; passing NULL for aux does not help, see
// docs/lab.md). Both objects call scx_bpf_kick_cpu, and the compat object
// also calls scx_bpf_dsq_move_to_local, which 7.2 has beside its ___v2
// flavours (cilium/ebpf's lookup fails). The gate must refuse it up
// front, naming each object's kfuncs and why, instead of passing it on to
// a load that fails.
func TestGateRefusesKernelWithOtherPrototypes(t *testing.T) {
	k := labtest.KernelFor(t, "7.2")
	path, err := k.BTF(t.Context(), t.Output())
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := btf.LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	variant, problems := scxcap.SelectVariant(kernel)
	t.Logf("%s: variant %q, problems %v", k.Release, variant, problems)
	if variant != "" {
		t.Fatalf("%s: gate accepts variant %s, whose load fails", k.Release, variant)
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		"v2 object: kfunc scx_bpf_dsq_insert___v2 cannot be called in this kernel",
		"no scx_bpf_dsq_insert___v2_impl",
		"v2 object: kfunc scx_bpf_kick_cpu cannot be called in this kernel",
		"compat object: kfunc scx_bpf_kick_cpu cannot be called in this kernel",
		"no scx_bpf_kick_cpu_impl",
		"compat object: kfunc scx_bpf_dsq_move_to_local cannot be resolved by cilium/ebpf",
		"scx_bpf_dsq_move_to_local___v2_impl",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("%s: the gate's reasons do not say %q:\n%s", k.Release, want, all)
		}
	}
}
