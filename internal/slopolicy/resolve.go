// Package slopolicy decides which SLO applies to each container of a pod:
// its annotations first, then the highest-priority SLOPolicy that matches
// it; a tie between policies is reported and neither applies. It is pure
// (objects in, decisions out, no client or informer), so the node agent
// and the admission webhook give the same answer. The node's file config
// comes last; the agent applies it where Resolve says SourceNone.
// docs/kubernetes.md describes the rules.
package slopolicy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/slovalue"
)

// Pod annotations. A key with the suffix ".<container>" applies to that
// container only and wins over the pod-wide key.
const (
	AnnotationLatencyBudget = "scx-slo.io/latency-budget"
	AnnotationImportance    = "scx-slo.io/importance"
	AnnotationTarget        = "scx-slo.io/target"
	annotationPrefix        = "scx-slo.io/"

	// AnnotationPolicy names the SLOPolicies (comma-separated, sorted)
	// the admission webhook filled the pod's SLO annotations from; it is
	// informational.
	AnnotationPolicy = "scx-slo.io/policy"
	// AnnotationFilled lists the SLO keys the webhook wrote (names after
	// "scx-slo.io/", comma-separated). Resolve skips them, so the live
	// policy decides and editing it reaches running pods; what the pod set
	// itself still wins.
	AnnotationFilled = "scx-slo.io/filled"
)

// SLO is the value part of an SLO, defaults applied.
type SLO struct {
	LatencyBudget time.Duration
	Importance    int
	Target        float64
}

// Source says where a container's SLO came from.
type Source string

const (
	SourceAnnotation Source = "annotation"
	SourcePolicy     Source = "policy"
	// SourceNone: neither annotations nor a policy give an SLO (or the
	// matching policies tie); the node's file config decides.
	SourceNone Source = "none"
)

// Container is the decision for one container.
type Container struct {
	Name   string
	Source Source
	SLO    SLO    // zero when Source is SourceNone
	Policy string // "namespace/name" of the policy that applies, for SourcePolicy
	// Tie lists, sorted, the policies of equal top priority that match the
	// container. When set, none of them applies and Source is SourceNone.
	Tie []string
}

// Problem is an invalid annotation or policy found while resolving. The
// agent logs and counts it; it never stops anything.
type Problem struct {
	Pod    string // "namespace/name"
	Policy string // "namespace/name" when the problem is a policy's
	Field  string // annotation key or policy field
	Value  string
	Msg    string
}

func (p Problem) Error() string {
	where := "pod " + p.Pod
	if p.Policy != "" {
		where = "SLOPolicy " + p.Policy + " (for pod " + p.Pod + ")"
	}
	return fmt.Sprintf("%s: %s: %q: %s", where, p.Field, p.Value, p.Msg)
}

// Result is the decision for every app container of a pod, in the order
// of pod.Spec.Containers.
type Result struct {
	Containers []Container
	Problems   []Problem
}

// Resolve decides each app container's SLO from the pod's annotations and
// the policies (only those in the pod's namespace can match). An invalid
// annotation is reported and ignored: the container falls through to the
// policies. A policy with an invalid selector or value is reported and
// skipped.
func Resolve(pod *corev1.Pod, policies []v1alpha1.SLOPolicy) Result {
	podName := pod.Namespace + "/" + pod.Name
	var res Result
	ann := readAnnotations(pod, podName, &res.Problems)
	cands := matchingPolicies(pod, podName, policies, &res.Problems)
	for _, c := range pod.Spec.Containers {
		d := Container{Name: c.Name, Source: SourceNone}
		if slo, ok := ann.forContainer(c.Name, podName, &res.Problems); ok {
			d.Source, d.SLO = SourceAnnotation, slo
		} else if best := topPriority(cands, c.Name); len(best) == 1 {
			d.Source, d.SLO, d.Policy = SourcePolicy, best[0].slo, best[0].name
		} else if len(best) > 1 {
			for _, b := range best {
				d.Tie = append(d.Tie, b.name)
			}
		}
		res.Containers = append(res.Containers, d)
	}
	res.Problems = dedupe(res.Problems)
	return res
}

// dedupe drops repeats: a bad pod-wide annotation is met once per container.
func dedupe(ps []Problem) []Problem {
	seen := map[Problem]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

var errNoBudget = fmt.Errorf("set without %s; an annotation SLO needs a budget", AnnotationLatencyBudget)

// annotations holds the pod's scx-slo.io/ keys by value name
// ("latency-budget") and container ("" for the pod-wide key).
type annotations map[string]map[string]string

func readAnnotations(pod *corev1.Pod, podName string, problems *[]Problem) annotations {
	known := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		known[c.Name] = true
	}
	a := annotations{}
	keys := make([]string, 0, len(pod.Annotations))
	for k := range pod.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys) // problems in a stable order
	filled := map[string]bool{}
	for _, f := range strings.Split(pod.Annotations[AnnotationFilled], ",") {
		filled[strings.TrimSpace(f)] = true
	}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, annotationPrefix)
		if !ok || k == AnnotationPolicy || k == AnnotationFilled || filled[rest] {
			continue
		}
		name, ctr, _ := strings.Cut(rest, ".")
		switch {
		case name != "latency-budget" && name != "importance" && name != "target":
			*problems = append(*problems, Problem{Pod: podName, Field: k, Value: pod.Annotations[k],
				Msg: "unknown annotation; known: " + AnnotationLatencyBudget + ", " + AnnotationImportance + ", " + AnnotationTarget + " (each optionally .<container>)"})
			continue
		case strings.HasSuffix(k, "."):
			*problems = append(*problems, Problem{Pod: podName, Field: k, Value: pod.Annotations[k], Msg: "empty container name after the dot"})
			continue
		case ctr != "" && !known[ctr]:
			*problems = append(*problems, Problem{Pod: podName, Field: k, Value: pod.Annotations[k], Msg: "the pod has no app container " + strconv.Quote(ctr)})
			continue
		}
		if a[name] == nil {
			a[name] = map[string]string{}
		}
		a[name][ctr] = pod.Annotations[k]
	}
	return a
}

