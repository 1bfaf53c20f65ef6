{{/* vim: set filetype=mustache: */}}

{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: release-chart, or the release name alone when it already contains the chart name.
Truncated so that "-worker-metrics" style suffixes still fit in 63 characters.
*/}}
{{- define "relay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "relay.labels" -}}
helm.sh/chart: {{ include "relay.chart" . }}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: run-relay
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component. Call with (dict "ctx" $ "component" "api"). */}}
{{- define "relay.componentLabels" -}}
{{ include "relay.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "relay.componentSelectorLabels" -}}
{{ include "relay.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "relay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "relay.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "relay.configMapName" -}}
{{- printf "%s-config" (include "relay.fullname" .) -}}
{{- end -}}

{{/* The Secret holding API keys, vendor keys, encryption key: the user's or the chart's. */}}
{{- define "relay.secretName" -}}
{{- default (include "relay.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "relay.createSecret" -}}
{{- if not .Values.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The key holding one secret item: the user's key name, or the chart's fixed one. */}}
{{- define "relay.secretKey" -}}
{{- if .ctx.Values.existingSecret -}}
{{- index .ctx.Values.existingSecretKeys .item -}}
{{- else -}}
{{- index (dict "apiKeys" "api-keys" "citedyApiKey" "citedy-api-key" "autopostingApiKey" "autoposting-api-key" "encryptionKey" "encryption-key" "adminKey" "admin-key" "redisUrl" "redis-url" "redisPassword" "redis-password") .item -}}
{{- end -}}
{{- end -}}

{{/* Whether API keys are available to mount (non-empty string = yes). */}}
{{- define "relay.hasApiKeys" -}}
{{- if .Values.existingSecret -}}
{{- if .Values.existingSecretKeys.apiKeys -}}true{{- end -}}
{{- else if .Values.secrets.apiKeys -}}true{{- end -}}
{{- end -}}

{{- define "relay.apiKeysDir" -}}/etc/relay/api-keys{{- end -}}

{{- define "relay.redisHost" -}}
{{- printf "%s-redis" (include "relay.fullname" .) -}}
{{- end -}}

{{/*
Where REDIS_URL comes from: one of external-secret, sentinel, embedded, existing-secret, url.
Fails with a clear message on contradictory or missing settings.
*/}}
{{- define "relay.redisMode" -}}
{{- $r := .Values.externalRedis -}}
{{- if and .Values.existingSecret (or .Values.secrets.apiKeys .Values.secrets.citedyApiKey .Values.secrets.autopostingApiKey .Values.secrets.encryptionKey .Values.secrets.adminKey) -}}
{{- fail "existingSecret is set, so the chart creates no Secret: leave secrets.* empty and put those values in your Secret" -}}
{{- end -}}
{{- if $r.existingSecret -}}
external-secret
{{- else if $r.sentinel.enabled -}}
{{- if not $r.sentinel.hosts -}}
{{- fail "externalRedis.sentinel.enabled needs externalRedis.sentinel.hosts (host:port of each Sentinel)" -}}
{{- end -}}
{{- if and $r.sentinel.password .Values.existingSecret (not $r.sentinel.existingSecret) -}}
{{- fail "existingSecret is set, so the chart creates no Secret: use externalRedis.sentinel.existingSecret for the Redis password" -}}
{{- end -}}
sentinel
{{- else if .Values.redis.enabled -}}
{{- if and .Values.redis.auth.enabled (not .Values.redis.auth.existingSecret) -}}
{{- if .Values.existingSecret -}}
{{- fail "existingSecret is set, so the chart creates no Secret: set redis.auth.existingSecret for the embedded Redis password" -}}
{{- end -}}
{{- if not .Values.redis.auth.password -}}
{{- fail "redis.enabled with redis.auth.enabled needs redis.auth.password (or redis.auth.existingSecret, or redis.auth.enabled=false)" -}}
{{- end -}}
{{- end -}}
embedded
{{- else if .Values.existingSecret -}}
{{- if not .Values.existingSecretKeys.redisUrl -}}
{{- fail "REDIS_URL has no source: set existingSecretKeys.redisUrl, externalRedis.existingSecret, externalRedis.sentinel.enabled or redis.enabled" -}}
{{- end -}}
existing-secret
{{- else if $r.url -}}
url
{{- else -}}
{{- fail "REDIS_URL has no source: set externalRedis.url, externalRedis.existingSecret, externalRedis.sentinel.enabled or redis.enabled" -}}
{{- end -}}
{{- end -}}

{{/* The password env var for sentinel / embedded modes, if any (rendered before REDIS_URL). */}}
{{- define "relay.redisPasswordEnv" -}}
{{- $mode := include "relay.redisMode" . -}}
{{- if eq $mode "sentinel" -}}
{{- $s := .Values.externalRedis.sentinel -}}
{{- if $s.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret }}
      key: {{ $s.existingSecretPasswordKey }}
{{- else if $s.password }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "relay.fullname" . }}
      key: redis-password
{{- end -}}
{{- else if and (eq $mode "embedded") .Values.redis.auth.enabled -}}
{{- $a := .Values.redis.auth }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (include "relay.fullname" .) $a.existingSecret }}
      key: {{ ternary $a.existingSecretPasswordKey "redis-password" (not (empty $a.existingSecret)) }}
{{- end -}}
{{- end -}}

{{/*
REDIS_URL. Passwords never appear in a manifest: they come from a Secret, either as the whole
URL or as REDIS_PASSWORD expanded by the kubelet with $(REDIS_PASSWORD).
Sentinel form (see docs/deploy.md):
  redis+sentinel://[:password@]host1:26379,host2:26379/<masterName>/<db>[?query]
*/}}
{{- define "relay.redisEnv" -}}
{{- $mode := include "relay.redisMode" . -}}
{{- include "relay.redisPasswordEnv" . }}
{{- if eq $mode "external-secret" }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretKey }}
{{- else if eq $mode "sentinel" }}
{{- $s := .Values.externalRedis.sentinel }}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (or (not (empty $s.existingSecret)) (not (empty $s.password))) }}
{{- $query := list }}
{{- range $k, $v := $s.query }}
{{- $query = append $query (printf "%s=%v" $k $v) }}
{{- end }}
- name: REDIS_URL
  value: {{ printf "redis+sentinel://%s%s/%s/%v%s" $auth (join "," $s.hosts) $s.masterName (int $s.db) (ternary (printf "?%s" (join "&" $query)) "" (gt (len $query) 0)) | quote }}
{{- else if eq $mode "embedded" }}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (and .Values.redis.auth.enabled true) }}
- name: REDIS_URL
  value: {{ printf "redis://%s%s:%v/0" $auth (include "relay.redisHost" .) .Values.redis.port | quote }}
{{- else if eq $mode "existing-secret" }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret }}
      key: {{ .Values.existingSecretKeys.redisUrl }}
{{- else }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "relay.fullname" . }}
      key: redis-url
{{- end }}
{{- end -}}

