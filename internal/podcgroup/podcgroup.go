// Package podcgroup reads which pod and container a cgroup belongs to
// from its path, as the kubelet and the container runtimes name them.
// It parses rather than computes paths, so a custom --cgroup-root, an
// unknown runtime prefix or the mount point in front still map: it looks
// for the kubepods element, then the pod element under it (directly, or
// under a QoS element), then the container element. The layouts, with
// the sources they come from, are in podcgroup_test.go.
package podcgroup

import (
	"regexp"
	"strings"
)

// Driver is the kubelet's cgroup driver, as seen in the path.
type Driver string

const (
	Systemd  Driver = "systemd"  // kubepods.slice/kubepods-burstable.slice/...
	Cgroupfs Driver = "cgroupfs" // kubepods/burstable/pod<uid>/...
)

// QoS is the pod's QoS class as the kubelet places it.
type QoS string

const (
	Guaranteed QoS = "guaranteed" // the pod cgroup sits directly under kubepods
	Burstable  QoS = "burstable"
	BestEffort QoS = "besteffort"
)

// Ref is what a cgroup path says about its pod and container.
type Ref struct {
	Driver Driver
	QoS    QoS
	PodUID string // with dashes, as in metadata.uid
	// PodPath is the path up to and including the pod element.
	PodPath string
	// ContainerID is the runtime's id (the part of containerStatuses[].
	// containerID after "://"); empty for the pod cgroup itself.
	ContainerID string
	// Runtime is the prefix in front of the id ("cri-containerd", "crio",
	// "docker"); empty when the element is the bare id (cgroupfs
	// containerd and docker).
	Runtime string
	// ContainerPath is the path up to and including the container
	// element. A deeper path (Nested) is a child cgroup of the container
	// and belongs to it.
	ContainerPath string
	Nested        bool
}

var (
	// systemd: "[<root>-]kubepods.slice"; cgroupfs: "kubepods".
	systemdRoot = regexp.MustCompile(`^(?:.+-)?kubepods\.slice$`)
	// systemd QoS slice: "[<root>-]kubepods-burstable.slice".
	systemdQoS = regexp.MustCompile(`^(?:.+-)?kubepods-(burstable|besteffort)\.slice$`)
	// systemd pod slice: "...-pod<uid with _ for ->.slice". The kubelet
	// escapes "-" in each name component as "_" because systemd uses "-"
	// for nesting.
	systemdPod = regexp.MustCompile(`^(?:.+-)?pod([0-9a-fA-F_]{8,})\.slice$`)
	cgroupPod  = regexp.MustCompile(`^pod([0-9a-fA-F-]{8,})$`)
	// container element: "[<runtime>-]<id>[.scope]", the id being hex.
	// Whether it ends in .scope is not checked: runtimes differ, and a
	// runtime configured with another driver than the kubelet still runs.
	containerElem = regexp.MustCompile(`^(?:(.+)-)?([0-9a-fA-F]{12,})(?:\.scope)?$`)
)

// helperRuntimes name scopes the runtime creates beside a container for
// its own processes (CRI-O's conmon monitor); they are no container.
var helperRuntimes = map[string]bool{"crio-conmon": true}

// Parse reads path, relative to a cgroup hierarchy root or absolute with
// the mount point ("/sys/fs/cgroup/cpu,cpuacct/kubepods/..."): on cgroup
// v1 the cpu hierarchy has the same layout as cgroup2. ok is false for
// paths that are not a pod, a container or a container's child (the
// kubepods and QoS cgroups, runtime helper scopes, anything else).
func Parse(path string) (Ref, bool) {
	elems := strings.Split(strings.Trim(path, "/"), "/")
	for i, e := range elems {
		var d Driver
		switch {
		case e == "kubepods":
			d = Cgroupfs
		case systemdRoot.MatchString(e):
			d = Systemd
		default:
			continue
		}
		if ref, ok := parseBelow(d, elems, i+1); ok {
			return ref, true
		}
	}
	return Ref{}, false
}

// parseBelow parses the elements under a kubepods element at elems[i-1].
func parseBelow(d Driver, elems []string, i int) (Ref, bool) {
	ref := Ref{Driver: d, QoS: Guaranteed}
	if i >= len(elems) {
		return Ref{}, false
	}
	if q, ok := qosOf(d, elems[i]); ok {
		ref.QoS = q
		i++
		if i >= len(elems) {
			return Ref{}, false
		}
	}
	uid, ok := podUID(d, elems[i])
	if !ok {
		return Ref{}, false
	}
	ref.PodUID = uid
	ref.PodPath = "/" + strings.Join(elems[:i+1], "/")
	i++
	if i == len(elems) {
		return ref, true
	}
	m := containerElem.FindStringSubmatch(elems[i])
	if m == nil || helperRuntimes[m[1]] {
		return Ref{}, false
	}
	ref.Runtime, ref.ContainerID = m[1], strings.ToLower(m[2])
	ref.ContainerPath = "/" + strings.Join(elems[:i+1], "/")
	ref.Nested = i+1 < len(elems)
	return ref, true
}

func qosOf(d Driver, e string) (QoS, bool) {
	if d == Cgroupfs {
		switch e {
		case "burstable":
			return Burstable, true
		case "besteffort":
			return BestEffort, true
		}
		return "", false
	}
	if m := systemdQoS.FindStringSubmatch(e); m != nil {
		return QoS(m[1]), true
	}
	return "", false
}

func podUID(d Driver, e string) (string, bool) {
	if d == Cgroupfs {
		if m := cgroupPod.FindStringSubmatch(e); m != nil {
			return strings.ToLower(m[1]), true
		}
		return "", false
	}
	if m := systemdPod.FindStringSubmatch(e); m != nil {
		return strings.ToLower(strings.ReplaceAll(m[1], "_", "-")), true
	}
	return "", false
}

// StatusID returns the id part of a containerStatuses[].containerID
// ("containerd://<id>", "cri-o://<id>", "docker://<id>"), which is what
// Ref.ContainerID holds; "" when s has no "://".
func StatusID(s string) string {
	_, id, ok := strings.Cut(s, "://")
	if !ok {
		return ""
	}
	return strings.ToLower(id)
}
