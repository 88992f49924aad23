// Command scx-slo-lab boots a sched_ext-capable Debian kernel under qemu
// and runs scx-slo and a command in it: the testbed for machines whose own
// kernel lacks sched_ext. It is a separate binary so that the exporter
// that runs on every node carries no VM launcher or apt client.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
)

func main() {
	app := kingpin.New("scx-slo-lab", "Boot a sched_ext-capable Debian kernel under qemu and run scx-slo and a command in it (for tests and experiments; needs qemu-system-x86 and busybox-static).")
	app.Version(version.Print("scx-slo-lab"))
	app.HelpFlag.Short('h')
	registerLab(app)
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "scx-slo-lab: %v\n", err)
		os.Exit(2)
	}
}

// In the guest: where scx-slo and its config go, and how the exporter is
// started (the serve flags belong to serve.go; only these names are used).
const (
	labGuestBinary = "/bin/scx-slo"
	labGuestConfig = "/etc/scx-slo/slo.yaml"
	// scx-slo's default port (cmd/scx-slo/serve.go).
	labGuestListen = "127.0.0.1:9817"
)

var labServeArgs = []string{"serve", "--web.listen-address=" + labGuestListen}

type labFlags struct {
	cacheDir     string
	kernel       string
	exporter     string
	noEnforce    bool
	noExporter   bool
	config       string
	copies       []string
	timeout      time.Duration
	readyTimeout time.Duration
	cpus         int
	sockets      int
	memoryMB     int
	outDir       string
	command      []string
}

func registerLab(app *kingpin.Application) {
	f := &labFlags{}
	cmd := app
	cmd.Flag("scx-slo", "The scx-slo binary to copy into the guest (default: scx-slo beside this binary, else on PATH).").PlaceHolder("PATH").StringVar(&f.exporter)
	cmd.Flag("cache-dir", "Where the guest kernel and apt state are cached.").Envar("SCX_SLO_LAB_CACHE").Default(lab.DefaultCacheDir()).StringVar(&f.cacheDir)
	cmd.Flag("kernel", "Guest kernel: a series (6.12 is built from Debian's linux-source-6.12 on first use, taking many minutes; others are Debian images, e.g. 7.2), a cached release, or a path to a bzImage or a directory with vmlinuz and config (default: the newest Debian image with sched_ext).").Envar("SCX_SLO_LAB_KERNEL").PlaceHolder("VERSION|PATH").StringVar(&f.kernel)

	run := cmd.Command("run", "Boot the guest, start scx-slo (with --enforce unless --no-enforce), run CMD and exit with its status.")
	addLabGuestFlags(run, f)
	run.Flag("timeout", "Kill the guest after this long.").Default("10m").DurationVar(&f.timeout)
	run.Flag("out", "Host directory for the files CMD writes under /out in the guest (default: a new temporary directory).").StringVar(&f.outDir)
	run.Arg("cmd", "Command and arguments to run in the guest (after --).").Required().StringsVar(&f.command)
	run.Action(func(*kingpin.ParseContext) error { return labRun(f, false) })

	shell := cmd.Command("shell", "Boot the guest like 'lab run' and attach this terminal to a shell in it (Ctrl-A X kills the guest).")
	addLabGuestFlags(shell, f)
	shell.Action(func(*kingpin.ParseContext) error { return labRun(f, true) })

	kernel := cmd.Command("kernel", "Download or build (once) and print the guest kernel's release, paths and how it was made.")
	refresh := kernel.Flag("refresh", "Ask apt for a newer kernel even if one is cached.").Bool()
	btf := kernel.Flag("btf", "Also boot the guest once to copy out its /sys/kernel/btf/vmlinux.").Bool()
	kernel.Action(func(*kingpin.ParseContext) error { return labKernel(f, *refresh, *btf) })

	registerPeers(cmd, f)
}

func addLabGuestFlags(cmd *kingpin.CmdClause, f *labFlags) {
	cmd.Flag("no-enforce", "Start the exporter without --enforce (measure only).").BoolVar(&f.noEnforce)
	cmd.Flag("no-exporter", "Do not start scx-slo in the guest at all.").BoolVar(&f.noExporter)
	cmd.Flag("config", "SLO config to pass as --slo.config-file (copied to "+labGuestConfig+").").StringVar(&f.config)
	cmd.Flag("copy", "Copy HOST into the guest at GUEST; without :GUEST executables go to /usr/local/bin, other files to /root. Repeatable.").PlaceHolder("HOST[:GUEST]").StringsVar(&f.copies)
	cmd.Flag("ready-timeout", "How long to wait for scx-slo to serve metrics (and enable the scheduler).").Default("2m").DurationVar(&f.readyTimeout)
	cmd.Flag("cpus", "Guest vCPUs.").Default("2").IntVar(&f.cpus)
	cmd.Flag("sockets", "Split the vCPUs evenly into this many sockets, each its own last-level cache.").Default("1").IntVar(&f.sockets)
	cmd.Flag("memory", "Guest memory in MiB.").Default("2048").IntVar(&f.memoryMB)
}

