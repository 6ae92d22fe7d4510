{{/* The Fluent Bit sidecar (k8s/components/logging/fluent-bit-sidecar): a
native sidecar, started before hero-host and stopped after it. */}}
{{- define "hero-registry.sidecarContainer" -}}
- name: fluent-bit
  image: {{ .Values.logging.images.fluentBit }}
  imagePullPolicy: IfNotPresent
  restartPolicy: Always
  args: ["--config=/fluent-bit/etc/fluent-bit.conf"]
  env:
    - name: LOKI_HOST
      value: {{ include "hero-registry.lokiHost" . | quote }}
    - name: LOKI_PORT
      value: {{ include "hero-registry.lokiPort" . | quote }}
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: APP
      valueFrom:
        fieldRef:
          fieldPath: metadata.labels['app']
  resources:
    requests:
      cpu: 20m
      memory: 32Mi
    limits:
      memory: 128Mi
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
  volumeMounts:
    - name: fluent-bit-config
      mountPath: /fluent-bit/etc
      readOnly: true
    - name: host-log
      mountPath: /var/log/hero-host
      readOnly: true
    - name: fluent-bit-state
      mountPath: /var/fluent-bit/state
{{- end -}}
