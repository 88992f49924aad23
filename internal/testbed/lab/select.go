package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// sourceBuilt are the series the lab builds from Debian's source package
// because Debian's own images of them lack sched_ext.
var sourceBuilt = map[string]bool{"6.12": true}

// ResolveKernel returns the kernel that spec names:
//   - "": the default kernel (EnsureKernel);
//   - a series such as "6.12" or "7.2": built from linux-source-<series>
//     for 6.12 (BuildKernel), else the newest cached or packaged
//     linux-image-<series>.*-amd64 with sched_ext;
//   - a path: a directory with vmlinuz and config (like a cache entry), or
//     a bzImage file;
//   - anything else: a release cached under kernels/.
func ResolveKernel(ctx context.Context, cacheDir, spec string, progress io.Writer) (*Kernel, error) {
	return resolveKernel(ctx, cacheDir, spec, progress, true)
}

// ResolveBuiltKernel is ResolveKernel without building from source: a
// kernel that needs building yields an error wrapping ErrNotBuilt.
func ResolveBuiltKernel(ctx context.Context, cacheDir, spec string, progress io.Writer) (*Kernel, error) {
	return resolveKernel(ctx, cacheDir, spec, progress, false)
}

func resolveKernel(ctx context.Context, cacheDir, spec string, progress io.Writer, build bool) (*Kernel, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	switch {
	case spec == "":
		return EnsureKernel(ctx, cacheDir, progress)
	case strings.Contains(spec, "/"):
		return kernelAt(spec)
	case sourceBuilt[spec]:
		return buildKernel(ctx, cacheDir, spec, progress, build)
	case seriesPattern.MatchString(spec):
		return seriesKernel(ctx, cacheDir, spec, progress)
	}
	k := newKernel(cacheDir, spec)
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, fmt.Errorf("--kernel %q: not a series (e.g. 6.12), a path, or a release cached in %s", spec, filepath.Join(cacheDir, "kernels"))
	}
	return k, nil
}

func kernelAt(path string) (*Kernel, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--kernel %q: %w", path, err)
	}
	if !st.IsDir() {
		return &Kernel{Release: filepath.Base(path), Vmlinuz: path, Config: firstExisting(filepath.Join(filepath.Dir(path), "config")), Suite: "path"}, nil
	}
	k := &Kernel{Release: filepath.Base(path), Vmlinuz: filepath.Join(path, "vmlinuz"), Config: filepath.Join(path, "config"), Suite: "path"}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, fmt.Errorf("--kernel %q: directory has no vmlinuz: %w", path, err)
	}
	return k, nil
}

// seriesKernel returns the newest cached release of the series, else
// downloads the newest packaged one (not changing the default kernel).
func seriesKernel(ctx context.Context, cacheDir, series string, progress io.Writer) (*Kernel, error) {
	if progress == nil {
		progress = io.Discard
	}
	prefix := series + "."
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockDir(ctx, cacheDir, progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k := newestCached(cacheDir, prefix); k != nil {
		return k, nil
	}
	accept := func(rel string) bool { return strings.HasPrefix(rel, prefix) }
	k, reasons, err := fetchFromSuites(ctx, cacheDir, accept, 0, prefix+"*", progress)
	if k != nil || err != nil {
		return k, err
	}
	return nil, fmt.Errorf("no Debian %s kernel with sched_ext found:\n  %s", series, strings.Join(reasons, "\n  "))
}

func newestCached(cacheDir, prefix string) *Kernel {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "kernels", prefix+"*"))
	var best string
	for _, d := range dirs {
		rel := filepath.Base(d)
		if _, err := os.Stat(filepath.Join(d, "build.json")); err == nil {
			continue // built from source, not a packaged image
		}
		if _, err := os.Stat(filepath.Join(d, "vmlinuz")); err != nil {
			continue
		}
		if best == "" || versionLess(best, rel) {
			best = rel
		}
	}
	if best == "" {
		return nil
	}
	k := newKernel(cacheDir, best)
	k.Suite = "cached"
	return k
}
