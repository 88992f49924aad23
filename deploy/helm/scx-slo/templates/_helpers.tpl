{{/* Name of the chart, or nameOverride. */}}
{{- define "scx-slo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the release's objects. */}}
{{- define "scx-slo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scx-slo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scx-slo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scx-slo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "scx-slo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "scx-slo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scx-slo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Capabilities, measured for observe mode by TestObserveCapabilities
(deploy/helm) and explained in README.md: CAP_BPF to create maps and load
programs, CAP_PERFMON for tracing programs. A struct_ops scheduler (enforce
mode) passes the same kernel checks, so a node's label can switch it to
enforce without a new pod spec.
*/}}
{{- define "scx-slo.capabilities" -}}
- BPF
- PERFMON
{{- end }}

{{/* The metrics job label the alert rules expect. */}}
{{- define "scx-slo.relabelings" -}}
- targetLabel: job
  replacement: {{ .Values.prometheus.job | quote }}
  action: replace
- sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: instance
  action: replace
- sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
  action: replace
{{- end }}

{{/* Name of the webhook's objects. */}}
{{- define "scx-slo.webhook.fullname" -}}
{{- printf "%s-webhook" (include "scx-slo.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scx-slo.webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scx-slo.name" . }}-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The chart convention for workloads: copy this helper into your chart and
include it in the pod template's annotations with your `scxSlo:` values
block, e.g.
  annotations:
    {{- include "scx-slo.podAnnotations" .Values.scxSlo | nindent 8 }}
scxSlo: {latencyBudget: 2ms, importance: 500, target: "0.99"} becomes the
scx-slo.io/ pod annotations; keys left out are not written.
*/}}
{{- define "scx-slo.podAnnotations" -}}
{{- with .latencyBudget }}
scx-slo.io/latency-budget: {{ . | quote }}
{{- end }}
{{- with .importance }}
scx-slo.io/importance: {{ . | toString | quote }}
{{- end }}
{{- with .target }}
scx-slo.io/target: {{ . | toString | quote }}
{{- end }}
{{- end }}

{{/* What both webhooks share: never block a pod, skip kube-system, the
    release's namespace and whatever opts out. */}}
{{- define "scx-slo.webhook.common" -}}
failurePolicy: Ignore
sideEffects: None
timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
admissionReviewVersions: [v1]
matchPolicy: Equivalent
clientConfig:
  service:
    name: {{ .name }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- toYaml (concat (list "kube-system" .root.Release.Namespace) .root.Values.webhook.excludeNamespaces | uniq) | nindent 8 }}
    - key: scx-slo.io/webhook
      operator: NotIn
      values: ["off"]
objectSelector:
  matchExpressions:
    - key: scx-slo.io/webhook
      operator: NotIn
      values: ["off"]
{{- end }}
