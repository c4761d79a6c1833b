{{- define "co.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "co.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "co.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "co.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "co.selectorLabels" -}}
app.kubernetes.io/name: {{ include "co.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "co.labels" -}}
{{ include "co.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "co.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "co.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "co.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "co.workloadIdentity" -}}
{{- eq .Values.azure.credential "workload-identity" -}}
{{- end -}}

{{- /* The containment kinds' plurals (a test keeps this in step with crds/): the operator's
RBAC names them, so that it never gains write access to ContainmentPolicies. */ -}}
{{- define "co.kindResources" -}}
sqlipblocks sqlpublicaccesslockdowns sqlentraonlyauthentications sqltransparentdataencryptions sqlauditings sqladminpasswordrotations storagekeyrotations storagepublicaccesslockdowns storagesasrevocations storagesoftdeleteprotections storagedefenderprotections cosmoskeyrotations cosmospublicaccesslockdowns defenderalertstates wafipblocks nsgdenyrules arcisolations arcruncommands deviceisolations devicecoderestrictions threatsubmissions emailremediations consentlockdowns threatindicators usercontainments serviceprincipalcontainments privilegedaccesspolicies appservicerestarts appservicesecretrotations
{{- end -}}

{{- define "co.restoreKeySecret" -}}
{{- default (printf "%s-restore-key" (include "co.fullname" .)) .Values.restoreKey.existingSecret -}}
{{- end -}}
