package slosync

import "github.com/scx-slo/scx-slo/internal/sloconfig"

// Pod names the Kubernetes pod, and the container within it, that a
// cgroup belongs to. The zero Pod means "not a pod's cgroup" (outside
// Kubernetes, or a system cgroup on a node).
type Pod struct {
	Namespace, Name, Container string
}

// IsZero reports whether p names no pod.
func (p Pod) IsZero() bool { return p == Pod{} }

// String is "namespace/name", the form users type.
func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// SourceFile is Assignment.Source for an SLO from the node's config file.
const SourceFile = "file"

// Owner is what Kubernetes says about one cgroup: the pod (and container)
// it belongs to and, if an annotation or SLOPolicy gives it one, its SLO.
type Owner struct {
	Pod Pod
	// SLO from Kubernetes; nil when none applies and the file config
	// decides (the fallback of the precedence).
	SLO *sloconfig.SLO
	// Source says where SLO came from, e.g. "annotation" or
	// "policy:<namespace>/<name>".
	Source string
}

// Owners classifies cgroups by path. Passes re-ask every cgroup when
// Version changes (pods or policies came, changed or went) and only new
// cgroups otherwise, like a new config file.
type Owners interface {
	Owner(path string) (Owner, bool)
	Version() uint64
}
