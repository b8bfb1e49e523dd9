{{/*
Chart name, truncated to the 63 characters of a label value.
*/}}
{{- define "rds-csi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every resource name: the release name, plus the chart name unless
the release name already contains it. At most 43 characters, so that with
the longest suffix the chart appends ("-controller-metrics", 19 characters)
a Service name stays within 63.
*/}}
{{- define "rds-csi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 43 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 43 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 43 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "rds-csi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "rds-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rds-csi
{{- end -}}

{{/*
Selector labels; the callers add app.kubernetes.io/component.
*/}}
{{- define "rds-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rds-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Service account names.
*/}}
{{- define "rds-csi.controllerServiceAccount" -}}
{{- include "rds-csi.fullname" . }}-controller
{{- end -}}

{{- define "rds-csi.nodeServiceAccount" -}}
{{- include "rds-csi.fullname" . }}-node
{{- end -}}

{{/*
An image reference from an {repository, tag} map.
*/}}
{{- define "rds-csi.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/*
The plugin image: its tag defaults to the chart's appVersion.
*/}}
{{- define "rds-csi.pluginImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Name of the Secret holding the RDS credentials (keys ssh-privatekey and
host-key), failing with what to set when none is given. The schema refuses
the same values first; these checks also hold with --skip-schema-validation.
*/}}
{{- define "rds-csi.rdsSecretName" -}}
{{- $rds := .Values.rds -}}
{{- if not $rds.address -}}
{{- fail "rds.address is required: the RDS SSH address, host[:port] (--set rds.address=10.0.0.5)" -}}
{{- end -}}
{{- if $rds.existingSecret -}}
{{- if or $rds.sshPrivateKey $rds.hostKey -}}
{{- fail "rds.existingSecret is set: leave rds.sshPrivateKey and rds.hostKey empty (the Secret holds them under ssh-privatekey and host-key)" -}}
{{- end -}}
{{- $rds.existingSecret -}}
{{- else -}}
{{- if not (trim $rds.hostKey) -}}
{{- fail "rds.hostKey is required: the RDS SSH host key must be pinned, there is no trust on first use. Give it as one line (--set-file rds.hostKey=./rds_host_key.pub, \"ssh-ed25519 AAAA...\"), or set rds.existingSecret to a Secret with the keys ssh-privatekey and host-key" -}}
{{- end -}}
{{- if not (trim $rds.sshPrivateKey) -}}
{{- fail "rds.sshPrivateKey is required: the unencrypted SSH private key of rds.user (--set-file rds.sshPrivateKey=./id_ed25519), or set rds.existingSecret to a Secret with the keys ssh-privatekey and host-key" -}}
{{- end -}}
{{- include "rds-csi.fullname" . }}-rds
{{- end -}}
{{- end -}}

{{/*
Whole seconds of a Go duration made of hours, minutes and seconds ("1m30s");
the schema admits only that form.
*/}}
{{- define "rds-csi.seconds" -}}
{{- $h := regexFind "[0-9]+h" . | trimSuffix "h" | default "0" | atoi -}}
{{- $m := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | atoi -}}
{{- $s := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | atoi -}}
{{- add (mul $h 3600) (mul $m 60) $s -}}
{{- end -}}

{{/*
Fails unless the leader election timings are ones client-go's elector (the
plugin's and every sidecar's) accepts: lease duration > renew deadline >
1.2 x retry period. The plugin would refuse them at startup.
*/}}
{{- define "rds-csi.checkLeaderElection" -}}
{{- $le := .Values.leaderElection -}}
{{- $lease := include "rds-csi.seconds" $le.leaseDuration | atoi -}}
{{- $renew := include "rds-csi.seconds" $le.renewDeadline | atoi -}}
{{- $retry := include "rds-csi.seconds" $le.retryPeriod | atoi -}}
{{- if lt $retry 1 -}}
{{- fail (printf "leaderElection.retryPeriod (%s) must be at least 1s" $le.retryPeriod) -}}
{{- end -}}
{{- if le (mul $renew 10) (mul $retry 12) -}}
{{- fail (printf "leaderElection.renewDeadline (%s) must be longer than leaderElection.retryPeriod (%s) times 1.2" $le.renewDeadline $le.retryPeriod) -}}
{{- end -}}
{{- if le $lease $renew -}}
{{- fail (printf "leaderElection.leaseDuration (%s) must be longer than leaderElection.renewDeadline (%s)" $le.leaseDuration $le.renewDeadline) -}}
{{- end -}}
{{- end -}}

{{/*
The leader election flags, the same for the plugin and every sidecar. Each
holds its own Lease in the release namespace.
*/}}
{{- define "rds-csi.leaderElectionArgs" -}}
- --leader-election
- --leader-election-namespace={{ .Release.Namespace }}
- --leader-election-lease-duration={{ .Values.leaderElection.leaseDuration }}
- --leader-election-renew-deadline={{ .Values.leaderElection.renewDeadline }}
- --leader-election-retry-period={{ .Values.leaderElection.retryPeriod }}
{{- end -}}

{{/*
Environment of the plugin container common to controller and node: the
downward API values, and the OTLP settings when otlp.enabled. The plugin's
service.instance.id is its node ID; the Kubernetes names go into
OTEL_RESOURCE_ATTRIBUTES.
*/}}
{{- define "rds-csi.pluginEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if .Values.otlp.enabled }}
{{- if not .Values.otlp.endpoint }}
{{- fail "otlp.enabled needs otlp.endpoint, a URL such as http://otel-collector.monitoring:4317" }}
{{- end }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlp.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otlp.protocol | quote }}
- name: OTEL_METRIC_EXPORT_INTERVAL
  value: {{ .Values.otlp.exportIntervalMillis | int64 | toString | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME)"
{{- end }}
{{- end -}}

{{/*
Fails when two listeners of one pod share a port. Takes a list of
[name, port] pairs.
*/}}
{{- define "rds-csi.checkPorts" -}}
{{- $seen := dict -}}
{{- range . -}}
{{- $name := index . 0 -}}
{{- $port := index . 1 | int | toString -}}
{{- if hasKey $seen $port -}}
{{- fail (printf "%s and %s are both port %s, in one pod: give them different ports" (get $seen $port) $name $port) -}}
{{- end -}}
{{- $_ := set $seen $port $name -}}
{{- end -}}
{{- end -}}
