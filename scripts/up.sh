#!/usr/bin/env bash
# `make up`: the local control plane and azure-sim in the background, CRDs installed (when
# crds/ exists), operator not started. Writes .local/kubeconfig and .local/env.
set -euo pipefail
cd "$(dirname "$0")/.."
local_dir="${CONTAINMENT_LOCAL_DIR:-$PWD/.local}"  # make test points it at a scratch directory
mkdir -p "$local_dir/sim"

crds=()
[ -d crds ] && [ -n "$(ls crds/*.yaml 2>/dev/null)" ] && crds=(--crds crds)
target/debug/testenv up --detach --dir "$local_dir/controlplane" "${crds[@]}" >/dev/null
cp "$local_dir/controlplane/kubeconfig" "$local_dir/kubeconfig"

if [ -f "$local_dir/sim/pid" ] && kill -0 "$(cat "$local_dir/sim/pid")" 2>/dev/null; then
  echo "azure-sim already running (pid $(cat "$local_dir/sim/pid"))"
else
  : > "$local_dir/sim/azure-sim.log"
  setsid target/debug/azure-sim --listen 127.0.0.1:0 --world sim/worlds/demo.yaml --ca-out "$local_dir/sim" \
    >"$local_dir/sim/azure-sim.log" 2>&1 < /dev/null &
  echo $! > "$local_dir/sim/pid"
fi
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^azure-sim listening on \(https:[^ ]*\).*/\1/p' "$local_dir/sim/azure-sim.log" | head -n1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "azure-sim did not start:"; cat "$local_dir/sim/azure-sim.log"; exit 1; }

# The demo world's operator principal (sim/worlds/demo.yaml).
cat > "$local_dir/env" <<ENV
export KUBECONFIG=$local_dir/kubeconfig
export PATH=$(dirname "$(target/debug/testenv assets | sed -n 's/^kubectl: *//p')"):\$PATH
export AZURE_SIM_URL=$url
export AZURE_SIM_CA=$local_dir/sim/ca.pem
export AZURE_TENANT_ID=72f988bf-0000-4000-8000-000000000001
export AZURE_CLIENT_ID=11111111-0000-4000-8000-000000000001
export AZURE_CLIENT_SECRET=demo-operator-secret
export AZURE_AUTHORITY_HOST=$url
export AZURE_ARM_ENDPOINT=$url
export AZURE_GRAPH_ENDPOINT=$url
export AZURE_MDE_ENDPOINT=$url
export AZURE_CA_FILE=$local_dir/sim/ca.pem
export RESTORE_KEY_FILE=$local_dir/restore-key
ENV
# The key sealing status records, generated once per checkout.
[ -s "$local_dir/restore-key" ] || (umask 077 && head -c 48 /dev/urandom | base64 > "$local_dir/restore-key")
# Deny by default: the demo namespace's ContainmentPolicy (examples/policy/), so that the
# examples can be applied there at once.
(
  # shellcheck disable=SC1091
  source "$local_dir/env"
  kubectl apply -f examples/policy/ >/dev/null
)
echo "control plane: $local_dir/kubeconfig"
echo "azure-sim:     $url (CA $local_dir/sim/ca.pem)"
echo "policy:        ContainmentPolicy containment-demo allows namespace containment-demo"
echo "ready: source .local/env"
