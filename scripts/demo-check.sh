#!/usr/bin/env bash
# `make test`: run `make demo` end to end in a scratch directory (its own control plane, azure-sim
# and operator) and fail unless every example converges; the demo's output is shown on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
export CONTAINMENT_LOCAL_DIR=$dir
log=$dir/demo.out
cleanup() { scripts/down.sh >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
start=$(date +%s)
if ! env -u KUBECONFIG scripts/demo.sh >"$log" 2>&1 < /dev/null; then
  cat "$log"
  echo "--- operator log (tail)"
  tail -n 40 "$dir/operator.log" 2>/dev/null || true
  echo "demo-check: make demo did not converge" >&2
  exit 1
fi
grep -q '^Every containment converged' "$log" || { cat "$log"; echo "demo-check: no closing message" >&2; exit 1; }
# The last table the demo printed: one row per example, none wider than 120 columns.
read -r rows wide < <(python3 - "$log" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
table = text.split("kubectl containment get -n")[-1].split("\n\n")[0].splitlines()[1:]
print(len(table) - 1, max(len(line) for line in table))
PY
)
want=$(ls examples/*.yaml | wc -l)
[ "$rows" -eq "$want" ] || { cat "$log"; echo "demo-check: $rows rows, want $want" >&2; exit 1; }
[ "$wide" -le 120 ] || { cat "$log"; echo "demo-check: the table is $wide columns wide" >&2; exit 1; }
echo "demo-check: make demo converged, $rows containments, table $wide columns, in $(( $(date +%s) - start ))s"
