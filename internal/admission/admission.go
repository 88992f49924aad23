// Package admission is the scx-slo admission webhook: on pod CREATE it
// fills the SLO annotations a pod lacks from the SLOPolicy that matches it
// (slopolicy.Resolve, the node agent's own decision) and stamps which
// policy filled them; it rejects pods whose SLO annotations are invalid,
// with the parser's words. It speaks admission.k8s.io/v1 over plain
// net/http. docs/kubernetes.md ("Admission webhook") describes it.
package admission

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/scx-slo/scx-slo/api/v1alpha1"
	"github.com/scx-slo/scx-slo/internal/slopolicy"
)

// Paths the webhook configurations point at.
const (
	MutatePath   = "/mutate"
	ValidatePath = "/validate"
	HealthPath   = "/healthz" // for the Deployment's probes
)

// maxKeyName is the longest name part (after the "/") of an annotation
// key the API server accepts.
const maxKeyName = 63

// Policies gives the SLOPolicies of a namespace.
type Policies interface {
	In(namespace string) []v1alpha1.SLOPolicy
}

// Handler serves both webhooks.
type Handler struct {
	Policies Policies
	// Log reports requests it could not decode; nil discards.
	Log func(msg string, kv ...any)
}

// ServeHTTP answers AdmissionReviews on MutatePath and ValidatePath.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var decide func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse
	switch r.URL.Path {
	case HealthPath:
		_, _ = w.Write([]byte("ok\n"))
		return
	case MutatePath:
		decide = h.mutate
	case ValidatePath:
		decide = h.validate
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&review); err != nil || review.Request == nil {
		if err == nil {
			err = fmt.Errorf("no request in the AdmissionReview")
		}
		h.log("bad admission review", "err", err)
		http.Error(w, "reading AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp := decide(review.Request)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (h *Handler) log(msg string, kv ...any) {
	if h.Log != nil {
		h.Log(msg, kv...)
	}
}

func allow() *admissionv1.AdmissionResponse { return &admissionv1.AdmissionResponse{Allowed: true} }

// podOf decodes the request's pod; the namespace comes from the request
// (a pod being created may not carry it yet).
func podOf(raw []byte, namespace string) (*corev1.Pod, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	pod.Namespace = namespace
	return &pod, nil
}

func (h *Handler) mutate(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" {
		return allow()
	}
	pod, err := podOf(req.Object.Raw, req.Namespace)
	if err != nil {
		h.log("mutate", "err", err)
		return allow() // never block a pod over our own trouble
	}
	add := Fill(pod, h.Policies.In(req.Namespace))
	if len(add) == 0 {
		return allow()
	}
	patch, err := json.Marshal(annotationPatch(pod.Annotations, add))
	if err != nil {
		return allow()
	}
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

func (h *Handler) validate(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind.Kind != "Pod" || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return allow()
	}
	pod, err := podOf(req.Object.Raw, req.Namespace)
	if err != nil {
		h.log("validate", "err", err)
		return allow()
	}
	if req.Operation == admissionv1.Update {
		// Only a change of the SLO annotations is judged: a pod admitted
		// while the webhook was away must stay updatable.
		old, err := podOf(req.OldObject.Raw, req.Namespace)
		if err == nil && sameSLOAnnotations(old.Annotations, pod.Annotations) {
			return allow()
		}
	}
	if msg := Invalid(pod); msg != "" {
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
			Status: metav1.StatusFailure, Reason: metav1.StatusReasonInvalid, Code: http.StatusUnprocessableEntity, Message: msg}}
	}
	return allow()
}

// Invalid returns why the pod's SLO annotations are invalid, one
// "key: "value": reason" per problem joined by "; ", or "" when they are
// fine.
func Invalid(pod *corev1.Pod) string {
	// Keys the webhook filled are judged as the pod's own: Resolve would
	// skip them, but a later edit of one must still be a valid value.
	own := pod.DeepCopy()
	delete(own.Annotations, slopolicy.AnnotationFilled)
	var msgs []string
	for _, p := range slopolicy.Resolve(own, nil).Problems {
		if p.Policy == "" {
			msgs = append(msgs, fmt.Sprintf("%s: %q: %s", p.Field, p.Value, p.Msg))
		}
	}
	return strings.Join(msgs, "; ")
}

