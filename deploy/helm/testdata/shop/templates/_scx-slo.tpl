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