// lookup returns the container's own value for name, else the pod-wide one.
func (a annotations) lookup(name, ctr string) (key, value string, ok bool) {
	if v, ok := a[name][ctr]; ok {
		return annotationPrefix + name + "." + ctr, v, true
	}
	v, ok := a[name][""]
	return annotationPrefix + name, v, ok
}

// forContainer builds the annotation SLO of one container. Without a
// budget there is none; importance or target alone are reported. Any
// invalid value voids the annotation SLO of that container.
func (a annotations) forContainer(ctr, podName string, problems *[]Problem) (SLO, bool) {
	bad := func(key, val string, err error) {
		*problems = append(*problems, Problem{Pod: podName, Field: key, Value: val, Msg: err.Error()})
	}
	slo := SLO{Importance: slovalue.DefaultImportance, Target: slovalue.DefaultTarget}
	ok := true
	bk, bv, hasBudget := a.lookup("latency-budget", ctr)
	if hasBudget {
		d, err := slovalue.ParseLatencyBudget(bv)
		if err != nil {
			bad(bk, bv, err)
			ok = false
		}
		slo.LatencyBudget = d
	}
	if k, v, found := a.lookup("importance", ctr); found {
		if i, err := slovalue.ParseImportance(v); err != nil {
			bad(k, v, err)
			ok = false
		} else {
			slo.Importance = i
		}
		if !hasBudget {
			bad(k, v, errNoBudget)
		}
	}
	if k, v, found := a.lookup("target", ctr); found {
		if t, err := slovalue.ParseTarget(v); err != nil {
			bad(k, v, err)
			ok = false
		} else {
			slo.Target = t
		}
		if !hasBudget {
			bad(k, v, errNoBudget)
		}
	}
	return slo, hasBudget && ok
}

// candidate is a valid policy whose selector matches the pod.
type candidate struct {
	name       string
	priority   int32
	containers []string // empty: all
	slo        SLO
}

func matchingPolicies(pod *corev1.Pod, podName string, policies []v1alpha1.SLOPolicy, problems *[]Problem) []candidate {
	var out []candidate
	for i := range policies {
		p := &policies[i]
		if p.Namespace != pod.Namespace {
			continue
		}
		name := p.Namespace + "/" + p.Name
		bad := func(field, val string, msg string) {
			*problems = append(*problems, Problem{Pod: podName, Policy: name, Field: field, Value: val, Msg: msg})
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.Selector)
		if err != nil {
			bad("spec.selector", p.Spec.Selector.String(), err.Error())
			continue
		}
		if !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		slo, ok := policySLO(p, bad)
		if !ok {
			continue
		}
		out = append(out, candidate{name: name, priority: p.Spec.Priority, containers: p.Spec.Containers, slo: slo})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Check reports what makes p invalid on its own, whatever pods exist: a
// selector that does not parse, or a value the shared parser rejects.
// The problems are those Resolve reports for p (Pod left empty), so the
// policy status and the agents' logs use the same words.
func Check(p *v1alpha1.SLOPolicy) []Problem {
	var out []Problem
	bad := func(field, val, msg string) {
		out = append(out, Problem{Policy: p.Namespace + "/" + p.Name, Field: field, Value: val, Msg: msg})
	}
	if _, err := metav1.LabelSelectorAsSelector(&p.Spec.Selector); err != nil {
		bad("spec.selector", p.Spec.Selector.String(), err.Error())
	}
	policySLO(p, bad)
	return out
}

// policySLO parses a policy's values. The API server has validated them
// already; this guards against objects that skipped it (an older CRD, a
// test fixture) and fills the defaults the API server would have.
func policySLO(p *v1alpha1.SLOPolicy, bad func(field, val, msg string)) (SLO, bool) {
	slo := SLO{Importance: slovalue.DefaultImportance, Target: slovalue.DefaultTarget}
	ok := true
	d, err := slovalue.ParseLatencyBudget(p.Spec.LatencyBudget)
	if err != nil {
		bad("spec.latencyBudget", p.Spec.LatencyBudget, err.Error())
		ok = false
	}
	slo.LatencyBudget = d
	if p.Spec.Importance != 0 {
		v := strconv.Itoa(int(p.Spec.Importance))
		if i, err := slovalue.ParseImportance(v); err != nil {
			bad("spec.importance", v, err.Error())
			ok = false
		} else {
			slo.Importance = i
		}
	}
	if p.Spec.Target != "" {
		if t, err := slovalue.ParseTarget(p.Spec.Target); err != nil {
			bad("spec.target", p.Spec.Target, err.Error())
			ok = false
		} else {
			slo.Target = t
		}
	}
	return slo, ok
}

// topPriority returns the candidates covering ctr with the highest
// priority among those that do.
func topPriority(cands []candidate, ctr string) []candidate {
	var best []candidate
	for _, c := range cands {
		if len(c.containers) > 0 && !contains(c.containers, ctr) {
			continue
		}
		switch {
		case len(best) == 0 || c.priority > best[0].priority:
			best = []candidate{c}
		case c.priority == best[0].priority:
			best = append(best, c)
		}
	}
	return best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
