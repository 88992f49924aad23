package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// BuildStatic builds the Go package pkg (an import path or a relative path
// like ".") as a static executable in dir and returns its path. The guest
// has no libc, hence CGO_ENABLED=0.
func BuildStatic(ctx context.Context, pkg, dir string) (string, error) {
	out := filepath.Join(dir, binaryName(pkg))
	return out, goBuild(ctx, "build", pkg, out)
}

// BuildTest compiles the tests of pkg ("go test -c") as a static
// executable in dir and returns its path.
func BuildTest(ctx context.Context, pkg, dir string) (string, error) {
	out := filepath.Join(dir, binaryName(pkg)+".test")
	return out, goBuild(ctx, "test", pkg, out, "-c")
}

func goBuild(ctx context.Context, verb, pkg, out string, extra ...string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go toolchain not found in PATH: %w", err)
	}
	args := append([]string{verb}, extra...)
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

func binaryName(pkg string) string {
	name := path.Base(filepath.ToSlash(pkg))
	if name == "." || name == "/" || name == "" {
		if wd, err := os.Getwd(); err == nil {
			name = filepath.Base(wd)
		}
	}
	return name
}
