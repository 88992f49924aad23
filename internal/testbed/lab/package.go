package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DownloadPackage fetches the Debian package name at version from suite
// (a kernel's Suite, e.g. "trixie-backports") into dir, through the same
// private apt state under cacheDir the lab fetches kernels with, so the
// host's apt configuration is never changed. It returns the .deb's path.
func DownloadPackage(ctx context.Context, cacheDir, suite, name, version, dir string, progress io.Writer) (string, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if progress == nil {
		progress = io.Discard
	}
	if suite == "" || suite == "built" {
		return "", fmt.Errorf("downloading %s %s: suite %q is not a Debian suite (the kernel was not downloaded with apt)", name, version, suite)
	}
	archive, err := hostDebianArchive("/etc/apt", "/etc/os-release")
	if err != nil {
		return "", err
	}
	a, err := newPrivateApt(cacheDir, archive, suite)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "lab: updating package lists for %s from %s (source found in %s)\n", suite, archive.URI, archive.From)
	if err := a.update(ctx); err != nil {
		return "", err
	}
	start := time.Now()
	fmt.Fprintf(progress, "lab: downloading %s %s from %s\n", name, version, suite)
	if _, err := a.run(ctx, dir, "apt-get", "-q", "download", name+"="+version); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s: expected one .deb in %s, found %d", name, version, dir, len(debs))
	}
	if _, err := os.Stat(debs[0]); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "lab: %s downloaded in %s\n", filepath.Base(debs[0]), time.Since(start).Round(time.Millisecond))
	return debs[0], nil
}

// LockDir holds an exclusive lock on dir (a .lock file in it) until the
// returned function is called, waiting for other processes meanwhile:
// for caches beside the lab's that more than one process may fill.
func LockDir(ctx context.Context, dir string, progress io.Writer) (func(), error) {
	if progress == nil {
		progress = io.Discard
	}
	return lockDir(ctx, dir, progress)
}

// PackageVersion is the Debian version of the package a kernel came
// from, e.g. "7.3.4-1~bpo13+1" for "linux-image-7.3.4+deb13-amd64
// 7.3.4-1~bpo13+1"; "" when unknown.
func (k *Kernel) PackageVersion() string {
	if i := strings.LastIndex(k.Package, " "); i >= 0 {
		return k.Package[i+1:]
	}
	return ""
}