var sloNames = []string{"latency-budget", "importance", "target"}

// Fill returns the annotations to add to pod: for each app container that
// sets none of its SLO keys itself and that a policy covers, the policy's
// budget, importance and target, plus AnnotationPolicy and
// AnnotationFilled. When one policy covers every container it writes the
// pod-wide keys, else per-container ones (skipping containers whose name
// would make a key too long; the agent resolves those itself).
func Fill(pod *corev1.Pod, policies []v1alpha1.SLOPolicy) map[string]string {
	res := slopolicy.Resolve(pod, policies)
	var covered []slopolicy.Container
	for _, c := range res.Containers {
		if c.Source == slopolicy.SourcePolicy && !setsOwn(pod.Annotations, c.Name) {
			covered = append(covered, c)
		}
	}
	if len(covered) == 0 {
		return nil
	}
	add := map[string]string{}
	var filled []string
	usedPolicies := map[string]bool{}
	put := func(suffix string, c slopolicy.Container) {
		for i, v := range sloValues(c.SLO) {
			name := sloNames[i] + suffix
			add["scx-slo.io/"+name] = v
			filled = append(filled, name)
		}
		usedPolicies[c.Policy[strings.Index(c.Policy, "/")+1:]] = true
	}
	if podWide(pod, res.Containers, covered) {
		put("", covered[0])
	} else {
		for _, c := range covered {
			if len("latency-budget."+c.Name) <= maxKeyName {
				put("."+c.Name, c)
			}
		}
	}
	if len(add) == 0 {
		return nil
	}
	add[slopolicy.AnnotationFilled] = strings.Join(filled, ",")
	add[slopolicy.AnnotationPolicy] = strings.Join(sortedKeys(usedPolicies), ",")
	return add
}

// setsOwn reports whether the pod sets any SLO key for container ctr
// (its own or the pod-wide one): then the pod is in charge of it.
func setsOwn(ann map[string]string, ctr string) bool {
	for _, n := range sloNames {
		if _, ok := ann["scx-slo.io/"+n]; ok {
			return true
		}
		if _, ok := ann["scx-slo.io/"+n+"."+ctr]; ok {
			return true
		}
	}
	return false
}

// podWide: every app container is covered by the same policy and the pod
// has no scx-slo.io key of its own.
func podWide(pod *corev1.Pod, all, covered []slopolicy.Container) bool {
	if len(covered) != len(all) {
		return false
	}
	for _, c := range covered {
		if c.Policy != covered[0].Policy {
			return false
		}
	}
	for k := range pod.Annotations {
		if strings.HasPrefix(k, "scx-slo.io/") {
			return false
		}
	}
	return true
}

// sloValues formats an SLO the way the parser reads it back exactly.
func sloValues(s slopolicy.SLO) [3]string {
	return [3]string{formatBudget(s.LatencyBudget), strconv.Itoa(s.Importance), strconv.FormatFloat(s.Target, 'f', -1, 64)}
}

func formatBudget(d time.Duration) string {
	switch {
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	case d%time.Microsecond == 0:
		return strconv.FormatInt(int64(d/time.Microsecond), 10) + "us"
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func annotationPatch(existing, add map[string]string) []patchOp {
	if len(existing) == 0 {
		return []patchOp{{Op: "add", Path: "/metadata/annotations", Value: add}}
	}
	var ops []patchOp
	for _, k := range sortedKeys(add) {
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations/" + escapePointer(k), Value: add[k]})
	}
	return ops
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func sameSLOAnnotations(a, b map[string]string) bool {
	pick := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if strings.HasPrefix(k, "scx-slo.io/") {
				out[k] = v
			}
		}
		return out
	}
	pa, pb := pick(a), pick(b)
	if len(pa) != len(pb) {
		return false
	}
	for k, v := range pa {
		if w, ok := pb[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
