package lab

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options describe one guest run.
type Options struct {
	Kernel *Kernel // required; see EnsureKernel
	CPUs   int     // vCPUs, default 2
	// Sockets splits CPUs evenly into that many sockets, each its own
	// last-level cache (qemu reports an L3 per socket); 0 means one.
	Sockets  int
	MemoryMB int // guest RAM, default 2048
	// Timeout bounds the whole run (boot, command, poweroff); default 10
	// minutes, and no limit for Interactive runs.
	Timeout time.Duration
	// Command runs in the guest as root with / as working directory. One
	// element is shell source for /bin/sh; more are an argv.
	Command []string
	Env     map[string]string // exported before Command runs
	Files   []Copy            // host files to place in the guest
	// Console receives the guest's console (kernel messages, the command's
	// stdout and stderr), each line prefixed with ConsolePrefix.
	Console       io.Writer
	ConsolePrefix string // default "[guest] "
	// OutDir receives the files the guest leaves under /out; when empty a
	// new temporary directory is made (the caller removes it).
	OutDir string
	// Interactive connects this process's terminal to the guest console
	// instead of Console (for "scx-slo lab shell").
	Interactive bool
	KernelArgs  []string // appended to the kernel command line
}

// Result is what came back from the guest.
type Result struct {
	ExitCode int           // Command's exit status in the guest
	OutDir   string        // host directory holding the guest's /out
	Boot     time.Duration // qemu start until Command started (0 when Interactive)
	Total    time.Duration // qemu start until qemu exited
	Attempts int           // boots needed: 2 when the first died before Command
}

const (
	defaultCPUs     = 2
	defaultMemoryMB = 2048
	defaultTimeout  = 10 * time.Minute
	qemuBinary      = "qemu-system-x86_64"
)

// Run boots the kernel with an initramfs holding busybox, Files and a
// generated /init, runs Command and returns its exit status and /out.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return nil, fmt.Errorf("%s not found in PATH: install the qemu-system-x86 package", qemuBinary)
	}
	work, err := os.MkdirTemp("", "scx-slo-lab-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "initramfs.cpio")
	if err := buildInitramfs(initrd, &opts); err != nil {
		return nil, err
	}
	statusFile, outFile := filepath.Join(work, "status"), filepath.Join(work, "out.tar")
	args := opts.qemuArgs(initrd, statusFile, outFile)

	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	var con *consoleWriter
	var res *Result
	for attempt := 1; ; attempt++ {
		var runErr error
		var stderr string
		con, res, stderr, runErr = boot(ctx, qemu, args, &opts)
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && opts.Timeout > 0 {
				return nil, fmt.Errorf("guest did not finish within %s (Options.Timeout); qemu was killed%s", opts.Timeout, con.tailForError())
			}
			return nil, fmt.Errorf("guest run cancelled: %w", ctx.Err())
		}
		if runErr != nil {
			return nil, fmt.Errorf("%s failed: %v: %s%s", qemuBinary, runErr, stderr, con.tailForError())
		}
		// A guest that dies before the command starts hit a boot flake
		// (see accel), not anything the caller did: boot it once more.
		res.Attempts = attempt
		if _, _, err := readStatus(statusFile); err != nil && attempt == 1 && !opts.Interactive && res.Boot == 0 {
			con.note("scx-slo-lab: guest died before the command started; booting again")
			os.Remove(statusFile)
			os.Remove(outFile)
			continue
		}
		break
	}
	code, tarRC, err := readStatus(statusFile)
	if err != nil {
		return nil, fmt.Errorf("guest ended without reporting the command's exit status (%v): kernel panic or the command powered the guest off?%s", err, con.tailForError())
	}
	res.ExitCode = code
	if tarRC != 0 {
		return res, fmt.Errorf("guest could not archive /out (tar exit status %d)%s", tarRC, con.tailForError())
	}
	if res.OutDir = opts.OutDir; res.OutDir == "" {
		if res.OutDir, err = os.MkdirTemp("", "scx-slo-lab-out-"); err != nil {
			return res, err
		}
	}
	if err := untar(outFile, res.OutDir); err != nil {
		return res, fmt.Errorf("unpacking the guest's /out into %s: %w", res.OutDir, err)
	}
	return res, nil
}

// boot runs qemu once.
func boot(ctx context.Context, qemu string, args []string, opts *Options) (*consoleWriter, *Result, string, error) {
	cmd := exec.CommandContext(ctx, qemu, args...)
	// Never leave a guest running if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	con := &consoleWriter{out: opts.Console, prefix: opts.ConsolePrefix, start: start}
	if opts.Interactive {
		cmd.Stdin, cmd.Stdout = os.Stdin, os.Stdout
		cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
	} else {
		cmd.Stdout = con
	}
	err := cmd.Run()
	con.Flush()
	return con, &Result{Total: time.Since(start), Boot: con.bootTime()}, strings.TrimSpace(stderr.String()), err
}

