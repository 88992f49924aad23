package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kernel is a cached guest kernel with sched_ext enabled.
type Kernel struct {
	Release string // uname -r, e.g. "7.3.4+deb13-amd64"
	Vmlinuz string // bzImage to boot
	Config  string // its kernel config
	Suite   string // Debian suite it came from
	Package string // package and version, e.g. "linux-image-7.3.4+deb13-amd64 7.3.4-1~bpo13+1"
}

// kernelSuites are searched in order; the first suite with a usable kernel
// wins, newest version first.
var kernelSuites = []string{"trixie-backports", "sid"}

// requiredConfig must all be "y" in a guest kernel's config.
var requiredConfig = []string{"CONFIG_SCHED_CLASS_EXT", "CONFIG_EXT_GROUP_SCHED", "CONFIG_DEBUG_INFO_BTF", "CONFIG_BPF_SYSCALL"}

// candidatesPerSuite bounds how many versions we download before giving up
// on a suite (each try costs ~15 MB).
const candidatesPerSuite = 3

// DefaultCacheDir is $SCX_SLO_LAB_CACHE, else $XDG_CACHE_HOME/scx-slo/lab,
// else /var/cache/scx-slo/lab for root and ~/.cache/scx-slo/lab otherwise.
func DefaultCacheDir() string {
	if d := os.Getenv("SCX_SLO_LAB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "scx-slo", "lab")
	}
	if os.Geteuid() == 0 {
		return "/var/cache/scx-slo/lab"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "scx-slo", "lab")
	}
	return filepath.Join(os.TempDir(), "scx-slo-lab")
}

// EnsureKernel returns the cached kernel, downloading one on first use.
// An empty cacheDir means DefaultCacheDir(). Progress lines go to progress
// (may be nil).
func EnsureKernel(ctx context.Context, cacheDir string, progress io.Writer) (*Kernel, error) {
	return ensureKernel(ctx, cacheDir, progress, false)
}

// RefreshKernel asks apt for the newest suitable kernel even if one is
// cached, and makes it the cached default.
func RefreshKernel(ctx context.Context, cacheDir string, progress io.Writer) (*Kernel, error) {
	return ensureKernel(ctx, cacheDir, progress, true)
}

func ensureKernel(ctx context.Context, cacheDir string, progress io.Writer, refresh bool) (*Kernel, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if progress == nil {
		progress = io.Discard
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab cache directory %q: %w", cacheDir, err)
	}
	unlock, err := lockDir(ctx, cacheDir, progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !refresh {
		if k, err := loadCachedKernel(cacheDir); err == nil {
			return k, nil
		}
	}
	k, err := fetchKernel(ctx, cacheDir, progress)
	if err != nil {
		return nil, err
	}
	data, _ := json.MarshalIndent(cachedKernel{k.Release, k.Suite, k.Package}, "", "  ")
	if err := writeFileAtomic(filepath.Join(cacheDir, "kernel.json"), data); err != nil {
		return nil, err
	}
	return k, nil
}

// lockDir serialises cache updates between processes (go test runs
// packages in parallel, each may want the kernel).
func lockDir(ctx context.Context, dir string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab cache lock: %w", err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lab cache lock: %w", err)
		}
		if !said {
			fmt.Fprintf(progress, "lab: waiting for another process using %s\n", dir)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// cachedKernel is kernel.json: which release is the cache's default. Paths
// are derived, so the cache directory can move.
type cachedKernel struct {
	Release string `json:"release"`
	Suite   string `json:"suite"`
	Package string `json:"package"`
}

func loadCachedKernel(cacheDir string) (*Kernel, error) {
	data, err := os.ReadFile(filepath.Join(cacheDir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var c cachedKernel
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(cacheDir, "kernel.json"), err)
	}
	if c.Release == "" || strings.ContainsAny(c.Release, "/\\") {
		return nil, fmt.Errorf("%s: bad release %q", filepath.Join(cacheDir, "kernel.json"), c.Release)
	}
	k := newKernel(cacheDir, c.Release)
	k.Suite, k.Package = c.Suite, c.Package
	for _, p := range []string{k.Vmlinuz, k.Config} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func newKernel(cacheDir, release string) *Kernel {
	dir := filepath.Join(cacheDir, "kernels", release)
	return &Kernel{Release: release, Vmlinuz: filepath.Join(dir, "vmlinuz"), Config: filepath.Join(dir, "config")}
}

func (k *Kernel) dir() string { return filepath.Dir(k.Vmlinuz) }

func fetchKernel(ctx context.Context, cacheDir string, progress io.Writer) (*Kernel, error) {
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: the lab downloads its guest kernel with apt on a Debian host", tool)
		}
	}
	k, reasons, err := fetchFromSuites(ctx, cacheDir, func(string) bool { return true }, candidatesPerSuite, "*", progress)
	if k != nil || err != nil {
		return k, err
	}
	return nil, fmt.Errorf("no Debian kernel with %s found in %s:\n  %s",
		strings.Join(requiredConfig, "=y, ")+"=y", strings.Join(kernelSuites, ", "), strings.Join(reasons, "\n  "))
}

