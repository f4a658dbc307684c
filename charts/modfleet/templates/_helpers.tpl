{{/* Chart name, or nameOverride. */}}
{{- define "modfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: RELEASE-modfleet, or RELEASE when it already contains the chart name. */}}
{{- define "modfleet.fullname" -}}
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

{{- define "modfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "modfleet.labels" -}}
helm.sh/chart: {{ include "modfleet.chart" . }}
{{ include "modfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modfleet
{{- end -}}

{{/* Labels that select the operator pods. */}}
{{- define "modfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modfleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest] with the tag defaulting to appVersion. Argument: the image dict and the root context. */}}
{{- define "modfleet.image" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of the leader election Lease. */}}
{{- define "modfleet.leaseName" -}}
{{- include "modfleet.fullname" . -}}
{{- end -}}

{{/*
The permissions the operator needs on the fleets it manages, and nothing more. Each rule
names the code that needs it (operator/src/...). Used by the ClusterRole (all namespaces) or
by one Role per watched namespace.
*/}}
{{- define "modfleet.fleetRules" -}}
# The GoModuleProxies: watched by the controller (list, watch: controller.rs, run.rs's CRD
# check), finalizer modfleet.dev/cache-retention added and removed (patch: kube's finalizer()).
- apiGroups: ["modfleet.dev"]
  resources: ["gomoduleproxies"]
  verbs: ["list", "watch", "patch"]
# Their status (controller.rs update_status: merge patch).
- apiGroups: ["modfleet.dev"]
  resources: ["gomoduleproxies/status"]
  verbs: ["patch"]
# Children, applied server-side (patch; create when an apply creates the object), read before
# rolling (get: apply::get), watched (owns: list, watch), orphans deleted (delete) and cache
# PVCs released (patch). apply.rs, controller.rs.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# With peer fill: the Role and RoleBinding NAME-peers that let the members read their
# membership (resources/membership.rs), children like the others.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# What that Role grants the members, which the operator must hold itself to grant it (the
# RBAC escalation rule); the operator never reads EndpointSlices.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# The fleets' pods, listed to ask the Ready ones for /status (fleet_health.rs Poller::poll).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# The Secrets a fleet names (upstreams[]/privateModules[].credentialsSecretRef, tls.secretName,
# access.tokenSecretRefs, cache.objectStore.credentialsSecretRef): read at each reconcile (get: controller.rs read_secrets) to check
# their keys and hash their data, and watched (list, watch) so a changed Secret rolls the
# fleets that use it; never written. The Secrets the operator writes are its own token per
# fleet with spec.access (operator_token.rs) and the members' peer token per fleet with peer
# fill (peer_token.rs): created once (create; never patched, so no patch or update), and
# deleted when tampered with or no longer wanted (delete: only its own, by owner reference
# and uid precondition). `create` cannot be limited by name.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Events about the GoModuleProxies (kube's events::Recorder: create, then patch for a series).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* namespaceSelector of the fleet monitors: the watched namespaces, or any namespace. */}}
{{- define "modfleet.fleetNamespaceSelector" -}}
{{- if .Values.watchNamespaces }}
matchNames:
  {{- toYaml .Values.watchNamespaces | nindent 2 }}
{{- else }}
any: true
{{- end }}
{{- end }}

{{/* The injection webhook's Service (clientConfig.service of the MutatingWebhookConfiguration). */}}
{{- define "modfleet.webhookServiceName" -}}
{{- printf "%s-webhook" (include "modfleet.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration (the operator's --webhook-configuration-name). */}}
{{- define "modfleet.webhookConfigurationName" -}}
{{- printf "%s-injection" (include "modfleet.fullname" . | trunc 53 | trimSuffix "-") -}}
{{- end -}}

{{/* The Secret of the webhook's serving certificate: the operator's own (--webhook-secret-name), or cert-manager's. */}}
{{- define "modfleet.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "modfleet.fullname" . | trunc 51 | trimSuffix "-") -}}
{{- end -}}

{{/* The cert-manager Certificate of the serving certificate (named by cert-manager.io/inject-ca-from). */}}
{{- define "modfleet.webhookCertificateName" -}}
{{- include "modfleet.webhookServiceName" . -}}
{{- end -}}

{{/* Where the cert-manager Secret is mounted in the operator container (--webhook-cert-dir). */}}
{{- define "modfleet.webhookCertDir" -}}
/etc/modfleet/webhook-tls
{{- end -}}

{{/* The DNS names the API server reaches the webhook Service by (--webhook-hosts, the Certificate's dnsNames). */}}
{{- define "modfleet.webhookHosts" -}}
{{- $svc := printf "%s.%s.svc" (include "modfleet.webhookServiceName" .) .Release.Namespace -}}
{{- list $svc (printf "%s.cluster.local" $svc) | toJson -}}
{{- end -}}
