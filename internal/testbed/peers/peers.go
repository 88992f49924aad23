// Package peers builds the kernel's own sample sched_ext schedulers
// (scx_simple, scx_flatcg) from Debian's linux-source package of the lab
// kernel's version, as static executables the lab guest (no libc) can
// run, so the benchmark can compare scx-slo with them in the same boot.
// Builds are cached under <lab cache>/peers/<source version>-<recipe
// hash>/ with build.json; nothing from the kernel tree enters the
// repository.
package peers

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
)

// The peers built, by executable name.
const (
	Simple = "scx_simple" // one global weighted-vtime queue (task weights only)
	FlatCG = "scx_flatcg" // cgroup-weight-aware: flattened hierarchy of cgroup vtimes
)

// Names lists every peer in build order.
var Names = []string{Simple, FlatCG}

// Peer is what build.json records about one built scheduler.
type Peer struct {
	Name string `json:"name"` // executable, e.g. "scx_flatcg"
	Ops  string `json:"ops"`  // sched_ext_ops.name: what /sys/kernel/sched_ext/root/ops shows while it runs
	// Slice is how the peer slices time, from its source: the task slice
	// and whether a flag changes anything.
	Slice string `json:"slice"`
	// SliceFlag is the flag that sets its slice ("" when none does).
	SliceFlag string `json:"slice_flag,omitempty"`
	Size      int64  `json:"size"` // bytes of the static executable
}

// BuildInfo is build.json: how a set of peers was made.
type BuildInfo struct {
	Source       string  `json:"source"`        // e.g. "linux-source-7.3"
	Version      string  `json:"version"`       // its Debian version, the lab kernel's
	Suite        string  `json:"suite"`         // where apt found it
	Kernel       string  `json:"kernel"`        // release whose BTF made vmlinux.h
	RecipeSHA256 string  `json:"recipe_sha256"` // of Recipe
	Recipe       string  `json:"recipe"`        // the commands, tool versions and extracted paths
	SliceDflNs   int64   `json:"slice_dfl_ns"`  // SCX_SLICE_DFL in the source tree
	Peers        []Peer  `json:"peers"`
	BuildSeconds float64 `json:"build_seconds"` // make and link
	TotalSeconds float64 `json:"total_seconds"` // download, unpack, make and link
	BuiltAt      string  `json:"built_at"`
}

// Set is a cached build.
type Set struct {
	Dir  string
	Info BuildInfo
}

// Binary is the host path of a built peer.
func (s *Set) Binary(name string) string { return filepath.Join(s.Dir, name) }

// Peer returns build.json's record of name.
func (s *Set) Peer(name string) (Peer, bool) {
	for _, p := range s.Info.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// ErrNotBuilt: the peers would have to be built first (about a minute).
var ErrNotBuilt = errors.New("sched_ext peers not built yet")

// srcDirs are the parts of the source tarball tools/sched_ext's Makefile
// reads (its own tree, libbpf, bpftool and the headers they include).
var srcDirs = []string{"tools", "kernel/bpf", "scripts", "include", "arch/x86/include", "Makefile"}

// makeArgs build the loaders with the tree's own libbpf and bpftool
// (bookworm's libbpf 1.1 is too old for these schedulers). LDFLAGS=-static
// here would also reach libbpf's shared-library build and break it, so the
// loaders are relinked statically afterwards (linkArgs).
func makeArgs(btf string) []string {
	return append([]string{"make", "-j2", "CLANG=clang-19", "LLVM_STRIP=llvm-strip-19", "VMLINUX_BTF=" + btf}, Names...)
}

func linkArgs(name string) []string {
	return []string{"gcc", "-static", "-o", name, "build/obj/sched_ext/" + name + ".o", "build/obj/libbpf/libbpf.a", "-lelf", "-lz", "-lpthread"}
}

// tools the build runs, with the flag that prints their version.
var tools = [][2]string{{"gcc", "--version"}, {"clang-19", "--version"}, {"make", "--version"}, {"tar", "--version"}, {"dpkg-deb", "--version"}}

// series maps a kernel release to its source package's series:
// "7.3.4+deb13-amd64" -> "7.3".
var seriesOf = regexp.MustCompile(`^([0-9]+\.[0-9]+)[.+-]`)

// recipe is everything that decides the build's output besides the source
// version: the cache key hashes it.
func recipe(ctx context.Context, k *lab.Kernel) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel BTF: %s\n", k.Release)
	fmt.Fprintf(&b, "extract: %s\n", strings.Join(srcDirs, " "))
	fmt.Fprintf(&b, "in tools/sched_ext: %s\n", strings.Join(makeArgs("<kernel BTF>"), " "))
	for _, n := range Names {
		fmt.Fprintf(&b, "in tools/sched_ext: %s\n", strings.Join(linkArgs(n), " "))
	}
	for _, t := range tools {
		out, err := exec.CommandContext(ctx, t[0], t[1]).Output()
		if err != nil {
			// %w: a missing tool wraps exec.ErrNotFound, which tests treat
			// as a missing part.
			return "", fmt.Errorf("building sched_ext peers: %s %s: %w (packages: gcc make clang-19 llvm-19 libelf-dev zlib1g-dev xz-utils)", t[0], t[1], err)
		}
		line, _, _ := strings.Cut(string(out), "\n")
		fmt.Fprintf(&b, "tool: %s\n", strings.TrimSpace(line))
	}
	return b.String(), nil
}

