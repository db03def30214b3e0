{{/* Labels Helm adds to every object's metadata (never to selectors or pod templates). */}}
{{- define "zerodrop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zerodrop.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "zerodrop.certManager" -}}
{{- if eq .Values.webhook.certMode "cert-manager" -}}true{{- else if ne .Values.webhook.certMode "self-managed" -}}
{{- fail (printf "webhook.certMode: %q is neither self-managed nor cert-manager" .Values.webhook.certMode) -}}
{{- end -}}
{{- end }}

{{/* The container env both roles set. */}}
{{- define "zerodrop.env" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: GOMEMLIMIT
  # The Go runtime collects harder as the heap nears the container's
  # limit instead of being OOM-killed past it.
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end }}

{{- define "zerodrop.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "zerodrop.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end }}
