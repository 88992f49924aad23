// Command capexec runs a program as root with only the given capabilities,
// the way a container runtime starts a container that runs as uid 0 with
// `drop: [ALL]` and a few `add`s and allowPrivilegeEscalation: false:
// the bounding, permitted and effective sets hold exactly those
// capabilities, the inheritable and ambient sets are empty, and
// no_new_privs is set. It is static (CGO_ENABLED=0) so that it runs in the
// lab guest, which has no libc:
//
//	capexec -keep bpf,perfmon -- /usr/local/bin/scx-slo --enforce
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	keep := flag.String("keep", "", "comma-separated capabilities to keep, by name without CAP_ (bpf,perfmon); empty keeps none")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: capexec -keep CAP[,CAP...] -- program [args...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*keep, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "capexec:", err)
		os.Exit(127)
	}
}

func run(keepList string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("no program given: capexec -keep CAPS -- program [args...]")
	}
	keep, err := parseCaps(keepList)
	if err != nil {
		return err
	}
	if uid := os.Getuid(); uid != 0 {
		// A non-root program loses its capabilities at exec unless they
		// are ambient; the chart runs the agent as root, so only that is
		// modelled here.
		return fmt.Errorf("runs programs as uid 0 only (like the chart's agent), not as uid %d", uid)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	// Capabilities and no_new_privs belong to a thread; the exec below
	// must happen on the thread that changed them.
	runtime.LockOSThread()
	if err := restrict(keep); err != nil {
		return err
	}
	return unix.Exec(path, argv, os.Environ())
}

// restrict leaves this thread with only the capabilities in keep (a bit
// mask): the bounding set first (dropping from it needs CAP_SETPCAP, which
// the final capset gives up), then ambient, no_new_privs, and the rest.
func restrict(keep uint64) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if keep&(1<<c) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing the ambient set: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting the permitted and effective sets to %#x: %w", keep, err)
	}
	return nil
}

// lastCap is the highest capability number this kernel knows.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("/proc/sys/kernel/cap_last_cap = %q: want 0..63", strings.TrimSpace(string(b)))
	}
	return n, nil
}

// parseCaps turns "bpf,perfmon" into a capability bit mask.
func parseCaps(list string) (uint64, error) {
	var mask uint64
	for _, name := range strings.Split(list, ",") {
		name = strings.ToLower(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "CAP_"))
		if name == "" {
			continue
		}
		c, ok := capByName[name]
		if !ok {
			return 0, fmt.Errorf("-keep: unknown capability %q", name)
		}
		mask |= 1 << c
	}
	return mask, nil
}

// capByName names the capabilities as Kubernetes does, lower-cased.
var capByName = map[string]int{
	"chown": unix.CAP_CHOWN, "dac_override": unix.CAP_DAC_OVERRIDE, "dac_read_search": unix.CAP_DAC_READ_SEARCH,
	"fowner": unix.CAP_FOWNER, "fsetid": unix.CAP_FSETID, "kill": unix.CAP_KILL, "setgid": unix.CAP_SETGID,
	"setuid": unix.CAP_SETUID, "setpcap": unix.CAP_SETPCAP, "linux_immutable": unix.CAP_LINUX_IMMUTABLE,
	"net_bind_service": unix.CAP_NET_BIND_SERVICE, "net_broadcast": unix.CAP_NET_BROADCAST,
	"net_admin": unix.CAP_NET_ADMIN, "net_raw": unix.CAP_NET_RAW, "ipc_lock": unix.CAP_IPC_LOCK,
	"ipc_owner": unix.CAP_IPC_OWNER, "sys_module": unix.CAP_SYS_MODULE, "sys_rawio": unix.CAP_SYS_RAWIO,
	"sys_chroot": unix.CAP_SYS_CHROOT, "sys_ptrace": unix.CAP_SYS_PTRACE, "sys_pacct": unix.CAP_SYS_PACCT,
	"sys_admin": unix.CAP_SYS_ADMIN, "sys_boot": unix.CAP_SYS_BOOT, "sys_nice": unix.CAP_SYS_NICE,
	"sys_resource": unix.CAP_SYS_RESOURCE, "sys_time": unix.CAP_SYS_TIME, "sys_tty_config": unix.CAP_SYS_TTY_CONFIG,
	"mknod": unix.CAP_MKNOD, "lease": unix.CAP_LEASE, "audit_write": unix.CAP_AUDIT_WRITE,
	"audit_control": unix.CAP_AUDIT_CONTROL, "setfcap": unix.CAP_SETFCAP, "mac_override": unix.CAP_MAC_OVERRIDE,
	"mac_admin": unix.CAP_MAC_ADMIN, "syslog": unix.CAP_SYSLOG, "wake_alarm": unix.CAP_WAKE_ALARM,
	"block_suspend": unix.CAP_BLOCK_SUSPEND, "audit_read": unix.CAP_AUDIT_READ, "perfmon": unix.CAP_PERFMON,
	"bpf": unix.CAP_BPF, "checkpoint_restore": unix.CAP_CHECKPOINT_RESTORE,
}
