# syntax=docker/dockerfile:1
#
# Container images of modfleet's two binaries, from one multi-stage build:
#
#   docker build --target operator -t modfleet/modfleet-operator:0.1.0 .
#   docker build --target proxy    -t modfleet/modfleet-proxy:0.1.0 .
#
# The image names are the Helm chart's defaults (charts/modfleet/values.yaml: image.repository
# and proxyImage.repository; a test keeps them in step with the `# image:` lines below). To
# use your registry, tag and push there and override the repositories at install; see
# docs/install.md, "Images". The runtime images run as the numeric non-root user 65532 (the
# uid the operator gives proxy pods and the chart gives the operator pod).

ARG RUST_VERSION=1.95

# ---- build: both binaries, release profile, locked dependencies ----
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin modfleet-proxy --bin modfleet-operator --bin crdgen \
 && mkdir -p /out \
 && cp target/release/modfleet-proxy target/release/modfleet-operator target/release/crdgen /out/

# ---- runtime base: glibc, CA certificates (upstreams over HTTPS), nothing else ----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/cache/modfleet \
 && chown 65532:65532 /var/cache/modfleet
USER 65532:65532

# image: modfleet/modfleet-proxy
FROM runtime AS proxy
LABEL org.opencontainers.image.title="modfleet-proxy" \
      org.opencontainers.image.description="Go module proxy (GOPROXY) with a verified, crash-safe disk cache" \
      org.opencontainers.image.source="https://github.com/modfleet/modfleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/modfleet-proxy /usr/local/bin/modfleet-proxy
# Standalone: docker run -v modfleet-cache:/var/cache/modfleet IMAGE --cache-dir /var/cache/modfleet
# (in a fleet, the operator's config file sets cacheDir to the member's volume).
# 8080: GOPROXY protocol; 9090: /healthz, /readyz, /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/modfleet-proxy"]

# image: modfleet/modfleet-operator
# The last stage: a plain `docker build .` builds the operator.
FROM runtime AS operator
LABEL org.opencontainers.image.title="modfleet-operator" \
      org.opencontainers.image.description="Kubernetes operator for fleets of modfleet Go module proxies (GoModuleProxy)" \
      org.opencontainers.image.source="https://github.com/modfleet/modfleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/modfleet-operator /usr/local/bin/modfleet-operator
COPY --from=build /out/crdgen /usr/local/bin/crdgen
# 8080: /metrics, /healthz, /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/modfleet-operator"]