// fetchFromSuites downloads the newest usable kernel of kernelSuites whose
// release accept takes, trying at most limit releases a suite (0: all). It
// returns why each suite and candidate failed when none would do; pattern
// names the accepted releases in those reasons ("*", "6.12.*").
func fetchFromSuites(ctx context.Context, cacheDir string, accept func(release string) bool, limit int, pattern string, progress io.Writer) (*Kernel, []string, error) {
	archive, err := hostDebianArchive("/etc/apt", "/etc/os-release")
	if err != nil {
		return nil, nil, err
	}
	var reasons []string
	for _, suite := range kernelSuites {
		a, err := newPrivateApt(cacheDir, archive, suite)
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(progress, "lab: updating package lists for %s from %s (source found in %s)\n", suite, archive.URI, archive.From)
		if err := a.update(ctx); err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		releases, err := a.kernelReleases(ctx)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		tried := 0
		for _, rel := range releases {
			if !accept(rel) {
				continue
			}
			if limit > 0 && tried == limit {
				break
			}
			tried++
			k, err := a.fetchRelease(ctx, cacheDir, rel, progress)
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, ctx.Err()
				}
				reasons = append(reasons, err.Error())
				fmt.Fprintf(progress, "lab: skipping %s: %v\n", rel, err)
				continue
			}
			return k, nil, nil
		}
		if tried == 0 {
			reasons = append(reasons, suite+": no linux-image-"+pattern+"-amd64 packages")
		}
	}
	return nil, reasons, nil
}

// privateApt runs apt-get/apt-cache against a sources list and state of our
// own, so the host's apt configuration is never changed.
type privateApt struct {
	suite string
	dir   string
	opts  []string
}

func newPrivateApt(cacheDir string, archive *debianArchive, suite string) (*privateApt, error) {
	dir := filepath.Join(cacheDir, "apt", suite)
	for _, d := range []string{"lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	signedBy := archive.SignedBy
	if strings.HasPrefix(signedBy, "-----BEGIN") {
		// Inline key from a deb822 source: apt accepts an armored file.
		key := filepath.Join(dir, "keyring.asc")
		if err := os.WriteFile(key, []byte(signedBy+"\n"), 0o644); err != nil {
			return nil, err
		}
		signedBy = key
	}
	opt := ""
	if signedBy != "" {
		opt = "[signed-by=" + signedBy + "] "
	}
	line := fmt.Sprintf("deb %s%s %s main\n", opt, archive.URI, suite)
	if err := os.WriteFile(filepath.Join(dir, "sources.list"), []byte(line), 0o644); err != nil {
		return nil, err
	}
	status := filepath.Join(dir, "status")
	if err := os.WriteFile(status, nil, 0o644); err != nil {
		return nil, err
	}
	return &privateApt{suite: suite, dir: dir, opts: []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(dir, "sources.list.d"),
		"-o", "Dir::Etc::Preferences=" + filepath.Join(dir, "preferences"),
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(dir, "preferences.d"),
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::State::Status=" + status,
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "APT::Architecture=amd64",
		"-o", "APT::Architectures=amd64",
		"-o", "Acquire::Languages=none",
		"-o", "APT::Sandbox::User=root",
		"-o", "Debug::NoLocking=1",
	}}, nil
}

func (a *privateApt) run(ctx context.Context, dir, tool string, args ...string) (string, error) {
	out, _, err := a.run2(ctx, dir, tool, args...)
	return out, err
}

// run2 also returns stderr, where apt reports failures it does not count
// as errors.
func (a *privateApt) run2(ctx context.Context, dir, tool string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, tool, append(append([]string{}, a.opts...), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("%s %s (suite %s): %v: %s", tool, strings.Join(args, " "), a.suite, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), nil
}

func (a *privateApt) update(ctx context.Context) error {
	_, stderr, err := a.run2(ctx, a.dir, "apt-get", "-q", "update")
	if err != nil {
		return err
	}
	// apt-get update exits 0 when an index could not be fetched.
	if strings.Contains(stderr, "Failed to fetch") || strings.Contains(stderr, "failed to download") {
		return fmt.Errorf("apt-get update (suite %s) could not fetch the index: %s", a.suite, strings.TrimSpace(stderr))
	}
	return nil
}

// Generic flavour only: "-cloud" lacks drivers and "-rt" changes scheduling.
var imageName = regexp.MustCompile(`^linux-image-([0-9][^ ]*)-amd64$`)

// kernelReleases lists kernel releases in the suite, newest first.
func (a *privateApt) kernelReleases(ctx context.Context) ([]string, error) {
	out, err := a.run(ctx, a.dir, "apt-cache", "search", "--names-only", `^linux-image-[0-9].*-amd64$`)
	if err != nil {
		return nil, err
	}
	var rels []string
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(line, " ")
		m := imageName.FindStringSubmatch(name)
		if m == nil || strings.HasSuffix(m[1], "-cloud") || strings.HasSuffix(m[1], "-rt") {
			continue
		}
		rels = append(rels, m[1]+"-amd64")
	}
	sort.Slice(rels, func(i, j int) bool { return versionLess(rels[j], rels[i]) })
	return rels, nil
}

