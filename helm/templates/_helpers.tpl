{{/*
The chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "smtp-tls-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full resource name: release name + chart name, unless the release name already contains it.
*/}}
{{- define "smtp-tls-exporter.fullname" -}}
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

{{- define "smtp-tls-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "smtp-tls-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smtp-tls-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "smtp-tls-exporter.labels" -}}
helm.sh/chart: {{ include "smtp-tls-exporter.chart" . }}
{{ include "smtp-tls-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: smtp-tls-exporter
{{- end }}

{{- define "smtp-tls-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "smtp-tls-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Where the CA bundle from caFile is mounted; empty when caFile is not set.
*/}}
{{- define "smtp-tls-exporter.caFilePath" -}}
{{- if and .Values.caFile.secretName .Values.caFile.configMapName }}
{{- fail "caFile: set secretName or configMapName, not both" }}
{{- end }}
{{- if or .Values.caFile.secretName .Values.caFile.configMapName }}
{{- printf "/etc/smtp-tls-exporter/ca/%s" .Values.caFile.key }}
{{- end }}
{{- end }}

{{/*
Where the web config (--web.config.file) is mounted; empty when webConfig is off. Its Secret
is mounted whole in that directory, with webConfig.tlsSecretName's files in tls/.
*/}}
{{- define "smtp-tls-exporter.webConfigPath" -}}
{{- $web := .Values.webConfig }}
{{- if and $web.secretName $web.config }}
{{- fail "webConfig: set secretName or config, not both" }}
{{- end }}
{{- if and $web.tlsSecretName (not (or $web.secretName $web.config)) }}
{{- fail "webConfig.tlsSecretName: the certificate needs a web config that names it: set webConfig.config (tls_server_config: {cert_file: tls/tls.crt, key_file: tls/tls.key}) or webConfig.secretName" }}
{{- end }}
{{- if $web.secretName }}
{{- printf "/etc/smtp-tls-exporter-web/%s" $web.key }}
{{- else if $web.config }}
{{- print "/etc/smtp-tls-exporter-web/web-config.yml" }}
{{- end }}
{{- end }}

{{/*
The scheme the probes and the ServiceMonitor use: webConfig.scheme, else HTTPS when the
chart can see that the web config serves TLS.
*/}}
{{- define "smtp-tls-exporter.webScheme" -}}
{{- $web := .Values.webConfig }}
{{- if $web.scheme }}
{{- $web.scheme }}
{{- else if or $web.tlsSecretName (and $web.config $web.config.tls_server_config) }}
{{- print "HTTPS" }}
{{- else }}
{{- print "HTTP" }}
{{- end }}
{{- end }}

{{/*
A liveness or readiness probe from values (dict "probe" ... "root" $): an httpGet one gets
the web config's scheme and, with webConfig.probeBasicAuth, an Authorization header (the
toolkit's format guards /-/healthy and /-/ready too).
*/}}
{{- define "smtp-tls-exporter.probe" -}}
{{- $probe := deepCopy .probe }}
{{- $web := .root.Values.webConfig }}
{{- if $probe.httpGet }}
{{- if eq (include "smtp-tls-exporter.webScheme" .root) "HTTPS" }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- with $web.probeBasicAuth }}
{{- if .username }}
{{- $credentials := printf "%s:%s" .username .password | b64enc }}
{{- $header := dict "name" "Authorization" "value" (printf "Basic %s" $credentials) }}
{{- $_ := set $probe.httpGet "httpHeaders" (append (default list $probe.httpGet.httpHeaders) $header) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/*
The exporter's config file, from config.defaults and config.targets (and config.dns,
config.on_demand).
Written as JSON (which is YAML): every string stays quoted, so the exporter's YAML 1.1
parser cannot turn a value such as the IPv6 address 2001:10:20:30:40:50:0:1 (a base-60
integer to YAML 1.1), "no" or "0755" into a number or a boolean.
*/}}
{{- define "smtp-tls-exporter.configFile" -}}
{{- if not .Values.config.targets }}
{{- fail "config.targets is empty: list at least one SMTP server to probe (see helm/values.example.yaml), e.g. --set config.targets[0].host=mx1.example.org; the exporter refuses a config without targets and would never become ready" }}
{{- end }}
{{- $defaults := deepCopy (default dict .Values.config.defaults) }}
{{- $caFilePath := include "smtp-tls-exporter.caFilePath" . }}
{{- if $caFilePath }}
{{- $_ := set $defaults "ca_file" $caFilePath }}
{{- end }}
{{- $config := dict "targets" (default list .Values.config.targets) }}
{{- if $defaults }}
{{- $_ := set $config "defaults" $defaults }}
{{- end }}
{{- if .Values.config.dns }}
{{- $_ := set $config "dns" .Values.config.dns }}
{{- end -}}
{{- if .Values.config.on_demand }}
{{- $_ := set $config "on_demand" .Values.config.on_demand }}
{{- end -}}
# Generated by the smtp-tls-exporter Helm chart from config.defaults, config.targets, config.dns and config.on_demand.
{{ toPrettyJson $config }}
{{- end }}

{{/*
The exporter's image. No image is published for the chart, so the repository is the user's
own: the one they pushed their build of the Dockerfile to.
*/}}
{{- define "smtp-tls-exporter.image" -}}
{{- if not .Values.image.repository }}
{{- fail (printf "image.repository is not set: build the image from the exporter's Dockerfile, push it to your registry and set image.repository to it (and image.tag unless it is %s); README, Helm, shows how" .Chart.AppVersion) }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The number of shards: the pods of the StatefulSet, each probing its share of the targets;
0 when sharding is off (a Deployment whose pods each probe every target).
*/}}
{{- define "smtp-tls-exporter.shards" -}}
{{- int (default 0 .Values.sharding.shards) }}
{{- end }}

