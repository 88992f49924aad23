// Package labtest runs a Go test inside the lab guest and carries JSON
// results back. A test calls RunTest on the host; the same test binary
// runs in the guest, where InGuest reports true and the test does the
// kernel work and calls WriteJSON:
//
//	func TestAttach(t *testing.T) {
//		if labtest.InGuest() {
//			labtest.WriteJSON(t, "attach", measure(t))
//			return
//		}
//		res := labtest.RunTest(t, lab.Options{})
//		var got measurement
//		labtest.ReadJSON(t, res, "attach", &got)
//		...
//	}
package labtest

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

// guestEnv marks a process started by RunTest inside the guest.
const guestEnv = "SCX_SLO_LAB_GUEST"

// InGuest reports whether this test binary runs inside a lab guest.
func InGuest() bool { return os.Getenv(guestEnv) == "1" }

// Kernel returns the lab kernel or skips t when the machine cannot run
// guests (no qemu, no static busybox, no kernel cached or obtainable). With
// SCX_SLO_LAB_REQUIRED=1 (set it in CI) that is a failure instead. It also
// skips in -short mode: each guest boot costs seconds of CPU.
func Kernel(t testing.TB) *lab.Kernel {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a qemu guest; skipped in -short mode")
	}
	needs.Part(t, "the lab VM", lab.Available(""))
	k, err := lab.EnsureKernel(t.Context(), "", t.Output())
	if err != nil {
		t.Fatalf("getting the lab kernel: %v", err)
	}
	return k
}

var builds sync.Map // package dir -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