// versionLess compares releases field by numeric field, so that
// 7.3.10+deb13 (7 3 10 13) sorts after 7.3.4+deb13 (7 3 4 13).
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return a < b
}

var digits = regexp.MustCompile(`[0-9]+`)

func numbers(s string) []int {
	var out []int
	for _, d := range digits.FindAllString(s, -1) {
		n, _ := strconv.Atoi(d)
		out = append(out, n)
	}
	return out
}

// fetchRelease downloads the packages of one kernel release, config first so
// a kernel without sched_ext is rejected before the big image is fetched.
func (a *privateApt) fetchRelease(ctx context.Context, cacheDir, release string, progress io.Writer) (*Kernel, error) {
	image := "linux-image-" + release
	show, err := a.run(ctx, a.dir, "apt-cache", "show", "--no-all-versions", image)
	if err != nil {
		return nil, err
	}
	version, deps := controlField(show, "Version"), controlField(show, "Depends")
	// Since 6.19 Debian splits the kernel: linux-base-<rel> has the config,
	// linux-binary-<rel> the vmlinuz; older images carry both in /boot.
	pkgs := []string{}
	for _, p := range []string{"linux-base-" + release, image, "linux-binary-" + release} {
		if p == image || dependsOn(deps, p) {
			pkgs = append(pkgs, p)
		}
	}
	stage, err := os.MkdirTemp(cacheDir, "fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	root := filepath.Join(stage, "root")
	var config, vmlinuz string
	for _, p := range pkgs {
		start := time.Now()
		fmt.Fprintf(progress, "lab: downloading %s %s from %s\n", p, version, a.suite)
		if _, err := a.run(ctx, stage, "apt-get", "-q", "download", p); err != nil {
			return nil, err
		}
		debs, _ := filepath.Glob(filepath.Join(stage, p+"_*.deb"))
		if len(debs) != 1 {
			return nil, fmt.Errorf("apt-get download %s: expected one .deb in %s, found %d", p, stage, len(debs))
		}
		fmt.Fprintf(progress, "lab: unpacking %s\n", filepath.Base(debs[0]))
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, out)
		}
		os.Remove(debs[0])
		fmt.Fprintf(progress, "lab: %s done in %s\n", p, time.Since(start).Round(time.Millisecond))
		if config == "" {
			config = firstExisting(filepath.Join(root, "usr/lib/modules", release, "config"), filepath.Join(root, "boot", "config-"+release))
			if config != "" {
				if err := checkConfig(config); err != nil {
					return nil, fmt.Errorf("%s %s: %w", image, version, err)
				}
			}
		}
		if vmlinuz == "" {
			vmlinuz = firstExisting(filepath.Join(root, "usr/lib/modules", release, "vmlinuz"), filepath.Join(root, "boot", "vmlinuz-"+release))
		}
	}
	if config == "" || vmlinuz == "" {
		return nil, fmt.Errorf("%s %s: packages %v did not contain both vmlinuz and config (found %q, %q)", image, version, pkgs, vmlinuz, config)
	}
	k := newKernel(cacheDir, release)
	k.Suite, k.Package = a.suite, image+" "+version
	tmp := filepath.Join(stage, "kernel")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	for src, dst := range map[string]string{vmlinuz: "vmlinuz", config: "config"} {
		if err := os.Rename(src, filepath.Join(tmp, dst)); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(k.dir()), 0o755); err != nil {
		return nil, err
	}
	os.RemoveAll(k.dir())
	if err := os.Rename(tmp, k.dir()); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "lab: kernel %s cached in %s\n", release, k.dir())
	return k, nil
}

func controlField(text, name string) string {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func dependsOn(depends, pkg string) bool {
	for _, d := range strings.Split(depends, ",") {
		for _, alt := range strings.Split(d, "|") {
			if f := strings.Fields(alt); len(f) > 0 && f[0] == pkg {
				return true
			}
		}
	}
	return false
}

func firstExisting(paths ...string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// checkConfig verifies the options the lab needs are built in.
func checkConfig(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	set := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && v == "y" {
			set[k] = true
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	var missing []string
	for _, opt := range requiredConfig {
		if !set[opt] {
			missing = append(missing, opt)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel config lacks %s=y", strings.Join(missing, "=y, "))
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
