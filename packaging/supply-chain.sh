#!/usr/bin/env bash
# The supply-chain checks of `make test` (`make supply-chain`): cargo deny on licenses, bans and
# sources of every workspace crate's dependencies (deny.toml), and the CycloneDX SBOM of each
# crate in target/sbom/. Advisories need the RustSec database from GitHub: `make deny-advisories`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${CONTAINMENT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/containment-operator}/tools/bin"
export PATH="$tools:$PATH"
step() { echo "supply chain: $*"; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step "cargo deny check licenses bans sources"
cargo deny --locked --workspace check licenses bans sources

step "cargo deny bites: a license allow-list without Apache-2.0 is refused"
sed 's/^    "Apache-2.0",$//' deny.toml > "$work/narrow.toml"
if cargo deny --locked --workspace --config "$work/narrow.toml" check licenses >"$work/narrow.log" 2>&1; then
  echo "supply chain: cargo deny accepted a narrower license list; is deny.toml read?" >&2; exit 1
fi
grep -q "rejected" "$work/narrow.log" || { cat "$work/narrow.log" >&2; exit 1; }

step "CycloneDX SBOM (target/sbom/)"
# cargo-cyclonedx writes next to each Cargo.toml: collect the files into target/sbom.
find . -name '*.cdx.json' -not -path './target/*' -delete
cargo cyclonedx --quiet --manifest-path Cargo.toml --format json --spec-version 1.5 \
  --target x86_64-unknown-linux-gnu
rm -rf target/sbom && mkdir -p target/sbom
find . -name '*.cdx.json' -not -path './target/*' -exec mv {} target/sbom/ \;
sbom=target/sbom/containment-operator.cdx.json
[ -s "$sbom" ] || { echo "supply chain: $sbom was not written" >&2; exit 1; }
for needle in '"bomFormat": "CycloneDX"' '"purl": "pkg:cargo/kube@' '"purl": "pkg:cargo/aws-lc-rs@' '"expression": "Apache-2.0"'; do
  grep -q "$needle" "$sbom" || { echo "supply chain: $sbom lacks $needle" >&2; exit 1; }
done
step "$(grep -c '"bom-ref"' "$sbom") components in $sbom"