func labKernel(f *labFlags, refresh, btf bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if refresh && f.kernel != "" {
		return fmt.Errorf("--refresh asks apt for the newest default kernel; it cannot be combined with --kernel=%s", f.kernel)
	}
	var k *lab.Kernel
	var err error
	if refresh {
		k, err = lab.RefreshKernel(ctx, f.cacheDir, os.Stderr)
	} else {
		k, err = lab.ResolveKernel(ctx, f.cacheDir, f.kernel, os.Stderr)
	}
	if err != nil {
		return err
	}
	fmt.Printf("release  %s\npackage  %s (%s)\nvmlinuz  %s\nconfig   %s\n", k.Release, k.Package, k.Suite, k.Vmlinuz, k.Config)
	info, err := k.ReadBuildInfo()
	if err != nil {
		return err
	}
	if info != nil {
		fmt.Printf("built    from %s %s, config fragment sha256 %s (internal/testbed/lab/kconfig)\nsteps    %s\ntools    %s; %s\nbuild    make -j%d bzImage in %s (%s of CPU), %s\n",
			info.Source, info.Version, info.ConfigSHA256, info.Steps, info.Compiler, info.Pahole,
			info.Jobs, time.Duration(info.BuildSeconds*float64(time.Second)), time.Duration(info.CPUSeconds*float64(time.Second)), info.BuiltAt)
	}
	if btf {
		p, err := k.BTF(ctx, os.Stderr)
		if err != nil {
			return err
		}
		fmt.Printf("btf      %s\n", p)
	}
	return nil
}

func labRun(f *labFlags, interactive bool) error {
	if f.cpus < 1 || f.cpus > 64 {
		return fmt.Errorf("--cpus=%d: want 1..64", f.cpus)
	}
	if f.sockets < 1 || f.sockets > f.cpus || f.cpus%f.sockets != 0 {
		return fmt.Errorf("--sockets=%d: want 1..%d dividing --cpus=%d evenly", f.sockets, f.cpus, f.cpus)
	}
	if f.memoryMB < 256 {
		return fmt.Errorf("--memory=%d: want at least 256 (MiB)", f.memoryMB)
	}
	if f.readyTimeout <= 0 {
		return fmt.Errorf("--ready-timeout=%s: must be positive", f.readyTimeout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	files, err := labFiles(f)
	if err != nil {
		return err
	}
	k, err := lab.ResolveKernel(ctx, f.cacheDir, f.kernel, os.Stderr)
	if err != nil {
		return err
	}
	command := f.command
	if interactive {
		// cttyhack gives the shell the console as controlling terminal, so
		// Ctrl-C reaches its children.
		command = []string{"setsid", "cttyhack", "sh", "-l"}
	}
	opts := lab.Options{
		Kernel:      k,
		CPUs:        f.cpus,
		Sockets:     f.sockets,
		MemoryMB:    f.memoryMB,
		Timeout:     f.timeout,
		Command:     []string{labGuestScript(f, command)},
		Files:       files,
		Console:     os.Stderr,
		OutDir:      f.outDir,
		Interactive: interactive,
	}
	fmt.Fprintf(os.Stderr, "lab: booting %s (%d vCPUs in %d sockets, %d MiB)\n", k.Release, f.cpus, f.sockets, f.memoryMB)
	res, err := lab.Run(ctx, opts)
	if err != nil {
		return err
	}
	where := "guest /out is in " + res.OutDir
	if entries, err := os.ReadDir(res.OutDir); err == nil && len(entries) == 0 && f.outDir == "" {
		// Nothing came back: do not leave an empty temporary directory.
		os.Remove(res.OutDir)
		where = "guest /out was empty"
	}
	fmt.Fprintf(os.Stderr, "lab: command exited with status %d (boot %s, total %s); %s\n",
		res.ExitCode, res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond), where)
	if res.ExitCode != 0 {
		os.Exit(res.ExitCode)
	}
	return nil
}

// findExporter picks the scx-slo binary for the guest: --scx-slo, else the
// one built beside this binary (make build puts both in one place), else
// the one on PATH.
func findExporter(flag string) (string, error) {
	if flag != "" {
		st, err := os.Stat(flag)
		if err != nil {
			return "", fmt.Errorf("--scx-slo %q: %w", flag, err)
		}
		if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("--scx-slo %q: not an executable file", flag)
		}
		return flag, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "scx-slo")
		if st, err := os.Stat(beside); err == nil && st.Mode().IsRegular() {
			return beside, nil
		}
	}
	p, err := exec.LookPath("scx-slo")
	if err != nil {
		return "", fmt.Errorf("no scx-slo binary to copy into the guest: none beside scx-slo-lab and none on PATH; build it (make build) or pass --scx-slo=PATH, or use --no-exporter")
	}
	return p, nil
}

