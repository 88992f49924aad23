package lab

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// schedExtConfig is the config fragment for kernels built from source:
// applied to `make allnoconfig`, so only what the guest needs is built.
//
//go:embed kconfig/sched_ext.config
var schedExtConfig []byte

// BuildInfo is build.json beside a built kernel: how it was made.
type BuildInfo struct {
	Source       string  `json:"source"`        // package, e.g. "linux-source-6.12"
	Version      string  `json:"version"`       // its Debian version
	ConfigSHA256 string  `json:"config_sha256"` // of kconfig/sched_ext.config
	Steps        string  `json:"steps"`         // the commands run in the source tree
	Compiler     string  `json:"compiler"`      // gcc --version, first line
	Pahole       string  `json:"pahole"`        // pahole --version
	Jobs         int     `json:"jobs"`          // make -j
	BuildSeconds float64 `json:"build_seconds"` // the make bzImage step, wall clock
	// CPUSeconds is that step's user+system CPU time (make and every
	// compiler it ran): unlike BuildSeconds, it hardly moves with the
	// host's load, so builds on a shared host compare by it.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	BuiltAt    string  `json:"built_at"` // RFC 3339, UTC
}

var seriesPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// BuildKernel returns the kernel built from Debian's linux-source-<series>
// package (e.g. series "6.12", whose Debian images lack sched_ext) with
// kconfig/sched_ext.config, building it on first use with make -j<CPUs>.
// It is cached as kernels/<package version>-<config hash>/ with
// build.json. The package comes from the host's own apt sources (nothing
// is installed); building needs gcc, make, flex, bison, bc, libelf-dev and
// pahole (dwarves).
func BuildKernel(ctx context.Context, cacheDir, series string, progress io.Writer) (*Kernel, error) {
	return buildKernel(ctx, cacheDir, series, progress, true)
}

// ErrNotBuilt: the kernel would have to be built first (many minutes).
var ErrNotBuilt = errors.New("kernel not built yet")

func buildKernel(ctx context.Context, cacheDir, series string, progress io.Writer, build bool) (*Kernel, error) {
	if !seriesPattern.MatchString(series) {
		return nil, fmt.Errorf("kernel series %q: want MAJOR.MINOR, e.g. 6.12", series)
	}
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if progress == nil {
		progress = io.Discard
	}
	pkg := "linux-source-" + series
	show, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).Output()
	version := controlField(string(show), "Version")
	if err != nil || version == "" {
		return nil, fmt.Errorf("%s is not in this host's apt sources (apt-cache show: %v); add a suite that has it (for 6.12: bookworm-security or bookworm-backports, or trixie) and run apt-get update", pkg, err)
	}
	sum := sha256.Sum256(schedExtConfig)
	hash := hex.EncodeToString(sum[:])
	name := version + "-" + hash[:12]
	k := newKernel(cacheDir, name)
	k.Suite, k.Package = "built", pkg+" "+version
	if _, err := os.Stat(filepath.Join(k.dir(), "build.json")); err == nil {
		return k, nil
	}
	if !build {
		return nil, fmt.Errorf("%s %s with config %s: %w (scx-slo-lab kernel --kernel %s builds it)", pkg, version, hash[:12], ErrNotBuilt, series)
	}
	// A separate lock from EnsureKernel's: a build takes many minutes.
	lockPath := filepath.Join(cacheDir, "build")
	if err := os.MkdirAll(lockPath, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockDir(ctx, lockPath, progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(k.dir(), "build.json")); err == nil {
		return k, nil // built by another process meanwhile
	}
	for _, tool := range []string{"apt-get", "dpkg-deb", "tar", "make", "gcc", "flex", "bison", "bc", "pahole"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("building %s: %s not found (packages: build-essential flex bison bc libelf-dev dwarves)", pkg, tool)
		}
	}
	work := filepath.Join(lockPath, name)
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	logPath := filepath.Join(lockPath, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	var cpu time.Duration // of the last step
	step := func(dir, what string, args ...string) error {
		start := time.Now()
		fmt.Fprintf(progress, "lab: %s\n", what)
		fmt.Fprintf(logf, "+ %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		cmd.Stdout, cmd.Stderr = logf, logf
		// make re-executes itself and forks compilers: on cancel, kill
		// the whole process group, not only the first make.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s %s: %s: %v (log: %s)", pkg, version, strings.Join(args, " "), err, logPath)
		}
		// wait4's usage of make includes the children it waited for.
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		fmt.Fprintf(logf, "# %s in %s\n", what, time.Since(start).Round(time.Second))
		return nil
	}
	if err := step(work, "downloading "+pkg+" "+version, "apt-get", "-q", "download", pkg+"="+version); err != nil {
		return nil, err
	}
	debs, _ := filepath.Glob(filepath.Join(work, pkg+"_*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: expected one .deb in %s, found %d", pkg, work, len(debs))
	}
	if err := step(work, "unpacking "+filepath.Base(debs[0]), "dpkg-deb", "-x", debs[0], "pkg"); err != nil {
		return nil, err
	}
	tarball := filepath.Join(work, "pkg/usr/src", pkg+".tar.xz")
	if err := step(work, "extracting "+filepath.Base(tarball), "tar", "-xJf", tarball); err != nil {
		return nil, err
	}
	src := filepath.Join(work, pkg)
	fragment := filepath.Join(work, "sched_ext.config")
	if err := os.WriteFile(fragment, schedExtConfig, 0o644); err != nil {
		return nil, err
	}
	jobs := runtime.NumCPU()
	steps := []string{
		"make allnoconfig",
		"scripts/kconfig/merge_config.sh -m .config sched_ext.config",
		"make olddefconfig",
		fmt.Sprintf("make -j%d bzImage", jobs),
	}
	for _, s := range steps[:3] {
		args := strings.Fields(strings.Replace(s, "sched_ext.config", fragment, 1))
		if err := step(src, "configuring: "+s, args...); err != nil {
			return nil, err
		}
	}
	if err := checkFragmentApplied(filepath.Join(src, ".config"), schedExtConfig); err != nil {
		return nil, fmt.Errorf("building %s %s: %w", pkg, version, err)
	}
	start := time.Now()
	fmt.Fprintf(progress, "lab: building %s %s with make -j%d (many minutes; log: %s)\n", pkg, version, jobs, logPath)
	if err := step(src, "compiling", "make", fmt.Sprintf("-j%d", jobs), "bzImage"); err != nil {
		return nil, err
	}
	took := time.Since(start)
	stage := filepath.Join(work, "kernel")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return nil, err
	}
	for from, to := range map[string]string{"arch/x86/boot/bzImage": "vmlinuz", ".config": "config"} {
		if err := os.Rename(filepath.Join(src, from), filepath.Join(stage, to)); err != nil {
			return nil, err
		}
	}
	if err := extractBTF(filepath.Join(src, "vmlinux"), filepath.Join(stage, "vmlinux.btf")); err != nil {
		return nil, err
	}
	info := BuildInfo{
		Source: pkg, Version: version, ConfigSHA256: hash,
		Steps:    strings.Join(steps, " && "),
		Compiler: firstLine(ctx, "gcc", "--version"), Pahole: firstLine(ctx, "pahole", "--version"),
		Jobs: jobs, BuildSeconds: took.Round(time.Second).Seconds(), CPUSeconds: cpu.Round(time.Second).Seconds(), BuiltAt: time.Now().UTC().Format(time.RFC3339),
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(stage, "build.json"), data, 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(k.dir()), 0o755); err != nil {
		return nil, err
	}
	os.RemoveAll(k.dir())
	if err := os.Rename(stage, k.dir()); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "lab: kernel %s built in %s, cached in %s\n", name, took.Round(time.Second), k.dir())
	return k, nil
}

