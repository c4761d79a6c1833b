#!/usr/bin/env bash
# Installs the supply-chain tools from crates.io (cargo install --locked, pinned versions) into a
# version-keyed cache directory ($1, default $CONTAINMENT_CACHE_DIR/tools) and links them into
# its bin/; prints nothing else on a cache hit. A tool upgrade is a reviewed change to this file.
set -euo pipefail
out="${1:-${CONTAINMENT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/containment-operator}/tools}"
command -v cargo >/dev/null || { echo "cargo-tools.sh: cargo is required" >&2; exit 1; }
install() {
  local crate="$1" version="$2" dir="$out/$1-$2"
  if [ ! -x "$dir/bin/$crate" ]; then
    echo "tools: building $crate $version from crates.io (first time only)"
    # A private root: the binary never lands half-written at the cached path.
    local tmp; tmp="$(mktemp -d "$out/.build.XXXXXX")"
    chmod 755 "$tmp"
    cargo install --quiet --locked --root "$tmp" --version "$version" "$crate"
    rm -rf "$dir"; mv "$tmp" "$dir"
  fi
  mkdir -p "$out/bin"
  ln -sfn "$dir/bin/$crate" "$out/bin/$crate"
}
mkdir -p "$out"
install cargo-deny 0.20.2
install cargo-cyclonedx 0.5.9
