// Package kubeassets provides the kube-apiserver and etcd binaries that
// envtest runs, built from Go modules into a cache outside the repo
// (/var/cache/scx-slo/kube/<version>/) the first time they are missing.
// Nothing is downloaded prebuilt: kube-apiserver is not packaged by
// Debian, so both come from the Go module proxy through the go command.
//
// kube-apiserver is built in a throwaway module that requires
// k8s.io/kubernetes and replaces every k8s.io/<staging> module its go.mod
// points at ./staging with the published v0.<minor>.<patch> module (the
// kubernetes module cannot be required otherwise); optimisations are off
// (-gcflags=all=-N -l), which halves a cold build and does not matter for
// tests. etcd is built the same way from go.etcd.io/etcd/server/v3.
// Tests call Ensure (through EnvtestAssets); .ci/run calls it through
// `go run ./internal/testbed/kubeassets/cmd` before `make test`.
package kubeassets

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Versions built. The staging modules of k8s.io/kubernetes v1.X.Y are
// published as v0.X.Y; they match the k8s.io/* modules in go.mod.
const (
	KubeVersion    = "v1.37.2"
	StagingVersion = "v0.37.2"
	EtcdVersion    = "v3.7.3"
)

// DefaultCacheRoot holds one directory per KubeVersion.
const DefaultCacheRoot = "/var/cache/scx-slo/kube"

// CacheEnv overrides DefaultCacheRoot.
const CacheEnv = "SCX_SLO_KUBE_CACHE"

// Assets are the paths of the two binaries.
type Assets struct {
	APIServer string // kube-apiserver
	Etcd      string
}

// Dir is the cache directory for this package's versions.
func Dir() string {
	root := os.Getenv(CacheEnv)
	if root == "" {
		root = DefaultCacheRoot
	}
	return filepath.Join(root, KubeVersion)
}

func paths() Assets {
	return Assets{
		APIServer: filepath.Join(Dir(), "kube-apiserver"),
		Etcd:      filepath.Join(Dir(), "etcd-"+EtcdVersion),
	}
}

// Find returns the cached binaries, or an error naming what is missing.
func Find() (Assets, error) {
	a := paths()
	for _, p := range []string{a.APIServer, a.Etcd} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return a, fmt.Errorf("%s is missing: run go run ./internal/testbed/kubeassets/cmd", p)
		}
	}
	return a, nil
}

