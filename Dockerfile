# syntax=docker/dockerfile:1
# containment-operator image: a static-enough Rust binary on distroless, running as non-root.
# Build: docker build -t containment-operator:dev .   (Lint: make lint-packaging)

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The workspace's manifests and sources (.dockerignore keeps target/ and the rest out). The
# registry and target cache mounts keep downloaded crates and compiled dependencies across
# builds, so a source change recompiles only our crate.
COPY Cargo.toml Cargo.lock ./
COPY devpki devpki
COPY testenv testenv
COPY sim sim
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p containment-operator --bin containment-operator \
 && install -D -m 0755 target/release/containment-operator /out/containment-operator

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="containment-operator" \
      org.opencontainers.image.description="Declarative Azure and Microsoft security containment for Kubernetes" \
      org.opencontainers.image.source="https://github.com/containment-operator/containment-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/containment-operator /usr/local/bin/containment-operator
# distroless "nonroot": uid/gid 65532, as the chart's securityContext expects.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/containment-operator"]
CMD ["run"]
