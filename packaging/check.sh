#!/usr/bin/env bash
# The packaging checks of `make test` (run under `testenv exec`, so KUBECONFIG points at the
# local control plane): helm lint, values.schema.json rejections, promtool on the alert rules,
# kubeconform -strict on every manifest we ship (schemas taken from the API server with our CRDs
# installed), the kustomize base's freshness, the Dockerfile lint, and the kstatus / Argo CD
# health tests.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?run under testenv exec (make test)}"
tools="${CONTAINMENT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/containment-operator}/tools/bin"
helm="$tools/helm"
kubeconform="$tools/kubeconform"
promtool="$tools/promtool"
kubectl="$(target/debug/testenv assets | sed -n 's/^kubectl: *//p')"
for b in "$helm" "$kubeconform" "$promtool" "$kubectl"; do
  [ -x "$b" ] || { echo "packaging: $b missing (make tools / make controlplane)" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chart=charts/containment-operator
k8s=1.37.2
step() { echo "packaging: $*"; }
render() { "$helm" template co "$chart" --namespace containment-system --kube-version "$k8s" "$@"; }

step "chart CRDs match crds/"
cmp crds/containment.defenderc2.io.yaml "$chart/crds/containment.defenderc2.io.yaml" \
  || { echo "charts/containment-operator/crds is stale: run make crds" >&2; exit 1; }

step "Chart version matches Cargo.toml"
cargo_version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
grep -q "^appVersion: \"$cargo_version\"$" "$chart/Chart.yaml" \
  || { echo "$chart/Chart.yaml appVersion is not $cargo_version" >&2; exit 1; }

step "Chart kubeVersion floor is the release the floor test runs on"
floor="$(cat testenv/go/floor/K8S_VERSION)"; floor="${floor#v}"; floor_minor="${floor%.*}"
grep -q "^kubeVersion: \">=${floor_minor}.0-0\"$" "$chart/Chart.yaml" \
  || { echo "$chart/Chart.yaml kubeVersion is not \">=${floor_minor}.0-0\" (testenv/go/floor/K8S_VERSION)" >&2; exit 1; }
below="1.$(( ${floor_minor#1.} - 1 )).99"
"$helm" template co "$chart" --set azure.clientId=x --kube-version "$floor" >/dev/null
if "$helm" template co "$chart" --set azure.clientId=x --kube-version "$below" >/dev/null 2>&1; then
  echo "packaging: the chart installs on $below, below its floor $floor_minor" >&2; exit 1
fi

# Value sets the chart is linted and validated with: defaults (workload identity), a
# namespace-scoped client-secret install, and everything optional switched on.
variants=(
  "--set azure.clientId=00000000-0000-0000-0000-000000000001"
  "--set azure.credential=client-secret --set azure.clientSecret.existingSecret=azure --set watchNamespace=soc --set replicaCount=1 --set leaderElection.enabled=false"
  "--set azure.clientId=x --set secretNamespaces={soc,ir} --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true --set azure.extraCA.configMap=proxy-ca --set driftIntervalFor.SqlIpBlock=1m --set kinds={SqlIpBlock,WafIpBlock} --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)
step "helm lint --strict (${#variants[@]} value sets)"
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  "$helm" lint --strict "$chart" --kube-version "$k8s" $v >"$work/lint.log" 2>&1 || { cat "$work/lint.log"; exit 1; }
done

step "values.schema.json and template guards reject bad values"
reject() {
  local want="$1"; shift
  if render "$@" >"$work/bad.yaml" 2>"$work/bad.log"; then
    echo "packaging: helm template $* was accepted; expected a rejection mentioning '$want'" >&2; exit 1
  fi
  grep -q -- "$want" "$work/bad.log" || { echo "packaging: rejection of $* lacks '$want':" >&2; cat "$work/bad.log" >&2; exit 1; }
}
reject "replicaCount" --set azure.clientId=x --set replicaCount=-1
reject "credential" --set azure.clientId=x --set azure.credential=password
reject "/kinds/0" --set azure.clientId=x --set kinds={NotAKind}
reject "/driftInterval" --set azure.clientId=x --set driftInterval=soon
reject "azure.clientId is required" --set azure.clientId=
reject "existingSecret is required" --set azure.credential=client-secret
reject "needs leaderElection" --set azure.clientId=x --set leaderElection.enabled=false
reject "additional properties 'replicas'" --set azure.clientId=x --set replicas=3

step "JSON schemas from the API server (our CRDs installed)"
"$kubectl" apply --server-side --force-conflicts -f crds/ >/dev/null
"$kubectl" wait --for condition=Established --timeout=60s -f crds/ >/dev/null
(cd packaging && go build -o "$work/openapi-schemas" ./cmd/openapi-schemas)
"$kubectl" get --raw /openapi/v2 | "$work/openapi-schemas" "$work/schemas"

conform() {
  "$kubeconform" -strict -summary \
    -schema-location "$work/schemas/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json" "$@"
}
step "kubeconform -strict rejects unknown fields (schemas are strict)"
cat > "$work/bad.yaml" <<'BAD'
apiVersion: containment.defenderc2.io/v1alpha1
kind: SqlIpBlock
metadata: {name: bad}
spec:
  target: {resourceId: /subscriptions/x/resourceGroups/r/providers/Microsoft.Sql/servers/s}
  ipAddresses: [203.0.113.7]
  ipAdresses: [203.0.113.8]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i, securityContex: {}}]
