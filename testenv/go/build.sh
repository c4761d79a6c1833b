#!/usr/bin/env bash
# Builds kube-apiserver and kubectl from k8s.io/kubernetes into the version-keyed cache
# directory given as $1 (see testenv::default_cache_dir). A second run finds both binaries
# there and costs nothing. Set K8S_BUILD_FORCE=1 to rebuild.
set -euo pipefail
cd "$(dirname "$0")"
out="$1"
version="$(cat K8S_VERSION)"
if [ -z "${K8S_BUILD_FORCE:-}" ] && [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ]; then
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
echo "control plane ${version}: building kube-apiserver and kubectl into ${out} (first time: ~10 min on 2 cores)"
start=$(date +%s)
tmp="$(mktemp -d "${out}/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
# Move into place only when both built, so an interrupted build never looks cached.
mv -f "$tmp/kube-apiserver" "$tmp/kubectl" "$out/"
echo "control plane ${version}: built in $(( $(date +%s) - start ))s"
