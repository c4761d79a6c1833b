#!/usr/bin/env bash
# `make down`: stop what `make up` started.
set -uo pipefail
cd "$(dirname "$0")/.."
local_dir="${CONTAINMENT_LOCAL_DIR:-$PWD/.local}"  # make test points it at a scratch directory
if [ -f "$local_dir/operator.pid" ]; then
  pid=$(cat "$local_dir/operator.pid")
  kill "$pid" 2>/dev/null && echo "containment-operator stopped (pid $pid)"
  rm -f "$local_dir/operator.pid"
fi
if [ -f "$local_dir/sim/pid" ]; then
  pid=$(cat "$local_dir/sim/pid")
  kill "$pid" 2>/dev/null && echo "azure-sim stopped (pid $pid)"
  rm -f "$local_dir/sim/pid"
fi
[ -x target/debug/testenv ] && target/debug/testenv down --dir "$local_dir/controlplane"
rm -f "$local_dir/kubeconfig" "$local_dir/env"
exit 0