// checkFragmentApplied verifies every option the fragment sets survived
// olddefconfig (an unmet dependency silently drops one), and that every
// option it switches off stayed off (another option may select it).
func checkFragmentApplied(config string, fragment []byte) error {
	data, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			have[k] = v
		}
	}
	var lost, selected []string
	for _, line := range strings.Split(string(fragment), "\n") {
		if k, ok := strings.CutSuffix(strings.TrimPrefix(line, "# "), " is not set"); ok && strings.HasPrefix(line, "# CONFIG_") {
			if v, on := have[k]; on {
				selected = append(selected, k+"="+v)
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && !strings.HasPrefix(line, "#") && have[k] != v {
			lost = append(lost, line)
		}
	}
	var errs []error
	if len(lost) > 0 {
		errs = append(errs, fmt.Errorf("config options lost to unmet dependencies: %s", strings.Join(lost, ", ")))
	}
	if len(selected) > 0 {
		errs = append(errs, fmt.Errorf("config options the fragment switches off are on (selected by another option): %s", strings.Join(selected, ", ")))
	}
	return errors.Join(errs...)
}

// extractBTF writes vmlinux's .BTF section: what the guest serves at
// /sys/kernel/btf/vmlinux.
func extractBTF(vmlinux, dst string) error {
	f, err := elf.Open(vmlinux)
	if err != nil {
		return err
	}
	defer f.Close()
	sec := f.Section(".BTF")
	if sec == nil {
		return fmt.Errorf("%s has no .BTF section (CONFIG_DEBUG_INFO_BTF)", vmlinux)
	}
	data, err := sec.Data()
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

func firstLine(ctx context.Context, tool string, args ...string) string {
	out, err := exec.CommandContext(ctx, tool, args...).Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// ReadBuildInfo returns how k was built, or nil for a downloaded kernel.
func (k *Kernel) ReadBuildInfo() (*BuildInfo, error) {
	data, err := os.ReadFile(filepath.Join(k.dir(), "build.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var b BuildInfo
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(k.dir(), "build.json"), err)
	}
	return &b, nil
}