// CacheDir is where peers are cached for a lab cache directory.
func CacheDir(labCache string) string {
	if labCache == "" {
		labCache = lab.DefaultCacheDir()
	}
	return filepath.Join(labCache, "peers")
}

// Ensure returns the peers for kernel k, building them on first use
// (about a minute on two cores; see bench/README.md).
func Ensure(ctx context.Context, labCache string, k *lab.Kernel, progress io.Writer) (*Set, error) {
	return ensure(ctx, labCache, k, progress, true)
}

// Cached returns the peers for k if they were built, else an error
// wrapping ErrNotBuilt.
func Cached(ctx context.Context, labCache string, k *lab.Kernel) (*Set, error) {
	return ensure(ctx, labCache, k, nil, false)
}

func ensure(ctx context.Context, labCache string, k *lab.Kernel, progress io.Writer, build bool) (*Set, error) {
	if progress == nil {
		progress = io.Discard
	}
	if labCache == "" {
		labCache = lab.DefaultCacheDir()
	}
	m := seriesOf.FindStringSubmatch(k.Release)
	version := k.PackageVersion()
	if m == nil || version == "" || k.Suite == "" || k.Suite == "built" {
		return nil, fmt.Errorf("sched_ext peers: kernel %q (package %q, suite %q) is not a Debian image fetched by the lab: the peers are built from the linux-source package of the same version", k.Release, k.Package, k.Suite)
	}
	pkg := "linux-source-" + m[1]
	rec, err := recipe(ctx, k)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(rec))
	hash := hex.EncodeToString(sum[:])
	dir := filepath.Join(CacheDir(labCache), version+"-"+hash[:12])
	if s, err := load(dir); err == nil {
		return s, nil
	}
	if !build {
		return nil, fmt.Errorf("%s %s with recipe %s: %w (scx-slo-lab peers builds them)", pkg, version, hash[:12], ErrNotBuilt)
	}
	if err := os.MkdirAll(CacheDir(labCache), 0o755); err != nil {
		return nil, err
	}
	unlock, err := lab.LockDir(ctx, CacheDir(labCache), progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if s, err := load(dir); err == nil {
		return s, nil // built by another process meanwhile
	}
	btf, err := k.BTF(ctx, progress)
	if err != nil {
		return nil, err
	}
	b := &builder{ctx: ctx, progress: progress, pkg: pkg, version: version}
	return b.run(labCache, k, btf, dir, rec, hash)
}