{{/*
The secrets the Secret holds for both roles, by item: its env name, its file name. They reach the
pods as files (a mounted Secret, `relay.secretFilesDir`) named by `<NAME>_FILE` variables, never
as environment values (checkov CKV_K8S_35); relay/config.py reads them (FILE_SECRETS).
*/}}
{{- define "relay.secretItems" -}}
{{- $ctx := . -}}
{{- range $item, $var := dict "citedyApiKey" "CITEDY_API_KEY" "autopostingApiKey" "AUTOPOSTING_API_KEY" "encryptionKey" "RELAY_ENCRYPTION_KEY" "adminKey" "RELAY_ADMIN_KEY" }}
{{- $key := include "relay.secretKey" (dict "ctx" $ctx "item" $item) }}
{{- if and $key (or $ctx.Values.existingSecret (index $ctx.Values.secrets $item)) }}
{{ $item }}: {{ $var }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "relay.secretFilesDir" -}}/etc/relay/secrets{{- end -}}

{{/* Secret-backed env shared by both roles: where each secret's file is. */}}
{{- define "relay.secretEnv" -}}
{{- $ctx := . -}}
{{- range $item, $var := (include "relay.secretItems" $ctx | fromYaml) }}
- name: {{ $var }}_FILE
  value: {{ printf "%s/%s" (include "relay.secretFilesDir" $ctx) (include "relay.secretKey" (dict "ctx" (dict "Values" (dict "existingSecret" "")) "item" $item)) | quote }}
{{- end }}
{{- if include "relay.hasApiKeys" . }}
- name: RELAY_API_KEYS_FILE
  value: {{ printf "%s/api-keys" (include "relay.apiKeysDir" .) | quote }}
{{- end }}
{{- include "relay.redisEnv" . }}
{{- end -}}

