# containment-operator — the README's commands. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
K8S_VERSION := $(shell cat testenv/go/K8S_VERSION)
CONTAINMENT_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/containment-operator
export CONTAINMENT_CACHE_DIR
CP_BIN := $(CONTAINMENT_CACHE_DIR)/controlplane/$(K8S_VERSION)
FLOOR_K8S_VERSION := $(shell cat testenv/go/floor/K8S_VERSION)
CP_FLOOR_BIN := $(CONTAINMENT_CACHE_DIR)/controlplane/$(FLOOR_K8S_VERSION)
LOCAL := $(CURDIR)/.local
TESTENV := target/debug/testenv

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: controlplane
controlplane: ## Build kube-apiserver and kubectl, and the chart floor's kube-apiserver (cached per version)
	@if [ -n "$${KUBEBUILDER_ASSETS:-}" ] && [ -x "$$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$$KUBEBUILDER_ASSETS/kubectl" ]; then \
	  echo "control plane: using KUBEBUILDER_ASSETS=$$KUBEBUILDER_ASSETS"; \
	elif [ -n "$${TEST_ASSET_KUBE_APISERVER:-}" ] && [ -n "$${TEST_ASSET_KUBECTL:-}" ]; then \
	  echo "control plane: using TEST_ASSET_KUBE_APISERVER and TEST_ASSET_KUBECTL"; \
	else \
	  testenv/go/build.sh "$(CP_BIN)"; \
	fi
	@if [ -n "$${TEST_ASSET_FLOOR_KUBE_APISERVER:-}" ]; then \
	  echo "control plane floor: using TEST_ASSET_FLOOR_KUBE_APISERVER"; \
	else \
	  testenv/go/build.sh "$(CP_FLOOR_BIN)" testenv/go/floor; \
	fi

.PHONY: tools
tools: ## Build helm, kubeconform and promtool from the Go module proxy (cached per version)
	packaging/tools.sh

.PHONY: build
build: ## Build every crate and test
	$(CARGO) build --workspace --all-targets --locked

.PHONY: crds
crds: ## Regenerate crds/ and docs/api.md from the Rust types (a test fails when either is stale)
	$(CARGO) run -q --locked -- crds > crds/containment.defenderc2.io.yaml
	cp crds/containment.defenderc2.io.yaml charts/containment-operator/crds/
	$(CARGO) run -q --locked -- api-reference > docs/api.md

.PHONY: manifests
manifests: tools ## Regenerate deploy/base from the chart (a check fails when it is stale)
	packaging/render-base.sh > deploy/base/containment-operator.yaml

.PHONY: packaging
packaging: controlplane tools ## Chart lint, kubeconform, Dockerfile lint, kstatus and Argo CD health checks
	$(CARGO) build -p testenv --bins --locked
	$(TESTENV) exec -- packaging/check.sh

.PHONY: lint
lint: ## rustfmt and clippy (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: supply-chain
supply-chain: ## cargo deny (licenses, bans, sources; deny.toml) and the CycloneDX SBOM in target/sbom/
	packaging/cargo-tools.sh
	packaging/supply-chain.sh

.PHONY: deny-advisories
deny-advisories: ## cargo deny check advisories (fetches the RustSec database from GitHub)
	packaging/cargo-tools.sh
	PATH="$(CONTAINMENT_CACHE_DIR)/tools/bin:$$PATH" $(CARGO) deny --locked --workspace check advisories

.PHONY: test
test: controlplane tools lint build supply-chain ## The whole test suite (packaging and supply-chain checks included), on one shared local control plane
	$(TESTENV) exec -- bash -c 'packaging/check.sh && scripts/demo-check.sh && $(CARGO) test --workspace --locked'

.PHONY: up
up: controlplane ## Start the control plane and azure-sim in the background; writes .local/kubeconfig and .local/env
	$(CARGO) build -p testenv -p azure-sim --bins --locked
	scripts/up.sh

.PHONY: demo
demo: controlplane ## Build, start the control plane, azure-sim and the operator, apply examples/ and watch them converge
	$(CARGO) build -p testenv -p azure-sim -p containment-operator --bins --locked
	scripts/demo.sh

.PHONY: down
down: ## Stop what `make up` / `make demo` started
	scripts/down.sh

.PHONY: bench-sim
bench-sim: ## Benchmark azure-sim: ARM GETs per second on loopback (release build)
	$(CARGO) run --release --locked -p azure-sim --example bench_gets

.PHONY: bench
bench: controlplane ## Operator benchmarks (burst, latency, steady state, drift, footprint): bench/results.json + a table
	$(CARGO) build --release --locked -p containment-operator --bin containment-operator
	$(CARGO) build --release --locked -p containment-bench
	target/release/containment-bench