func (o *Options) validate() error {
	if o.Kernel == nil || o.Kernel.Vmlinuz == "" {
		return fmt.Errorf("Options.Kernel is nil: get one from lab.EnsureKernel")
	}
	if _, err := os.Stat(o.Kernel.Vmlinuz); err != nil {
		return fmt.Errorf("Options.Kernel.Vmlinuz: %w", err)
	}
	if o.CPUs == 0 {
		o.CPUs = defaultCPUs
	}
	if o.CPUs < 1 || o.CPUs > 64 {
		return fmt.Errorf("Options.CPUs = %d: want 1..64", o.CPUs)
	}
	if o.Sockets == 0 {
		o.Sockets = 1
	}
	if o.Sockets < 1 || o.Sockets > o.CPUs || o.CPUs%o.Sockets != 0 {
		return fmt.Errorf("Options.Sockets = %d: want 1..%d dividing Options.CPUs = %d evenly", o.Sockets, o.CPUs, o.CPUs)
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = defaultMemoryMB
	}
	// The initramfs lives in guest RAM next to everything it unpacks.
	if o.MemoryMB < 256 || o.MemoryMB > 65536 {
		return fmt.Errorf("Options.MemoryMB = %d: want 256..65536", o.MemoryMB)
	}
	if o.Timeout < 0 {
		return fmt.Errorf("Options.Timeout = %s: must not be negative", o.Timeout)
	}
	if o.Timeout == 0 && !o.Interactive {
		o.Timeout = defaultTimeout
	}
	if o.ConsolePrefix == "" {
		o.ConsolePrefix = "[guest] "
	}
	for i, a := range o.KernelArgs {
		if a == "" || strings.ContainsAny(a, " \t\n") {
			return fmt.Errorf("Options.KernelArgs[%d] = %q: want one word per element", i, a)
		}
	}
	return nil
}

func (o *Options) qemuArgs(initrd, statusFile, outFile string) []string {
	cmdline := append([]string{"console=ttyS0", "panic=-1", "quiet", "rdinit=/init"}, o.KernelArgs...)
	args := []string{
		"-accel", accel(),
		"-smp", o.smp(),
		"-m", strconv.Itoa(o.MemoryMB),
		"-no-reboot",
		"-kernel", o.Kernel.Vmlinuz,
		"-initrd", initrd,
		"-append", strings.Join(cmdline, " "),
		"-nic", "none",
		// Results travel over their own virtio ports, never the console.
		"-device", "virtio-serial-pci,id=labserial",
		"-chardev", "file,id=labstatus,path=" + statusFile,
		"-device", "virtserialport,bus=labserial.0,chardev=labstatus,name=" + statusPort,
		"-chardev", "file,id=labout,path=" + outFile,
		"-device", "virtserialport,bus=labserial.0,chardev=labout,name=" + outPort,
	}
	if o.Interactive {
		// mon:stdio keeps QEMU's Ctrl-A escapes (Ctrl-A X quits).
		return append(args, "-nographic")
	}
	return append(args, "-display", "none", "-vga", "none", "-monitor", "none",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con")
}

// smp is qemu's -smp value. With several sockets each gets its own cores.
func (o *Options) smp() string {
	if o.Sockets <= 1 {
		return strconv.Itoa(o.CPUs)
	}
	return fmt.Sprintf("%d,sockets=%d,cores=%d,threads=1", o.CPUs, o.Sockets, o.CPUs/o.Sockets)
}

// readStatus parses the status port: "exit N" then "tar N".
func readStatus(path string) (code, tarRC int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	gotExit, gotTar := false, false
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		n, convErr := strconv.Atoi(v)
		if convErr != nil {
			continue
		}
		switch k {
		case "exit":
			code, gotExit = n, true
		case "tar":
			tarRC, gotTar = n, true
		}
	}
	if !gotExit {
		return 0, 0, fmt.Errorf("status port holds %q", data)
	}
	if !gotTar {
		return code, 0, fmt.Errorf("guest stopped while archiving /out")
	}
	return code, tarRC, nil
}

// untar unpacks the guest's /out archive, refusing paths that leave dst.
func untar(archive, dst string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive entry %q leaves the output directory", h.Name)
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			err = writeFrom(p, os.FileMode(h.Mode).Perm()|0o600, tr)
		}
		if err != nil {
			return err
		}
	}
}

func writeFrom(p string, mode os.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// consoleWriter prefixes each console line, keeps the last lines for error
// messages and notes when the command started.
type consoleWriter struct {
	out    io.Writer
	prefix string
	start  time.Time

	mu    sync.Mutex
	lines LineBuffer
	tail  []string
	boot  time.Duration
}

const consoleTailLines = 40

func (c *consoleWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines.Feed(p, c.line)
	return len(p), nil
}

// Flush emits a final line that lacked its newline.
func (c *consoleWriter) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.lines.Rest(); ok {
		c.line(l)
	}
}

func (c *consoleWriter) line(l string) {
	l = strings.TrimRight(l, "\r")
	if c.boot == 0 && strings.Contains(l, startMarker) {
		c.boot = time.Since(c.start)
	}
	c.tail = append(c.tail, l)
	if len(c.tail) > consoleTailLines {
		c.tail = c.tail[1:]
	}
	if c.out != nil {
		fmt.Fprintf(c.out, "%s%s\n", c.prefix, l)
	}
}

// note adds a line of our own to the console stream.
func (c *consoleWriter) note(l string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.line(l)
}

func (c *consoleWriter) bootTime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boot
}

func (c *consoleWriter) tailForError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tail) == 0 || c.out != nil {
		return "" // already shown to the user
	}
	return "\nlast console lines:\n  " + strings.Join(c.tail, "\n  ")
}

// accel picks single-threaded TCG: with one host thread per vCPU (MTTCG)
// QEMU 7.2 lets a vCPU run stale code while another patches kernel text,
// and about one boot in seven died with an int3 oops in the guest.
// SCX_SLO_LAB_ACCEL overrides it (e.g. "kvm" where /dev/kvm exists).
func accel() string {
	if a := os.Getenv("SCX_SLO_LAB_ACCEL"); a != "" {
		return a
	}
	return "tcg,thread=single"
}