// labFiles lists what goes into the guest: the scx-slo binary, the config
// and the --copy files.
func labFiles(f *labFlags) ([]lab.Copy, error) {
	var files []lab.Copy
	if !f.noExporter {
		exporter, err := findExporter(f.exporter)
		if err != nil {
			return nil, err
		}
		files = append(files, lab.Copy{Host: exporter, Guest: labGuestBinary})
	}
	if f.config != "" {
		st, err := os.Stat(f.config)
		if err != nil {
			return nil, fmt.Errorf("--config %q: %w", f.config, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("--config %q: not a regular file", f.config)
		}
		files = append(files, lab.Copy{Host: f.config, Guest: labGuestConfig})
	}
	for _, c := range f.copies {
		cp, err := parseLabCopy(c)
		if err != nil {
			return nil, err
		}
		files = append(files, cp)
	}
	return files, nil
}

// parseLabCopy reads HOST[:GUEST]; GUEST must be absolute, which also
// tells a GUEST suffix apart from a colon inside HOST.
func parseLabCopy(s string) (lab.Copy, error) {
	host, guest := s, ""
	if i := strings.LastIndex(s, ":/"); i > 0 {
		host, guest = s[:i], s[i+1:]
	}
	st, err := os.Stat(host)
	if err != nil {
		return lab.Copy{}, fmt.Errorf("--copy %q: %w", s, err)
	}
	if guest == "" {
		dir := "/root"
		if st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			dir = "/usr/local/bin"
		}
		guest = dir + "/" + filepath.Base(host)
	}
	return lab.Copy{Host: host, Guest: guest}, nil
}

// labGuestScript is the shell the guest runs: start scx-slo in the
// background, wait until it serves metrics (and, when enforcing, until
// sched_ext reports the scheduler enabled), then run the command.
func labGuestScript(f *labFlags, command []string) string {
	var b strings.Builder
	b.WriteString("cd /root\n")
	if !f.noExporter {
		args := append([]string{labGuestBinary}, labServeArgs...)
		if !f.noEnforce {
			args = append(args, "--enforce")
		}
		if f.config != "" {
			args = append(args, "--slo.config-file="+labGuestConfig)
		}
		fmt.Fprintf(&b, "%s > /out/scx-slo.log 2>&1 &\n", shellJoin(args))
		fmt.Fprintf(&b, "pid=$!\nenforce=%t\nready=%d\nurl=http://%s/metrics\n", !f.noEnforce, int(f.readyTimeout.Seconds()+0.999), labGuestListen)
		// Time by the guest clock: under TCG each probe takes far longer
		// than its sleep.
		b.WriteString(`export SCX_SLO_METRICS_URL=$url
now() { cut -d. -f1 /proc/uptime; }
deadline=$(( $(now) + ready ))
while :; do
	if ! kill -0 $pid 2>/dev/null; then
		echo "scx-slo-lab: scx-slo exited before it was ready; its log:"; cat /out/scx-slo.log; exit 125
	fi
	if wget -q -O /dev/null "$url" 2>/dev/null; then
		if ! $enforce || [ "$(cat /sys/kernel/sched_ext/state 2>/dev/null)" = enabled ]; then break; fi
	fi
	if [ $(now) -ge $deadline ]; then
		echo "scx-slo-lab: scx-slo not ready (metrics at $url, sched_ext state $(cat /sys/kernel/sched_ext/state)) after --ready-timeout=${ready}s; its log:"
		cat /out/scx-slo.log; exit 125
	fi
	sleep 0.2
done
echo "scx-slo-lab: scx-slo ready (sched_ext state $(cat /sys/kernel/sched_ext/state), ops $(cat /sys/kernel/sched_ext/root/ops 2>/dev/null))"
`)
	}
	b.WriteString(shellJoin(command) + "\ncode=$?\n")
	if !f.noExporter {
		// Stop scx-slo so it detaches the scheduler and flushes its log.
		b.WriteString("kill -TERM $pid 2>/dev/null\nfor i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done\n")
	}
	b.WriteString("exit $code\n")
	return b.String()
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