// testBinary compiles the current package's tests once per process.
func testBinary(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := builds.LoadOrStore(wd, &build{})
	b := v.(*build)
	b.once.Do(func() {
		// One fixed directory per package instead of t.TempDir: the binary
		// outlives this test (other tests reuse it) and must not pile up.
		dir := filepath.Join(os.TempDir(), "scx-slo-labtest", strings.NewReplacer("/", "_").Replace(strings.TrimPrefix(wd, "/")))
		if b.err = os.MkdirAll(dir, 0o755); b.err != nil {
			return
		}
		tmp, err := os.MkdirTemp(dir, "build-")
		if err != nil {
			b.err = err
			return
		}
		defer os.RemoveAll(tmp)
		start := time.Now()
		built, err := lab.BuildTest(t.Context(), ".", tmp)
		if err != nil {
			b.err = err
			return
		}
		// Rename is atomic, so a concurrent run of the same package still
		// reads a whole binary.
		b.path = filepath.Join(dir, "pkg.test")
		b.err = os.Rename(built, b.path)
		t.Logf("labtest: built %s in %s", b.path, time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatalf("building the test binary for the guest: %v", b.err)
	}
	return b.path
}

// RunTest runs t (by name) inside the guest and fails t if it fails there
// or did not run there at all. opts.Kernel defaults to Kernel(t); the
// guest console goes to t's output; Files, Env and sizes in opts are
// kept. Guest-side failures show up in the console above the host's
// failure message.
func RunTest(t *testing.T, opts lab.Options) *lab.Result {
	t.Helper()
	res, outcomes := runInGuest(t, runPattern(t.Name()), opts)
	if outcomes[t.Name()] != "PASS" {
		t.Fatalf("%s did not pass in the guest (outcome %q); see the [guest] lines above", t.Name(), outcomes[t.Name()])
	}
	return res
}

// RunTests runs every test of this package matching the -test.run
// pattern inside one guest boot (cheaper than a boot per test) and fails
// t if any failed there, or if none ran: a suite that passes by running
// nothing proves nothing.
func RunTests(t *testing.T, pattern string, opts lab.Options) *lab.Result {
	t.Helper()
	res, outcomes := runInGuest(t, pattern, opts)
	passed := 0
	for name, outcome := range outcomes {
		switch outcome {
		case "PASS":
			passed++
		case "FAIL":
			t.Errorf("%s failed in the guest", name)
		}
	}
	t.Logf("labtest: %d of %d guest tests passed", passed, len(outcomes))
	if passed == 0 {
		t.Fatalf("no guest test matching %q passed (outcomes %v)", pattern, outcomes)
	}
	return res
}

// runInGuest boots the guest with this package's test binary, runs the
// tests matching pattern, and returns the result and each test's outcome
// (PASS, FAIL or SKIP) as the guest's go test -v printed it.
func runInGuest(t *testing.T, pattern string, opts lab.Options) (*lab.Result, map[string]string) {
	t.Helper()
	if InGuest() {
		t.Fatal("labtest.RunTest called inside the guest: guard the host side with labtest.InGuest()")
	}
	if opts.Kernel == nil {
		opts.Kernel = Kernel(t)
	}
	bin := testBinary(t)
	const guestBin = "/labtest/pkg.test"
	opts.Files = append(append([]lab.Copy{}, opts.Files...), lab.Copy{Host: bin, Guest: guestBin})
	env := map[string]string{guestEnv: "1"}
	for k, v := range opts.Env {
		env[k] = v
	}
	opts.Env = env
	opts.Command = []string{guestBin, "-test.run", pattern, "-test.v", "-test.count=1"}
	if opts.Console == nil {
		opts.Console = t.Output()
	}
	outcomes := &outcomeWriter{to: opts.Console, seen: map[string]string{}}
	opts.Console = outcomes
	if opts.OutDir == "" {
		opts.OutDir = t.TempDir()
	}
	res, err := lab.Run(t.Context(), opts)
	if err != nil {
		t.Fatalf("running %s in the guest: %v", pattern, err)
	}
	t.Logf("labtest: guest boot %s, total %s", res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	if res.ExitCode != 0 {
		t.Fatalf("guest tests %s failed (exit status %d); see the [guest] lines above", pattern, res.ExitCode)
	}
	return res, outcomes.seen
}

// outcomeLine is go test -v's verdict line, possibly indented (subtests)
// and behind the console prefix.
var outcomeLine = regexp.MustCompile(`--- (PASS|FAIL|SKIP): (\S+) \(`)

// outcomeWriter passes the console on and records each test's verdict.
type outcomeWriter struct {
	to    io.Writer
	lines lab.LineBuffer
	mu    sync.Mutex
	seen  map[string]string
}

func (w *outcomeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.lines.Feed(p, func(line string) {
		if m := outcomeLine.FindStringSubmatch(line); m != nil {
			w.seen[m[2]] = m[1]
		}
	})
	w.mu.Unlock()
	return w.to.Write(p)
}

// runPattern matches exactly one test or subtest: -test.run splits on "/"
// and matches each level separately.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// OutDir is where guest-side code should put files for the host.
func OutDir() string {
	if d := os.Getenv("SCX_SLO_LAB_OUT"); d != "" {
		return d
	}
	return "/out"
}

// WriteJSON (guest side) stores v as <name>.json in the guest's /out.
func WriteJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("labtest.WriteJSON %q: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(OutDir(), name+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatalf("labtest.WriteJSON %q: %v", name, err)
	}
}

// ReadJSON (host side) loads <name>.json that the guest test wrote.
func ReadJSON(t testing.TB, res *lab.Result, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(res.OutDir, name+".json"))
	if err != nil {
		t.Fatalf("labtest.ReadJSON: the guest did not write %s.json: %v", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("labtest.ReadJSON %s.json: %v", name, err)
	}
}

// MatrixEnv lists the kernel matrix as comma-separated lab.ResolveKernel
// specs ("6.12,7.2"); unset means DefaultMatrix, empty means none.
const MatrixEnv = "SCX_SLO_LAB_KERNELS"

// DefaultMatrix are the kernels besides the default one that matrix tests
// run on: the oldest sched_ext kernel (6.12 LTS, built from source, the
// compat scheduler object). Debian's 7.2 image is not in it: its BTF
// lacks the _impl twins of scx_bpf_kick_cpu and scx_bpf_dsq_insert___v2,
// so the verifier refuses calls to them and the gate refuses the kernel
// (bpf/scheduler tests that; docs/lab.md).
var DefaultMatrix = []string{"6.12"}

// MatrixKernels returns the matrix's kernel specs (MatrixEnv).
func MatrixKernels() []string {
	v, ok := os.LookupEnv(MatrixEnv)
	if !ok {
		return DefaultMatrix
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// KernelFor is Kernel for a lab.ResolveKernel spec ("" is the default
// kernel). A kernel built from source is built only under
// SCX_SLO_LAB_REQUIRED=1 (CI); elsewhere a missing build skips, naming
// the command that makes it.
func KernelFor(t testing.TB, spec string) *lab.Kernel {
	t.Helper()
	if spec == "" {
		return Kernel(t)
	}
	if testing.Short() {
		t.Skip("boots a qemu guest; skipped in -short mode")
	}
	needs.Part(t, "the lab VM", lab.Available(""))
	resolve := lab.ResolveBuiltKernel
	if needs.Required() {
		resolve = lab.ResolveKernel
	}
	k, err := resolve(t.Context(), "", spec, t.Output())
	if errors.Is(err, lab.ErrNotBuilt) {
		needs.Part(t, "the lab kernel "+spec, err)
	}
	if err != nil {
		t.Fatalf("getting the lab kernel %s: %v", spec, err)
	}
	return k
}
