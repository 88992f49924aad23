package kubenode

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/podcgroup"
	"github.com/scx-slo/scx-slo/internal/sloconfig"
	"github.com/scx-slo/scx-slo/internal/slopolicy"
	"github.com/scx-slo/scx-slo/internal/slosync"
)

// resolve gives each app container of pod its SLO from Kubernetes
// (slopolicy.Resolve: annotation over the top policy) and turns the
// pod's problems and ties into Problems. Containers Resolve leaves to the
// node's file have no entry.
func resolve(pod *corev1.Pod, policies []v1alpha1.SLOPolicy) (map[string]containerSLO, []Problem) {
	res := slopolicy.Resolve(pod, policies)
	out := make(map[string]containerSLO, len(res.Containers))
	who := slosync.Pod{Namespace: pod.Namespace, Name: pod.Name}
	var problems []Problem
	for _, c := range res.Containers {
		switch {
		case c.Source == slopolicy.SourceAnnotation || c.Source == slopolicy.SourcePolicy:
			source := string(c.Source)
			if c.Source == slopolicy.SourcePolicy {
				source += ":" + c.Policy
			}
			out[c.Name] = containerSLO{slo: sloconfig.SLO{LatencyBudget: c.SLO.LatencyBudget, Importance: c.SLO.Importance, Target: c.SLO.Target}, source: source}
		case len(c.Tie) > 0:
			p := who
			p.Container = c.Name
			problems = append(problems, Problem{Pod: p, Kind: ProblemPolicyTie, Message: "SLOPolicies tie at the top priority, none applies: " + strings.Join(c.Tie, ", ")})
		}
	}
	for _, p := range res.Problems {
		kind := ProblemAnnotation
		if p.Policy != "" {
			kind = ProblemPolicy
		}
		problems = append(problems, Problem{Pod: who, Kind: kind, Message: p.Error()})
	}
	return out, problems
}

// parsePath reads the pod UID and container ID from a cgroup path of the
// kubelet's layouts (internal/podcgroup); a container's child cgroups
// belong to it.
func parsePath(path string) (podUID, containerID string, ok bool) {
	ref, ok := podcgroup.Parse(path)
	if !ok {
		return "", "", false
	}
	return ref.PodUID, ref.ContainerID, true
}
