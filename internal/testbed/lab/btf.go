package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// BTF returns the path of the guest kernel's raw BTF (what the guest sees
// at /sys/kernel/btf/vmlinux), for bpftool/bpf2go header generation. The
// first call boots the guest once (~15 s) and caches the file beside
// vmlinuz.
func (k *Kernel) BTF(ctx context.Context, progress io.Writer) (string, error) {
	dst := filepath.Join(k.dir(), "vmlinux.btf")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if progress == nil {
		progress = io.Discard
	}
	fmt.Fprintf(progress, "lab: booting %s to copy /sys/kernel/btf/vmlinux\n", k.Release)
	out, err := os.MkdirTemp(k.dir(), "btf-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(out)
	res, err := Run(ctx, Options{Kernel: k, Command: []string{"cp /sys/kernel/btf/vmlinux /out/vmlinux.btf"}, OutDir: out})
	if err != nil {
		return "", fmt.Errorf("extracting BTF of %s: %w", k.Release, err)
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("extracting BTF of %s: cp /sys/kernel/btf/vmlinux exited with %d", k.Release, res.ExitCode)
	}
	if err := os.Rename(filepath.Join(out, "vmlinux.btf"), dst); err != nil {
		return "", err
	}
	return dst, nil
}