{{/*
The pod template of the Deployment, or of the StatefulSet when sharding is on: then every pod
runs --shard=<its ordinal>/<shards>, the ordinal coming from the apps.kubernetes.io/pod-index
label (set by the StatefulSet controller since Kubernetes 1.28) through the downward API.
*/}}
{{- define "smtp-tls-exporter.podTemplate" -}}
{{- $shards := int (include "smtp-tls-exporter.shards" .) -}}
{{- include "smtp-tls-exporter.checkStorage" . -}}
metadata:
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if .Values.webConfig.config }}
    checksum/web-config: {{ include (print $.Template.BasePath "/web-config-secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "smtp-tls-exporter.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "smtp-tls-exporter.serviceAccountName" . }}
  # The exporter never talks to the Kubernetes API.
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: smtp-tls-exporter
      image: {{ include "smtp-tls-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - smtp-tls-exporter
      args:
        - --config.file=/etc/smtp-tls-exporter/config.yaml
        - --web.listen-address=:9025
        - --log.level={{ .Values.log.level }}
        - --log.format={{ .Values.log.format }}
        {{- with include "smtp-tls-exporter.webConfigPath" . }}
        - --web.config.file={{ . }}
        {{- end }}
        {{- if .Values.storage.enabled }}
        - --storage.path={{ .Values.storage.mountPath }}
        {{- end }}
        {{- if $shards }}
        # Kubernetes expands $(POD_INDEX) from the container's env.
        - --shard=$(POD_INDEX)/{{ $shards }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or $shards .Values.extraEnv }}
      env:
        {{- if $shards }}
        # The pod's ordinal in the StatefulSet, which is its shard.
        - name: POD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      ports:
        - name: http-metrics
          containerPort: 9025
          protocol: TCP
      livenessProbe:
        {{- include "smtp-tls-exporter.probe" (dict "probe" .Values.livenessProbe "root" .) | nindent 8 }}
      readinessProbe:
        {{- include "smtp-tls-exporter.probe" (dict "probe" .Values.readinessProbe "root" .) | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/smtp-tls-exporter
          readOnly: true
        {{- if include "smtp-tls-exporter.webConfigPath" . }}
        - name: web-config
          mountPath: /etc/smtp-tls-exporter-web
          readOnly: true
        {{- end }}
        - name: tmp
          mountPath: /tmp
        {{- if .Values.storage.enabled }}
        - name: storage
          mountPath: {{ .Values.storage.mountPath }}
        {{- end }}
  volumes:
    # One projected volume: config.yaml and, with caFile, ca/<key> side by side
    # (no mount nested inside a read-only ConfigMap volume).
    - name: config
      projected:
        sources:
          - configMap:
              name: {{ include "smtp-tls-exporter.fullname" . }}
              items:
                - key: config.yaml
                  path: config.yaml
          {{- if .Values.caFile.secretName }}
          - secret:
              name: {{ .Values.caFile.secretName }}
              items:
                - key: {{ .Values.caFile.key | quote }}
                  path: ca/{{ .Values.caFile.key }}
          {{- else if .Values.caFile.configMapName }}
          - configMap:
              name: {{ .Values.caFile.configMapName }}
              items:
                - key: {{ .Values.caFile.key | quote }}
                  path: ca/{{ .Values.caFile.key }}
          {{- end }}
    {{- if include "smtp-tls-exporter.webConfigPath" . }}
    # The web config and what it names, updated in place when the Secrets change (the
    # exporter reads the certificate files again for the next connection).
    - name: web-config
      projected:
        sources:
          - secret:
              name: {{ .Values.webConfig.secretName | default (printf "%s-web-config" (include "smtp-tls-exporter.fullname" .)) }}
          {{- with .Values.webConfig.tlsSecretName }}
          - secret:
              name: {{ . }}
              items:
                - key: tls.crt
                  path: tls/tls.crt
                - key: tls.key
                  path: tls/tls.key
          - secret:
              name: {{ . }}
              optional: true
              items:
                - key: ca.crt
                  path: tls/ca.crt
          {{- end }}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
    {{- if and .Values.storage.enabled (not $shards) }}
    # The results database (a StatefulSet has a claim per pod instead): an existing claim,
    # or an emptyDir, which outlives the container but not the pod.
    - name: storage
      {{- if .Values.storage.existingClaim }}
      persistentVolumeClaim:
        claimName: {{ .Values.storage.existingClaim }}
      {{- else }}
      emptyDir:
        sizeLimit: {{ .Values.storage.size }}
      {{- end }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Storage values that cannot work: one existing claim for many pods (Deployment replicas or
shards, which get a claim each from the StatefulSet).
*/}}
{{- define "smtp-tls-exporter.checkStorage" -}}
{{- $storage := .Values.storage }}
{{- if and $storage.enabled $storage.existingClaim }}
{{- if int (include "smtp-tls-exporter.shards" .) }}
{{- fail "storage.existingClaim is for the Deployment: with sharding.shards each pod gets a claim of its own (storage.size, storage.storageClassName)" }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "storage.existingClaim holds the results of one pod: set replicaCount to 1, or use sharding.shards for more pods (a claim each)" }}
{{- end }}
{{- end }}
{{- end }}