// Ensure returns the cached binaries, building whichever is missing and
// printing progress to log. Concurrent callers (several test packages,
// .ci/run) wait for one build under a lock file.
func Ensure(ctx context.Context, log io.Writer) (Assets, error) {
	a := paths()
	if err := os.MkdirAll(Dir(), 0o755); err != nil {
		return a, err
	}
	lock, err := os.OpenFile(filepath.Join(Dir(), ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return a, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return a, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if !reports(ctx, a.Etcd, "etcd Version: "+strings.TrimPrefix(EtcdVersion, "v")) {
		if err := buildEtcd(ctx, log, a.Etcd); err != nil {
			return a, fmt.Errorf("build etcd %s: %w", EtcdVersion, err)
		}
	}
	if !reports(ctx, a.APIServer, "Kubernetes "+KubeVersion) {
		if err := buildAPIServer(ctx, log, a.APIServer); err != nil {
			return a, fmt.Errorf("build kube-apiserver %s: %w", KubeVersion, err)
		}
	}
	return a, nil
}

// reports says whether the binary at p runs and its --version output
// names want; a binary from another version (or a half-finished copy)
// is rebuilt.
func reports(ctx context.Context, p, want string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "--version").CombinedOutput()
	return err == nil && bytes.Contains(out, []byte(want))
}

func buildEtcd(ctx context.Context, log io.Writer, out string) error {
	m, err := newModule("kubeassets.invalid/etcd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(m.dir)
	fmt.Fprintf(log, "kubeassets: resolving go.etcd.io/etcd/server/v3@%s in %s\n", EtcdVersion, m.dir)
	if err := m.goCmd(ctx, log, "get", "go.etcd.io/etcd/server/v3@"+EtcdVersion); err != nil {
		return err
	}
	return m.build(ctx, log, "etcd", out, "go.etcd.io/etcd/server/v3", nil)
}

func buildAPIServer(ctx context.Context, log io.Writer, out string) error {
	m, err := newModule("kubeassets.invalid/kube-apiserver")
	if err != nil {
		return err
	}
	defer os.RemoveAll(m.dir)
	fmt.Fprintf(log, "kubeassets: resolving k8s.io/kubernetes@%s in %s\n", KubeVersion, m.dir)
	staging, err := m.stagingModules(ctx)
	if err != nil {
		return err
	}
	args := []string{"mod", "edit", "-require=k8s.io/kubernetes@" + KubeVersion}
	for _, s := range staging {
		args = append(args, "-replace="+s+"="+s+"@"+StagingVersion)
	}
	if err := m.goCmd(ctx, log, args...); err != nil {
		return err
	}
	fmt.Fprintf(log, "kubeassets: %d staging modules replaced by %s; resolving dependencies\n", len(staging), StagingVersion)
	if err := m.goCmd(ctx, log, "get", "k8s.io/kubernetes/cmd/kube-apiserver@"+KubeVersion); err != nil {
		return err
	}
	// The version the kubernetes build scripts stamp in; without it the
	// server reports v0.0.0 at /version.
	ldflags := "-ldflags=-X k8s.io/component-base/version.gitVersion=" + KubeVersion +
		" -X k8s.io/component-base/version.gitMajor=" + major(KubeVersion) +
		" -X k8s.io/component-base/version.gitMinor=" + minor(KubeVersion) +
		" -X k8s.io/component-base/version.gitTreeState=clean"
	return m.build(ctx, log, "kube-apiserver", out, "k8s.io/kubernetes/cmd/kube-apiserver", []string{"-gcflags=all=-N -l", ldflags})
}

func major(v string) string { return strings.Split(strings.TrimPrefix(v, "v"), ".")[0] }
func minor(v string) string { return strings.Split(v, ".")[1] }

// module is a throwaway Go module in a temp dir.
type module struct{ dir string }

func newModule(path string) (*module, error) {
	dir, err := os.MkdirTemp("", "scx-slo-kubeassets-")
	if err != nil {
		return nil, err
	}
	gomod := fmt.Sprintf("module %s\n\ngo 1.26\n", path)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &module{dir: dir}, nil
}

// env keeps the caller's toolchain settings (GOPROXY, GOMODCACHE, ...)
// but isolates the module from any workspace and builds static binaries.
func (m *module) env() []string {
	return append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
}

func (m *module) goCmd(ctx context.Context, log io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = m.dir, m.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.Bytes())
	}
	return nil
}

// stagingModules lists the k8s.io modules the kubernetes go.mod replaces
// with its ./staging directories.
func (m *module) stagingModules(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "k8s.io/kubernetes@"+KubeVersion)
	cmd.Dir, cmd.Env = m.dir, m.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download k8s.io/kubernetes@%s: %w\n%s", KubeVersion, err, stderr.Bytes())
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(out, &info); err != nil || info.GoMod == "" {
		return nil, fmt.Errorf("go mod download: no go.mod in %s", out)
	}
	data, err := os.ReadFile(info.GoMod)
	if err != nil {
		return nil, err
	}
	return parseStaging(data), nil
}

var stagingReplace = regexp.MustCompile(`(?m)^\s*(?:replace\s+)?(k8s\.io/[A-Za-z0-9._/-]+)\s*=>\s*\./staging/`)

// parseStaging finds "k8s.io/x => ./staging/src/k8s.io/x" replacements,
// inside a replace block or on replace lines.
func parseStaging(gomod []byte) []string {
	var mods []string
	for _, m := range stagingReplace.FindAllSubmatch(gomod, -1) {
		mods = append(mods, string(m[1]))
	}
	return mods
}

// build compiles pkg into out (via a temp file beside it, renamed in
// place), printing a line every 100 packages compiled.
func (m *module) build(ctx context.Context, log io.Writer, name, out, pkg string, flags []string) error {
	tmp := out + ".tmp"
	args := append([]string{"build", "-v", "-trimpath", "-o", tmp}, flags...)
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = m.dir, m.env()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	fmt.Fprintf(log, "kubeassets: building %s (go %s); a cold build takes minutes\n", name, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return err
	}
	var tail []string // the last lines, for a failure
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		n := 0
		for sc.Scan() {
			n++
			if tail = append(tail, sc.Text()); len(tail) > 40 {
				tail = tail[1:]
			}
			if n%100 == 0 {
				fmt.Fprintf(log, "kubeassets: %s: %d packages, %s\n", name, n, time.Since(start).Round(time.Second))
			}
		}
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, strings.Join(tail, "\n"))
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(log, "kubeassets: built %s in %s\n", out, time.Since(start).Round(time.Second))
	return nil
}
