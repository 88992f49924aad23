package lab

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Copy puts a host file (or directory tree) into the guest at Guest, an
// absolute path. Executables must be static: the guest has no libc.
type Copy struct {
	Host, Guest string
}

// buildInitramfs writes an uncompressed newc archive (the guest would spend
// longer decompressing under TCG than the host spends copying).
func buildInitramfs(dst string, opts *Options) error {
	busybox, err := findBusybox()
	if err != nil {
		return err
	}
	env, err := envScript(opts.Env)
	if err != nil {
		return err
	}
	command, err := commandScript(opts.Command)
	if err != nil {
		return err
	}
	applets, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("listing busybox applets (%s --list-full): %w", busybox, err)
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	w := newCPIOWriter(f)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "out", "root", "etc", "lab", "usr/bin", "usr/sbin", "sbin"} {
		if err := w.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := copyHostFile(w, busybox, "bin/busybox"); err != nil {
		return err
	}
	for _, a := range strings.Fields(string(applets)) {
		if a = cleanArchivePath(a); a != "" && a != "bin/busybox" {
			if err := w.Symlink(a, "/bin/busybox"); err != nil {
				return err
			}
		}
	}
	for name, data := range map[string]string{
		"init":        initScript,
		"lab/env":     env,
		"lab/command": command,
		"etc/passwd":  "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":   "root:x:0:\n",
		"etc/hosts":   "127.0.0.1 localhost\n::1 localhost\n",
	} {
		if err := w.Bytes(name, 0o755, []byte(data)); err != nil {
			return err
		}
	}
	for i, c := range opts.Files {
		if err := addCopy(w, c); err != nil {
			return fmt.Errorf("Options.Files[%d] (%s -> %s): %w", i, c.Host, c.Guest, err)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// findBusybox locates a statically linked busybox (package busybox-static).
func findBusybox() (string, error) {
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox not found in PATH: install the busybox-static package")
	}
	if interp := elfInterpreter(p); interp != "" {
		return "", fmt.Errorf("%s is dynamically linked (needs %s): install the busybox-static package", p, interp)
	}
	return p, nil
}

// elfInterpreter returns the dynamic loader an ELF file asks for, or "" for
// static executables and non-ELF files.
func elfInterpreter(p string) string {
	f, err := elf.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err == nil {
				return strings.TrimRight(string(b), "\x00")
			}
			return "a dynamic loader"
		}
	}
	return ""
}

func addCopy(w *cpioWriter, c Copy) error {
	if !path.IsAbs(c.Guest) {
		return fmt.Errorf("Guest %q must be an absolute path", c.Guest)
	}
	if c.Guest == "/init" || strings.HasPrefix(path.Clean(c.Guest), "/lab/") {
		return fmt.Errorf("Guest %q would replace the lab's own /init or /lab files", c.Guest)
	}
	st, err := os.Stat(c.Host)
	if err != nil {
		return fmt.Errorf("Host: %w", err)
	}
	if !st.IsDir() {
		return copyHostFile(w, c.Host, c.Guest)
	}
	return filepath.WalkDir(c.Host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.Host, p)
		guest := path.Join(c.Guest, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return w.Mkdir(guest, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return w.Symlink(guest, target)
		default:
			return copyHostFile(w, p, guest)
		}
	})
}

func copyHostFile(w *cpioWriter, host, guest string) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", host)
	}
	if st.Mode()&0o111 != 0 {
		if interp := elfInterpreter(host); interp != "" {
			return fmt.Errorf("%s is dynamically linked (needs %s) but the guest has no libc: build it statically, e.g. CGO_ENABLED=0 go build", host, interp)
		}
	}
	return w.File(guest, uint32(st.Mode().Perm()), st.Size(), f)
}
