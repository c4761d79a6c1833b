#!/usr/bin/env bash
# Builds the Kubernetes commands that a module directory's tools.go imports (kube-apiserver and
# kubectl for this directory; kube-apiserver alone for floor/, the chart's oldest supported
# release) into the version-keyed cache directory given as $1 (see testenv::default_cache_dir).
# A second run finds the binaries there and costs nothing. Set K8S_BUILD_FORCE=1 to rebuild.
# Usage: build.sh <out-dir> [module-dir]
set -euo pipefail
cd "${2:-$(dirname "$0")}"
out="$1"
version="$(cat K8S_VERSION)"
mapfile -t cmds < <(sed -n 's|^\s*_ "\(k8s.io/kubernetes/cmd/[a-z-]*\)"|\1|p' tools.go)
[ "${#cmds[@]}" -gt 0 ] || { echo "build.sh: no k8s.io/kubernetes/cmd imports in $PWD/tools.go" >&2; exit 1; }
bins=("${cmds[@]##*/}")
cached=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || cached=""; done
if [ -z "${K8S_BUILD_FORCE:-}" ] && [ -n "$cached" ]; then
  echo "control plane ${version}: cached in ${out}"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required to build the control plane" >&2; exit 1; }
mkdir -p "$out"
minor="${version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${version} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=${minor} \
 -X k8s.io/client-go/pkg/version.gitVersion=${version}"
echo "control plane ${version}: building ${bins[*]} into ${out} (first time: ~10 min on 2 cores)"
start=$(date +%s)
tmp="$(mktemp -d "${out}/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${cmds[@]}"
# Move into place only when all built, so an interrupted build never looks cached.
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$out/"; done
echo "control plane ${version}: built in $(( $(date +%s) - start ))s"
