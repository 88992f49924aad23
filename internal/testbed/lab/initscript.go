package lab

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Names of the virtio-serial ports that carry results to the host. They
// are separate from the console so nothing the guest prints can corrupt
// the exit status or the /out archive.
const (
	statusPort = "scxlab.status"
	outPort    = "scxlab.out"
	// startMarker is printed on the console right before the command runs;
	// the host uses it to measure boot time.
	startMarker = "scx-slo-lab: running command"
)

// initScript is the guest's /init. It prepares the mounts scheduler work
// needs, runs /lab/command, then reports over the virtio ports and powers
// off (poweroff -f: there is no init system to shut down). A kernel
// without ACPI (a custom --kernel) can only halt, so there it resets
// instead, which ends qemu as well (-no-reboot).
var initScript = `#!/bin/sh
export PATH=/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
say() { echo "scx-slo-lab: $*"; }
try() { "$@" || say "failed: $*"; }
try mount -t proc proc /proc
try mount -t sysfs sysfs /sys
try mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run /out /root
try mount -t devpts devpts /dev/pts
try mount -t cgroup2 cgroup2 /sys/fs/cgroup
try mount -t bpf bpf /sys/fs/bpf
try mount -t tracefs tracefs /sys/kernel/tracing
try mount -t debugfs debugfs /sys/kernel/debug
try ip link set lo up
echo +cpu > /sys/fs/cgroup/cgroup.subtree_control || say "failed: enabling the cpu controller"

# Ports appear asynchronously after the virtio-serial device probes; wait
# by the guest clock, a loaded host can make every probe slow.
port() {
	deadline=$(( $(cut -d. -f1 /proc/uptime) + 60 ))
	while [ $(cut -d. -f1 /proc/uptime) -lt $deadline ]; do
		for p in /sys/class/virtio-ports/*; do
			[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && [ -e "/dev/${p##*/}" ] && { echo "/dev/${p##*/}"; return; }
		done
		sleep 0.1
	done
	say "no virtio port named $1" >&2
}
status=$(port ` + statusPort + `)
out=$(port ` + outPort + `)

. /lab/env
cd /
echo "` + startMarker + `"
/bin/sh /lab/command
code=$?
say "command exited with status $code"
[ -n "$status" ] && echo "exit $code" > "$status"
tar -c -f "${out:-/dev/null}" -C /out .
rc=$?
[ -n "$status" ] && echo "tar $rc" > "$status"
sync
if [ -d /sys/firmware/acpi ]; then poweroff -f; else reboot -f; fi
`

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envScript renders Options.Env as shell exports, sorted for stable images.
func envScript(env map[string]string) (string, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("Options.Env: %q is not a valid variable name", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	return b.String(), nil
}

// commandScript turns Options.Command into /lab/command: a single element
// is shell source, several are an argv executed as is.
func commandScript(argv []string) (string, error) {
	switch len(argv) {
	case 0:
		return "", fmt.Errorf("Options.Command is empty: give a shell command or an argv to run in the guest")
	case 1:
		return argv[0] + "\n", nil
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return "exec " + strings.Join(q, " ") + "\n", nil
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