{{/* Pod annotations that roll the pods when the configuration or the chart's Secret changes. */}}
{{- define "relay.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if include "relay.createSecret" . }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}

{{/*
Pick a role's value, else the shared one. Call with (dict "ctx" $ "role" "api" "key" "nodeSelector").
Renders YAML (empty when neither is set).
*/}}
{{- define "relay.roleValue" -}}
{{- $role := index .ctx.Values .role -}}
{{- $v := index $role .key -}}
{{- if not $v -}}{{- $v = index .ctx.Values .key -}}{{- end -}}
{{- if $v -}}{{- toYaml $v -}}{{- end -}}
{{- end -}}

{{/* topologySpreadConstraints with the role's selector filled in when missing. */}}
{{- define "relay.topologySpread" -}}
{{- $role := index .ctx.Values .role -}}
{{- $list := $role.topologySpreadConstraints | default .ctx.Values.topologySpreadConstraints -}}
{{- $sel := fromYaml (include "relay.componentSelectorLabels" (dict "ctx" .ctx "component" .role)) -}}
{{- $out := list -}}
{{- range $list -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $sel) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- if $out -}}{{- toYaml $out -}}{{- end -}}
{{- end -}}

{{/* Volumes shared by both roles. */}}
{{- define "relay.volumes" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- if include "relay.hasApiKeys" . }}
- name: api-keys
  secret:
    secretName: {{ include "relay.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "relay.secretKey" (dict "ctx" . "item" "apiKeys") }}
        path: api-keys
{{- end }}
{{- $items := include "relay.secretItems" . | fromYaml }}
{{- if $items }}
- name: secret-files
  secret:
    secretName: {{ include "relay.secretName" . }}
    defaultMode: 0440
    # (an existingSecret may lack an optional key: the relay then has no such secret)
    optional: {{ not (empty .Values.existingSecret) }}
    items:
      {{- range $item, $var := $items }}
      - key: {{ include "relay.secretKey" (dict "ctx" $ "item" $item) }}
        path: {{ include "relay.secretKey" (dict "ctx" (dict "Values" (dict "existingSecret" "")) "item" $item) }}
      {{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "relay.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "relay.hasApiKeys" . }}
- name: api-keys
  mountPath: {{ include "relay.apiKeysDir" . }}
  readOnly: true
{{- end }}
{{- if include "relay.secretItems" . | fromYaml }}
- name: secret-files
  mountPath: {{ include "relay.secretFilesDir" . }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
TCP ports the relay's pods reach Redis on, one per line: networkPolicy.egress.redis.ports when set;
else derived from where REDIS_URL comes from: the port of externalRedis.url (6379 when it names
none), each Sentinel's port plus 6379 for the primary it names, the trial StatefulSet's port; a
URL kept in a Secret cannot be read, so 6379 and 26379.
*/}}
{{- define "relay.redisPorts" -}}
{{- $ports := list -}}
{{- $mode := include "relay.redisMode" . -}}
{{- if .Values.networkPolicy.egress.redis.ports -}}
{{- $ports = .Values.networkPolicy.egress.redis.ports -}}
{{- else if eq $mode "url" -}}
{{- $host := (urlParse .Values.externalRedis.url).host -}}
{{- $found := regexFind ":[0-9]+$" $host -}}
{{- $ports = list (ternary (trimPrefix ":" $found) "6379" (ne $found "")) -}}
{{- else if eq $mode "sentinel" -}}
{{- range .Values.externalRedis.sentinel.hosts -}}
{{- $ports = append $ports (regexFind "[0-9]+$" .) -}}
{{- end -}}
{{- $ports = append $ports "6379" -}}
{{- else if eq $mode "embedded" -}}
{{- $ports = list .Values.redis.port -}}
{{- else -}}
{{- $ports = list 6379 26379 -}}
{{- end -}}
{{- range (uniq (without (toStrings $ports) "")) }}
{{ . }}
{{- end -}}
{{- end -}}

{{/* OpenTelemetry traces (relay/tracing.py): the standard OTEL_* env, only with an endpoint. */}}
{{- define "relay.tracingEnv" -}}
{{- with .Values.tracing }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: "http/protobuf"
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- if .samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
- name: OTEL_BSP_MAX_QUEUE_SIZE
  value: {{ .maxQueueSize | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The collector's port: the endpoint URL's, else 443 for https, else 4318. */}}
{{- define "relay.otlpPort" -}}
{{- $u := urlParse .Values.tracing.endpoint -}}
{{- $hostport := regexReplaceAll "^\\[[^]]*\\]" $u.host "h" -}}
{{- if contains ":" $hostport -}}
{{- splitList ":" $hostport | last | int -}}
{{- else if eq $u.scheme "https" -}}
443
{{- else -}}
4318
{{- end -}}
{{- end -}}
