package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SLOPolicySpec gives the containers of the pods Selector matches a
// run-queue latency SLO. The values mean what they mean in the node's
// SLO file (docs/slo-config.md) and go through the same parser
// (internal/slovalue); the schema below rejects the same values at the
// API server, with the same words (the API server puts the field and
// the value in front of a CEL message, as the file parser does). Hence
// CEL rules even for importance's plain bounds: OpenAPI's
// minimum/maximum would answer in other words.
type SLOPolicySpec struct {
	// Selector picks pods in the policy's namespace by label. An empty
	// selector ({}) matches every pod in the namespace.
	// +required
	Selector metav1.LabelSelector `json:"selector"`

	// Containers names the containers the SLO applies to; empty means
	// every app container (spec.containers, not init containers).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Containers []string `json:"containers,omitempty"`

	// LatencyBudget is the longest a task may wait to run after becoming
	// runnable: a Go duration with a unit ("2ms", "500us", "1.5ms"),
	// greater than 0 and at most 10s.
	// +required
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[-+]?(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('10s')`,messageExpression=`self.matches('^[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?$') ? 'a plain number is ambiguous; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)' : !self.matches('^[-+]?(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+$') ? 'not a duration; add a unit: ns, us, ms or s (e.g. 2ms, 500us, 1.5ms)' : duration(self) <= duration('0s') ? 'must be greater than 0' : 'must be at most 10s'`
	LatencyBudget string `json:"latencyBudget"`

	// Importance weighs the SLO against others when the CPU cannot meet
	// every budget: an integer from 1 to 1000.
	// +optional
	// +kubebuilder:default=100
	// +kubebuilder:validation:XValidation:rule=`self >= 1 && self <= 1000`,messageExpression=`'must be an integer from 1 to 1000'`
	Importance int32 `json:"importance,omitempty"`

	// Target is the fraction of wakeups that must meet the budget,
	// written as a decimal string ("0.99"), greater than 0 and less than
	// 1. A string rather than a number because CRDs carry no exact
	// decimals; quote it in YAML.
	// +optional
	// +kubebuilder:default="0.99"
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?$') && double(self) > 0.0 && double(self) < 1.0`,messageExpression=`self.endsWith('%') ? 'write a fraction, not a percentage (e.g. 0.99 for 99%)' : 'must be a fraction greater than 0 and less than 1 (e.g. 0.99)'`
	Target string `json:"target,omitempty"`

	// Priority orders policies that match the same container: the highest
	// wins; a tie at the top is reported and neither applies.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority,omitempty"`
}

// SLOPolicy is a run-queue latency SLO for the pods its selector matches.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=slop,categories=scx-slo
// +kubebuilder:printcolumn:name="Budget",type=string,JSONPath=`.spec.latencyBudget`
// +kubebuilder:printcolumn:name="Importance",type=integer,JSONPath=`.spec.importance`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matchedPods`
// +kubebuilder:printcolumn:name="Attainment",type=string,JSONPath=`.status.attainment`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:subresource:status
type SLOPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec SLOPolicySpec `json:"spec"`
	// +optional
	Status SLOPolicyStatus `json:"status,omitempty"`
}

// Condition types of SLOPolicyStatus.
const (
	// ConditionReady: the policy is valid and gives its SLO to every
	// container it is the single top match for.
	ConditionReady = "Ready"
	// ConditionConflict: for some container the policy ties at the top
	// priority with another, so neither applies there.
	ConditionConflict = "Conflict"
	// ConditionInvalid: a value or the selector does not parse.
	ConditionInvalid = "Invalid"
	// ConditionAttainmentComplete: the node agent of every node running
	// a matched pod answered the last reading, so the attainment counts
	// every matched pod. False names the nodes that did not answer.
	ConditionAttainmentComplete = "AttainmentComplete"
)

// SLOPolicyStatus is written by the status controller of the webhook
// Deployment (docs/kubernetes.md).
type SLOPolicyStatus struct {
	// The metadata.generation this status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Pods with at least one container whose SLO this policy gives.
	// +optional
	MatchedPods int32 `json:"matchedPods"`
	// Attainment is the fraction of judged wakeups that met the budget,
	// (Deadlines - Misses) / Deadlines, as a percentage rounded down to
	// two decimals ("99.93%"), so a value below the target never rounds
	// up to it.
	// Empty until a node agent has judged a wakeup of a matched pod.
	// +optional
	Attainment string `json:"attainment,omitempty"`
	// Deadlines counts the wakeups judged against this policy's budget in
	// the containers it gives its SLO to, summed over the matched pods:
	// each container cgroup's scx_slo_deadlines_total on its node, since
	// that node's agent began following the cgroup.
	// +optional
	Deadlines int64 `json:"deadlines,omitempty"`
	// Misses counts those wakeups that waited longer than the budget
	// (scx_slo_deadline_misses_total, summed the same way).
	// +optional
	Misses int64 `json:"misses,omitempty"`
	// UnreachableNodes counts the nodes running matched pods whose agent
	// did not answer the last reading (their pods are left out of the
	// counters; the AttainmentComplete condition names them).
	// +optional
	UnreachableNodes int32 `json:"unreachableNodes,omitempty"`
	// Ready, Conflict, Invalid and AttainmentComplete.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// SLOPolicyList is a list of SLOPolicy.
//
// +kubebuilder:object:root=true
type SLOPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SLOPolicy `json:"items"`
}