BAD
if conform "$work/bad.yaml" >"$work/bad.log" 2>&1; then
  echo "packaging: kubeconform accepted unknown fields" >&2; cat "$work/bad.log" >&2; exit 1
fi
grep -q ipAdresses "$work/bad.log" || { cat "$work/bad.log" >&2; exit 1; }

step "kubeconform -strict: chart (every value set, CRDs included)"
for v in "${variants[@]}"; do
  # ServiceMonitor's and PrometheusRule's schemas belong to the Prometheus Operator, which this
  # cluster lacks.
  # shellcheck disable=SC2086
  render --include-crds $v | conform -skip ServiceMonitor,PrometheusRule
done

step "promtool check rules: the chart's alerts, as a file and as the rendered PrometheusRule"
"$promtool" check rules "$chart/files/prometheus-rules.yaml"
render --set azure.clientId=x --set metrics.prometheusRule.enabled=true --show-only templates/monitoring.yaml \
  | sed -n '/^spec:/,$p' | sed '1d; s/^  //' > "$work/rendered-rules.yaml"
"$promtool" check rules "$work/rendered-rules.yaml"
render --set azure.clientId=x --set metrics.grafanaDashboard.enabled=true --show-only templates/monitoring.yaml \
  > "$work/dashboard.yaml"
grep -q '"title": "containment-operator"' "$work/dashboard.yaml" \
  && grep -q 'grafana_dashboard: "1"' "$work/dashboard.yaml" \
  || { echo "packaging: the dashboard ConfigMap lacks the dashboard or the Grafana sidecar's label" >&2; exit 1; }
step "kubeconform -strict: kustomize base and workload-identity overlay"
"$kubectl" kustomize deploy/base | conform
"$kubectl" kustomize deploy/overlays/workload-identity | conform
step "kubeconform -strict: examples/ (our CRD schemas)"
conform examples/
step "kubeconform -strict: GitOps examples (Flux and Argo CD kinds have no schema here)"
conform -skip Application,GitRepository,HelmRelease,Kustomization deploy/argocd deploy/flux

step "deploy/base is the rendered chart"
HELM="$helm" packaging/render-base.sh > "$work/base.yaml"
diff -u deploy/base/containment-operator.yaml "$work/base.yaml" >/dev/null \
  || { echo "deploy/base/containment-operator.yaml is stale: run make manifests" >&2; exit 1; }

step "Dockerfile (BuildKit checks + image policy), kstatus and Argo CD health"
(cd packaging && test -z "$(gofmt -l .)" && go vet ./... && go run ./cmd/dockerfile-check ../Dockerfile && go test -count=1 ./...)
step "all checks passed"