func load(dir string) (*Set, error) {
	data, err := os.ReadFile(filepath.Join(dir, "build.json"))
	if err != nil {
		return nil, err
	}
	s := &Set{Dir: dir}
	if err := json.Unmarshal(data, &s.Info); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "build.json"), err)
	}
	for _, n := range Names {
		if err := CheckStatic(s.Binary(n)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

type builder struct {
	ctx          context.Context
	progress     io.Writer
	pkg, version string
	log          *os.File
	logPath      string
}

// step runs one command of the build, its output to the build log.
func (b *builder) step(dir, what string, args ...string) error {
	start := time.Now()
	fmt.Fprintf(b.progress, "peers: %s\n", what)
	fmt.Fprintf(b.log, "+ (cd %s && %s)\n", dir, strings.Join(args, " "))
	cmd := exec.CommandContext(b.ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = b.log, b.log
	// make forks compilers: on cancel, kill the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building sched_ext peers from %s %s: %s: %v (log: %s)", b.pkg, b.version, strings.Join(args, " "), err, b.logPath)
	}
	fmt.Fprintf(b.log, "# %s in %s\n", what, time.Since(start).Round(time.Millisecond))
	return nil
}

func (b *builder) run(labCache string, k *lab.Kernel, btf, dir, rec, hash string) (*Set, error) {
	start := time.Now()
	root := CacheDir(labCache)
	work := filepath.Join(root, "build-"+filepath.Base(dir))
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	b.logPath = filepath.Join(root, filepath.Base(dir)+".log")
	log, err := os.Create(b.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	b.log = log
	fmt.Fprintf(log, "# recipe sha256 %s\n%s", hash, rec)
	deb, err := lab.DownloadPackage(b.ctx, labCache, k.Suite, b.pkg, b.version, work, b.progress)
	if err != nil {
		return nil, err
	}
	tarball := "usr/src/" + b.pkg + ".tar.xz"
	if err := b.step(work, "unpacking "+filepath.Base(deb), "sh", "-c", "dpkg-deb --fsys-tarfile \"$1\" | tar -x ./\"$2\"", "sh", deb, tarball); err != nil {
		return nil, err
	}
	os.Remove(deb)
	paths := make([]string, len(srcDirs))
	for i, d := range srcDirs {
		paths[i] = b.pkg + "/" + d
	}
	if err := b.step(work, "extracting "+strings.Join(srcDirs, ", ")+" from "+filepath.Base(tarball), append([]string{"tar", "-xJf", tarball}, paths...)...); err != nil {
		return nil, err
	}
	src := filepath.Join(work, b.pkg)
	sliceDfl, err := sliceDefault(filepath.Join(src, "include/linux/sched/ext.h"))
	if err != nil {
		return nil, err
	}
	schedExt := filepath.Join(src, "tools/sched_ext")
	buildStart := time.Now()
	if err := b.step(schedExt, "make "+strings.Join(Names, " ")+" (the tree's libbpf and bpftool first)", makeArgs(btf)...); err != nil {
		return nil, err
	}
	stage := filepath.Join(work, "out")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return nil, err
	}
	info := BuildInfo{Source: b.pkg, Version: b.version, Suite: k.Suite, Kernel: k.Release, RecipeSHA256: hash, Recipe: rec, SliceDflNs: sliceDfl}
	for _, n := range Names {
		if err := b.step(schedExt, "linking "+n+" statically", linkArgs(n)...); err != nil {
			return nil, err
		}
		if err := CheckStatic(filepath.Join(schedExt, n)); err != nil {
			return nil, err
		}
		if err := os.Rename(filepath.Join(schedExt, n), filepath.Join(stage, n)); err != nil {
			return nil, err
		}
		p, err := describe(schedExt, n, sliceDfl)
		if err != nil {
			return nil, err
		}
		st, _ := os.Stat(filepath.Join(stage, n))
		p.Size = st.Size()
		info.Peers = append(info.Peers, p)
	}
	info.BuildSeconds = time.Since(buildStart).Round(time.Millisecond).Seconds()
	info.TotalSeconds = time.Since(start).Round(time.Millisecond).Seconds()
	info.BuiltAt = time.Now().UTC().Format(time.RFC3339)
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(stage, "build.json"), data, 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(stage, dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(b.progress, "peers: %s built from %s %s in %s (make and link %s), cached in %s\n",
		strings.Join(Names, ", "), b.pkg, b.version, time.Since(start).Round(time.Second), time.Duration(info.BuildSeconds*float64(time.Second)).Round(time.Second), dir)
	return load(dir)
}

var sliceDflDef = regexp.MustCompile(`SCX_SLICE_DFL\s*=\s*([0-9]+)\s*\*\s*([0-9]+)`)

// sliceDefault reads SCX_SLICE_DFL (the slice both peers give every task)
// from the tree's include/linux/sched/ext.h.
func sliceDefault(header string) (int64, error) {
	data, err := os.ReadFile(header)
	if err != nil {
		return 0, err
	}
	m := sliceDflDef.FindSubmatch(data)
	if m == nil {
		return 0, fmt.Errorf("%s: no SCX_SLICE_DFL = <n> * <m> definition", header)
	}
	a, _ := strconv.ParseInt(string(m[1]), 10, 64)
	c, _ := strconv.ParseInt(string(m[2]), 10, 64)
	return a * c, nil
}

var opsName = regexp.MustCompile(`\.name\s*=\s*"([a-z0-9_]+)"`)

// describe reads a peer's ops name and slicing from its source, so the
// report states what the built code does rather than what we assume.
func describe(dir, name string, sliceDfl int64) (Peer, error) {
	bpf, err := os.ReadFile(filepath.Join(dir, name+".bpf.c"))
	if err != nil {
		return Peer{}, err
	}
	loader, err := os.ReadFile(filepath.Join(dir, name+".c"))
	if err != nil {
		return Peer{}, err
	}
	m := opsName.FindSubmatch(bpf)
	if m == nil {
		return Peer{}, fmt.Errorf("%s.bpf.c: no .name = \"...\" in its ops", name)
	}
	p := Peer{Name: name, Ops: string(m[1])}
	task := fmt.Sprintf("every task gets SCX_SLICE_DFL (%s)", time.Duration(sliceDfl))
	if !strings.Contains(string(bpf), "SCX_SLICE_DFL") {
		task = "task slices not SCX_SLICE_DFL (see its source)"
	}
	if strings.Contains(string(bpf), "SCX_ENQ_PREEMPT") || strings.Contains(string(bpf), "SCX_KICK_PREEMPT") {
		task += ", preempts on wakeup"
	} else {
		task += ", no preemption on wakeup (a waking task waits for the running one's slice to end or for it to block)"
	}
	if strings.Contains(string(loader), "SLICE_US") {
		p.SliceFlag = "-s"
		p.Slice = task + "; -s SLICE_US sets only how long a cgroup keeps a CPU before the next cgroup's turn (default SCX_SLICE_DFL)"
	} else {
		p.Slice = task + "; no flag changes it"
	}
	return p, nil
}

// CheckStatic fails unless path is an ELF executable with no dynamic
// loader and no shared-library dependencies: the guest has no libc.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%s is dynamically linked (%v program header): the guest has no libc", path, p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v: the guest has no libc", path, libs)
	}
	return nil
}
