{{/*
The release's object names: the release name when it already contains the
chart's name (`helm install hero-registry ...` gives the names the kustomize
overlays use), else "<release>-hero-registry".
*/}}
{{- define "hero-registry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels Helm adds to every object it owns. */}}
{{- define "hero-registry.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
The registry's pods: `app: hero-registry` is what Loki streams, Prometheus
series, the dashboard and the alerts select on, so it is fixed; the
instance label keeps two releases in one namespace apart.
*/}}
{{- define "hero-registry.selectorLabels" -}}
app: hero-registry
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hero-registry.labels" -}}
app: hero-registry
{{ include "hero-registry.helmLabels" . }}
{{- end -}}

{{/* Monitoring objects: the label kube-prometheus-stack selects on. */}}
{{- define "hero-registry.monitoringLabels" -}}
app.kubernetes.io/part-of: hero-registry
release: {{ .Values.monitoring.releaseLabel }}
{{ include "hero-registry.helmLabels" . }}
{{- end -}}

{{- define "hero-registry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Whether more than one replica can run: then the store must be shared. */}}
{{- define "hero-registry.scaled" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "hero-registry.redisName" -}}
{{- printf "%s-redis" (include "hero-registry.fullname" .) -}}
{{- end -}}

{{- define "hero-registry.redisUrl" -}}
{{- if .Values.keyValue.redis.deploy -}}
{{- printf "redis://%s:6379" (include "hero-registry.redisName" .) -}}
{{- else -}}
{{- required "keyValue.redis.url is needed when keyValue.redis.deploy is false" .Values.keyValue.redis.url -}}
{{- end -}}
{{- end -}}

{{/*
runtime-config.toml for hero-host: the same files as the kustomize layout
(base/ for SQLite, overlays/scale-out/ for Redis), with this release's Redis.
*/}}
{{- define "hero-registry.runtimeConfig" -}}
{{- if eq .Values.keyValue.store "redis" -}}
{{- .Files.Get "files/runtime-config-redis.toml" | replace "redis://hero-registry-redis:6379" (include "hero-registry.redisUrl" .) -}}
{{- else if eq .Values.keyValue.store "spin" -}}
{{- if include "hero-registry.scaled" . -}}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs keyValue.store=redis: SQLite is per pod" -}}
{{- end -}}
{{- .Files.Get "files/runtime-config-spin.toml" -}}
{{- else -}}
{{- fail (printf "keyValue.store must be spin or redis, not %q" .Values.keyValue.store) -}}
{{- end -}}
{{- end -}}

{{/* The Loki host and port of logging.lokiUrl, for Fluent Bit. */}}
{{- define "hero-registry.lokiHost" -}}
{{- (urlParse .Values.logging.lokiUrl).host | splitList ":" | first -}}
{{- end -}}
{{- define "hero-registry.lokiPort" -}}
{{- $parts := (urlParse .Values.logging.lokiUrl).host | splitList ":" -}}
{{- if gt (len $parts) 1 -}}{{ last $parts }}{{- else if eq (urlParse .Values.logging.lokiUrl).scheme "https" -}}443{{- else -}}80{{- end -}}
{{- end -}}

{{/*
The OTEL_* variables of tracing (k8s/components/tracing/deployment-patch.yaml),
checked as hero-host checks them at start.
*/}}
{{- define "hero-registry.tracingEnv" -}}
{{- $t := .Values.tracing -}}
{{- if not (has $t.protocol (list "http/protobuf" "grpc")) -}}
{{- fail (printf "tracing.protocol must be http/protobuf or grpc, not %q" $t.protocol) -}}
{{- end -}}
{{- if not (hasPrefix "http://" $t.endpoint) -}}
{{- fail (printf "tracing.endpoint must be an http:// URL (a collector in the cluster), not %q" $t.endpoint) -}}
{{- end -}}
{{- $samplers := list "always_on" "always_off" "traceidratio" "parentbased_always_on" "parentbased_always_off" "parentbased_traceidratio" -}}
{{- if not (has $t.sampler $samplers) -}}
{{- fail (printf "tracing.sampler must be one of %s, not %q" (join ", " $samplers) $t.sampler) -}}
{{- end -}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
{{- if ne $t.protocol "http/protobuf" }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $t.protocol | quote }}
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $t.samplerArg | quote }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: k8s.pod.name=$(K8S_POD_NAME),k8s.namespace.name=$(K8S_NAMESPACE_NAME)
{{- end -}}
