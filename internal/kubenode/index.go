package kubenode

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/scx-slo/scx-slo/internal/podcgroup"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// Problem is something wrong with one pod's SLO that the agent reports
// and survives: an invalid annotation, or a tie between the policies
// matching one of its containers. Problems are kept per pod, so their
// number is bounded by the pods on the node.
type Problem struct {
	Pod     slosync.Pod // Container set when the problem is one container's
	Kind    string      // ProblemAnnotation, ProblemPolicy or ProblemPolicyTie
	Message string
}

// Problem kinds, the values of the metric's kind label.
const (
	ProblemAnnotation = "invalid_annotation"
	ProblemPolicy     = "invalid_policy" // a value or selector the API server let through
	ProblemPolicyTie  = "policy_tie"
)

// containerSLO is one container's SLO from Kubernetes and where it came
// from.
type containerSLO struct {
	slo    sloconfig.SLO
	source string
}

// podEntry is one pod on the node as the cgroup lookup needs it.
type podEntry struct {
	pod        slosync.Pod             // Container empty
	containers map[string]string       // container ID (no runtime scheme) -> name
	slos       map[string]containerSLO // container name -> its SLO
}

// index answers Owner; it is rebuilt whole from the informers' stores on
// every change and swapped in, so readers never lock.
type index struct {
	byUID    map[string]*podEntry
	byName   map[string]string // "namespace/name" -> UID
	problems []Problem
}

// resolver gives each container of a pod its SLO from Kubernetes
// (annotation over policy) and the pod's problems.
type resolver func(pod *corev1.Pod) (map[string]containerSLO, []Problem)

func buildIndex(pods []*corev1.Pod, resolve resolver) *index {
	idx := &index{byUID: make(map[string]*podEntry, len(pods)), byName: make(map[string]string, len(pods))}
	for _, p := range pods {
		e := &podEntry{pod: slosync.Pod{Namespace: p.Namespace, Name: p.Name}, containers: map[string]string{}}
		for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
			for _, cs := range list {
				if id := podcgroup.StatusID(cs.ContainerID); id != "" {
					e.containers[id] = cs.Name
				}
			}
		}
		var problems []Problem
		e.slos, problems = resolve(p)
		idx.problems = append(idx.problems, problems...)
		uid := string(p.UID)
		idx.byUID[uid] = e
		idx.byName[e.pod.String()] = uid
	}
	return idx
}

// owner answers for a pod UID and container ID parsed from a cgroup path
// (containerID empty: the pod-level cgroup). Unknown pods (not on this
// node, or not seen yet) have no owner; an unknown container (its status
// not written yet) still belongs to its pod.
func (idx *index) owner(podUID, containerID string) (slosync.Owner, bool) {
	e, ok := idx.byUID[podUID]
	if !ok {
		return slosync.Owner{}, false
	}
	o := slosync.Owner{Pod: e.pod}
	if containerID == "" {
		return o, true
	}
	name, ok := e.containers[containerID]
	if !ok {
		return o, true
	}
	o.Pod.Container = name
	if s, ok := e.slos[name]; ok {
		slo := s.slo
		o.SLO, o.Source = &slo, s.source
	}
	return o, true
}
