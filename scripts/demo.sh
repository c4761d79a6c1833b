#!/usr/bin/env bash
# `make demo`: local control plane + azure-sim (make up), the operator in the background, the
# examples applied, and `kubectl get containment` until everything is Ready.
set -euo pipefail
cd "$(dirname "$0")/.."
local_dir="${CONTAINMENT_LOCAL_DIR:-$PWD/.local}"  # make test points it at a scratch directory
scripts/up.sh
# shellcheck disable=SC1091
source "$local_dir/env"

if [ -f "$local_dir/operator.pid" ] && kill -0 "$(cat "$local_dir/operator.pid")" 2>/dev/null; then
  echo "operator already running (pid $(cat "$local_dir/operator.pid"))"
else
  setsid target/debug/containment-operator run --leader-elect=false --metrics-addr 127.0.0.1:0 \
    --drift-interval 30s >"$local_dir/operator.log" 2>&1 < /dev/null &
  echo $! > "$local_dir/operator.pid"
  echo "operator started (pid $!, log .local/operator.log)"
fi

kubectl create namespace containment-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n containment-demo -f examples/
echo
# Converged: every example Ready, except PrivilegedAccessPolicy, whose example soaks report-only
# for 24h first (Reconciling, reason ReportOnly) — and the demo ContainmentPolicy, Ready once the
# operator has published the namespaces it covers.
want=$(( $(ls examples/*.yaml | wc -l) + 1 ))
converged='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Reconciling")].reason}{"\n"}{end}'
for i in $(seq 1 60); do
  ready=$(kubectl get containment -n containment-demo -o jsonpath="$converged" | grep -cE '^True/|/ReportOnly$' || true)
  clear 2>/dev/null || true
  echo "kubectl containment get -n containment-demo   ($ready/$want converged, ${i}s)"
  target/debug/containment-operator get -n containment-demo
  [ "$ready" -eq "$want" ] && break
  sleep 1
done
echo
[ "$ready" -eq "$want" ] || { echo "not every containment converged; see .local/operator.log"; exit 1; }
cat <<MSG
Every containment converged against the simulated Azure ($AZURE_SIM_URL): Ready, and the
PrivilegedAccessPolicy report-only (its example soaks 24h before enforcing).
Try:  source .local/env
      kubectl get containment -n containment-demo      # one table per kind
      ln -sfn "\$PWD/target/debug/containment-operator" ~/.local/bin/kubectl-containment
      kubectl containment get -A                        # the kubectl plugin: one table, 120 columns
      kubectl describe sqlipblock -n containment-demo inc-4711-brute-force
      curl -sk "\$AZURE_SIM_URL/_sim/resources?prefix=/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.Sql/servers/sql-prod-01/" | head
      kubectl delete -n containment-demo -f examples/   # restores the prior state
Stop: make down
MSG
