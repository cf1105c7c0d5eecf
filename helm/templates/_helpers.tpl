{{/* Names and labels. */}}
{{- define "llm-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llm-gateway.fullname" -}}
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

{{- define "llm-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llm-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llm-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "llm-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llm-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llm-gateway.secretName" -}}
{{- default (include "llm-gateway.fullname" .) .Values.secrets.name -}}
{{- end -}}

{{/* Where the image's entry point reads its config: `gateway serve --config /etc/gateway/config.yaml`. */}}
{{- define "llm-gateway.configDir" -}}/etc/gateway{{- end -}}

{{/*
The gateway's config.yaml: .Values.config, with state.redis_url and events.postgres_dsn taken from
externalRedis.url and externalPostgres.dsn when those are set. Output: YAML text.
*/}}
{{- define "llm-gateway.config" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $state := get $config "state" | default dict -}}
{{- $events := get $config "events" | default dict -}}
{{- with .Values.externalRedis.url }}{{ $_ := set $state "redis_url" . }}{{ end -}}
{{- with .Values.externalPostgres.dsn }}{{ $_ := set $events "postgres_dsn" . }}{{ end -}}
{{- $_ := set $config "state" $state -}}
{{- $_ := set $config "events" $events -}}
{{- toYaml $config -}}
{{- end -}}

{{/* config.server, with the gateway's defaults for what the chart reads from it. */}}
{{- define "llm-gateway.server" -}}
{{- $server := get (include "llm-gateway.config" . | fromYaml) "server" | default dict -}}
{{- $defaults := dict "host" "0.0.0.0" "port" 8080 "workers" 1 "readiness_grace_s" 5 "drain_timeout_s" 30 -}}
{{- range $key, $value := $defaults -}}
{{- if or (not (hasKey $server $key)) (kindIs "invalid" (get $server $key)) -}}
{{- $_ := set $server $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $server -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: everything the gateway does after SIGTERM, in order, rounded up:
the preStop sleep, readiness_grace_s (still accepting, /readyz 503), drain_timeout_s (in-flight requests and
streams; uvicorn waits ceil() of it), then the usage-event flush and exit.
*/}}
{{- define "llm-gateway.terminationGracePeriodSeconds" -}}
{{- $server := include "llm-gateway.server" . | fromYaml -}}
{{- $total := addf (.Values.drain.preStopSleepSeconds | default 0) $server.readiness_grace_s (ceil $server.drain_timeout_s) .Values.drain.eventFlushSeconds -}}
{{- ceil $total | int -}}
{{- end -}}

{{/* Refusals, each with what to change. Included by every template that depends on the config. */}}
{{- define "llm-gateway.validate" -}}
{{- $config := include "llm-gateway.config" . | fromYaml -}}
{{- $server := include "llm-gateway.server" . | fromYaml -}}
{{- $redis := (get $config "state" | default dict).redis_url -}}
{{- $events := get $config "events" | default dict -}}
{{- if and (gt (int $server.workers) 1) (not $redis) -}}
{{- fail (printf "config.server.workers is %d: more than 1 worker needs state.redis_url (set externalRedis.url), as the gateway itself refuses to start: in-process counters would multiply every budget and rate limit by the number of workers" (int $server.workers)) -}}
{{- end -}}
{{- if and $redis (not (hasPrefix "${" $redis)) (not (or (hasPrefix "redis://" $redis) (hasPrefix "rediss://" $redis))) -}}
{{- fail "externalRedis.url (state.redis_url) must start with redis:// or rediss://" -}}
{{- end -}}
{{- if and $redis (contains "?" $redis) -}}
{{- fail "externalRedis.url (state.redis_url) must not carry ?query options" -}}
{{- end -}}
{{- $dsn := $events.postgres_dsn -}}
{{- if and $dsn (not (hasPrefix "${" $dsn)) (not (or (hasPrefix "postgresql://" $dsn) (hasPrefix "postgres://" $dsn))) -}}
{{- fail "externalPostgres.dsn (events.postgres_dsn) must start with postgresql://" -}}
{{- end -}}
{{- if not (has (toString $server.host) (list "0.0.0.0" "::")) -}}
{{- fail (printf "config.server.host is %s: in a pod the gateway must listen on every interface (0.0.0.0 or ::), or the probes and the Service cannot reach it" (toString $server.host)) -}}
{{- end -}}
{{- $dataDir := printf "%s/" (trimSuffix "/" .Values.dataDir) -}}
{{- $writable := dict "config.events.spool_dir" (toString ($events.spool_dir | default "spool")) -}}
{{- if not $dsn -}}
{{- $_ := set $writable "config.events.sqlite_path" (toString ($events.sqlite_path | default "gateway-usage.sqlite")) -}}
{{- end -}}
{{- range $key, $path := $writable -}}
{{- if not (or (hasPrefix $dataDir $path) (hasPrefix "/tmp/" $path)) -}}
{{- fail (printf "%s is %s: it must be under dataDir (%s) or /tmp/, the only writable directories (the root filesystem is read-only)" $key $path $dataDir) -}}
{{- end -}}
{{- end -}}
{{- end -}}
