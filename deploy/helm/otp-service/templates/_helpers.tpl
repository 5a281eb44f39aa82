{{/*
Names, labels and the pieces every pod template shares.
*/}}

{{- define "otp-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (a DNS label). When the release
name already contains the chart name it is used as is.
*/}}
{{- define "otp-service.fullname" -}}
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

{{- define "otp-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that never change over the life of a release (used in selectors). */}}
{{- define "otp-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otp-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "otp-service.labels" -}}
helm.sh/chart: {{ include "otp-service.chart" . }}
{{ include "otp-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: otp-service
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The serving pods (Deployment, Service, PDB, HPA select these). */}}
{{- define "otp-service.serverSelectorLabels" -}}
{{ include "otp-service.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "otp-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "otp-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository, then the tag (default: the chart's
appVersion), then @digest when one is given (the digest is what the runtime
pulls; the tag stays for humans).
*/}}
{{- define "otp-service.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Whole seconds of a shutdown setting. The chart sizes
terminationGracePeriodSeconds from them, so they must be numbers of seconds
(the service reads a bare number as seconds).
*/}}
{{- define "otp-service.seconds" -}}
{{- $value := index . 1 }}
{{- if not (or (kindIs "float64" $value) (kindIs "int" $value) (kindIs "int64" $value)) }}
{{- fail (printf "config.shutdown.%s must be a whole number of seconds (got %v), so the chart can size terminationGracePeriodSeconds" (index . 0) $value) }}
{{- end }}
{{- int64 $value }}
{{- end }}

{{/*
terminationGracePeriodSeconds: drain_delay + timeout + a margin, or the value
given, which must be larger than drain_delay + timeout (otherwise the kubelet
kills in-flight requests).
*/}}
{{- define "otp-service.terminationGracePeriodSeconds" -}}
{{- $shutdown := .Values.config.shutdown | default dict }}
{{- $drain := include "otp-service.seconds" (list "drain_delay" (get $shutdown "drain_delay" | default 5)) | int64 }}
{{- $timeout := include "otp-service.seconds" (list "timeout" (get $shutdown "timeout" | default 20)) | int64 }}
{{- $needed := add $drain $timeout }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- if le (int64 .Values.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdown.drain_delay + config.shutdown.timeout (%d)" .Values.terminationGracePeriodSeconds $needed) }}
{{- end }}
{{- int64 .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $needed (int64 .Values.terminationGraceMarginSeconds) }}
{{- end }}
{{- end }}

{{/*
One TOML value: strings quoted (JSON string escapes are valid TOML basic
string escapes), whole numbers without a decimal point (YAML numbers reach
templates as float64), booleans as is, lists as arrays.
*/}}
{{- define "otp-service.tomlValue" -}}
{{- if kindIs "string" . }}
{{- toJson . }}
{{- else if kindIs "bool" . }}
{{- ternary "true" "false" . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}
{{- if eq (float64 .) (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "slice" . }}
{{- $items := list }}
{{- range . }}{{ $items = append $items (include "otp-service.tomlValue" .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else }}
{{- fail (printf "config: unsupported value %v (%s)" . (kindOf .)) }}
{{- end }}
{{- end }}

{{/*
The service's TOML configuration from .Values.config: one table per section,
keys exactly as in docs/configuration.md. Null values are left out (the
service's default applies). Secrets never go here: they come from files.
*/}}
{{- define "otp-service.configToml" -}}
# Rendered by the otp-service chart from .Values.config; see docs/configuration.md.
# Secrets are not here: they are read from files under {{ .Values.secrets.mountPath }}.
{{- range $section, $keys := .Values.config }}
{{- if not (kindIs "map" $keys) }}
{{- fail (printf "config.%s must be a map of keys (a [%s] table)" $section $section) }}
{{- end }}

[{{ $section }}]
{{- range $key, $value := $keys }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ include "otp-service.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding the database URL. */}}
{{- define "otp-service.databaseSecretName" -}}
{{- if .Values.secrets.create }}
{{- include "otp-service.fullname" . }}
{{- else }}
{{- required "secrets.database.existingSecret: name the Secret holding the PostgreSQL URL (or set secrets.create=true)" .Values.secrets.database.existingSecret }}
{{- end }}
{{- end }}

{{/* The Secret holding the crypto keys. */}}
{{- define "otp-service.cryptoSecretName" -}}
{{- if .Values.secrets.create }}
{{- include "otp-service.fullname" . }}
{{- else }}
{{- required "secrets.crypto.existingSecret: name the Secret holding the crypto keys (or set secrets.create=true)" .Values.secrets.crypto.existingSecret }}
{{- end }}
{{- end }}

{{/*
One projected volume with every secret file, mode 0440, readable through
fsGroup 65532.
*/}}
{{- define "otp-service.secretsVolume" -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "otp-service.databaseSecretName" . }}
          items:
            - key: {{ .Values.secrets.database.key }}
              path: database-url
{{- if not .migration }}
      - secret:
          name: {{ include "otp-service.cryptoSecretName" . }}
          items:
            - key: {{ .Values.secrets.crypto.key }}
              path: crypto-keys
{{- with .Values.secrets.introspection }}
{{- if .existingSecret }}
      - secret:
          name: {{ .existingSecret }}
          items:
{{- if .clientSecretKey }}
            - key: {{ .clientSecretKey }}
              path: introspection-client-secret
{{- end }}
{{- if .keyFileKey }}
            - key: {{ .keyFileKey }}
              path: introspection-key.json
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment variables pointing the service at the secret files. */}}
{{- define "otp-service.secretEnv" -}}
- name: OTP__DATABASE__URL_FILE
  value: {{ printf "%s/database-url" .Values.secrets.mountPath | quote }}
{{- if not .migration }}
- name: OTP__CRYPTO__KEYS_FILE
  value: {{ printf "%s/crypto-keys" .Values.secrets.mountPath | quote }}
{{- with .Values.secrets.introspection }}
{{- if and .existingSecret .clientSecretKey }}
- name: OTP__AUTH__INTROSPECTION_CLIENT_SECRET_FILE
  value: {{ printf "%s/introspection-client-secret" $.Values.secrets.mountPath | quote }}
{{- end }}
{{- if and .existingSecret .keyFileKey }}
- name: OTP__AUTH__INTROSPECTION_KEY_FILE
  value: {{ printf "%s/introspection-key.json" $.Values.secrets.mountPath | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* OpenTelemetry, configured through the standard OTEL_* variables. */}}
{{- define "otp-service.otelEnv" -}}
- name: OTEL_SERVICE_NAME
  value: {{ .Values.otel.serviceName | quote }}
{{- if .Values.otel.enabled }}
- name: OTEL_SDK_DISABLED
  value: "false"
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "otel.endpoint: the OTLP collector address (otel.enabled=true)" .Values.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.otel.sampler | quote }}
{{- if ne (toString .Values.otel.samplerArg) "" }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.otel.samplerArg | toString | quote }}
{{- end }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)" "k8s.node.name=$(K8S_NODE_NAME)" (printf "service.version=%s" (.Values.image.tag | default .Chart.AppVersion)) }}
{{- range $key, $value := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $key $value) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}

{{/* Pod-level security: the Kubernetes "restricted" Pod Security Standard. */}}
{{- define "otp-service.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "otp-service.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
