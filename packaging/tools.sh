#!/usr/bin/env bash
# Installs the packaging tools from the Go module proxy into a version-keyed cache directory
# ($1, default $CONTAINMENT_CACHE_DIR/tools) and prints nothing else on a cache hit. Pinned
# versions: a tool upgrade is a reviewed change to this file.
set -euo pipefail
out="${1:-${CONTAINMENT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/containment-operator}/tools}"
HELM=helm.sh/helm/v3/cmd/helm@v3.22.0
KUBECONFORM=github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0
# Prometheus 3's module tags are v0.3xx.y; promtool checks the chart's alert rules.
PROMTOOL=github.com/prometheus/prometheus/cmd/promtool@v0.316.0
command -v go >/dev/null || { echo "tools.sh: Go is required to install helm, kubeconform and promtool" >&2; exit 1; }
install() {
  local pkg="$1" ldflags="-s -w ${2:-} ${3:-}" name dir
  name="$(basename "${pkg%@*}")"
  dir="$out/$name-${pkg#*@}"
  [ -x "$dir/$name" ] && [ -f "$dir/.ldflags" ] && [ "$(cat "$dir/.ldflags")" = "$ldflags" ] && return 0
  echo "tools: building $pkg (first time only)"
  mkdir -p "$dir"
  # -trimpath and a private GOBIN: the binary never lands half-written at the cached path.
  local tmp; tmp="$(mktemp -d "$dir/.build.XXXXXX")"
  CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "$pkg"
  mv -f "$tmp/$name" "$dir/$name"
  echo "$ldflags" > "$dir/.ldflags"
  rm -rf "$tmp"
}
install "$HELM" -X helm.sh/helm/v3/internal/version.version=v3.22.0
install "$KUBECONFORM"
install "$PROMTOOL"
# Stable names for the Makefile and the tests.
mkdir -p "$out/bin"
ln -sfn "$out/helm-v3.22.0/helm" "$out/bin/helm"
ln -sfn "$out/kubeconform-v0.8.0/kubeconform" "$out/bin/kubeconform"
ln -sfn "$out/promtool-v0.316.0/promtool" "$out/bin/promtool"
