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
#
# The binaries are glibc builds (glibc's allocator keeps the proxy's throughput; musl's costs
# 4-10% even with mimalloc) on an image that holds only what they need: their shared libraries
# (libc, libm, libgcc_s and the dynamic loader, from Debian's packages of the image's
# architecture), CA certificates, a passwd entry for 65532 and the cache directory; the proxy
# image adds git, ssh and sh for private modules (the stage `git-rootfs`). No package manager,
# and no shell in the operator image. Why, with the figures: docs/install.md ("Images") and
# docs/benchmarks.md ("Container images").
#
# Several architectures: `docker buildx build --platform linux/amd64,linux/arm64 ...`; each
# platform builds its binaries natively in the `build-source` stage (or takes them prebuilt);
# the runtime files come from Debian's packages of the target architecture, unpacked on the
# build platform, so that part needs no emulation.
#
# Build arguments:
#   BINARIES=source    (default) build the binaries from this source tree in the rust image
#   BINARIES=prebuilt  take them from a build context named `prebuilt` that holds
#                      <arch>/modfleet-proxy, <arch>/modfleet-operator and <arch>/crdgen for each
#                      target architecture (amd64, arm64): glibc binaries for
#                      <arch>-unknown-linux-gnu built against Debian bookworm's glibc (or an
#                      older one), stripped, as hack/images.sh builds them with cargo on the host:
#       buildah bud --build-arg BINARIES=prebuilt --build-context prebuilt=DIR --target proxy .
#       docker buildx build --build-arg BINARIES=prebuilt --build-context prebuilt=DIR ...
#   RUST_VERSION       the rust image of the `build-source` stage

ARG RUST_VERSION=1.95
ARG BINARIES=source

# ---- binaries built here: release profile, locked dependencies, glibc (bookworm's) ----
FROM rust:${RUST_VERSION}-bookworm AS build-source
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      --bin modfleet-proxy --bin modfleet-operator --bin crdgen \
 && mkdir -p /out \
 && for bin in modfleet-proxy modfleet-operator crdgen; do \
      strip -o "/out/$bin" "target/release/$bin"; \
    done

# ---- or binaries built elsewhere (BINARIES=prebuilt), one directory per architecture ----
FROM scratch AS build-prebuilt
ARG TARGETARCH
COPY --from=prebuilt ${TARGETARCH}/modfleet-proxy ${TARGETARCH}/modfleet-operator ${TARGETARCH}/crdgen /out/

FROM build-${BINARIES} AS binaries

# ---- the files the runtime image holds besides a binary, made on the build platform: the
# shared libraries are unpacked from the target architecture's Debian packages (nothing of
# the target architecture runs here, so no emulation) ----
FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS rootfs
ARG TARGETARCH
# The libraries the binaries are linked against (what `ldd` lists; hack/images.sh checks every
# binary's DT_NEEDED against this list) and the dynamic loader, at the paths Debian's loader
# searches without an ld.so.cache.
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) triplet=x86_64-linux-gnu;  loader=/lib64/ld-linux-x86-64.so.2 ;; \
      arm64) triplet=aarch64-linux-gnu; loader=/lib/ld-linux-aarch64.so.1 ;; \
      *) echo "no runtime for TARGETARCH=$TARGETARCH (amd64 and arm64 are supported)" >&2; exit 1 ;; \
    esac; \
    [ "$TARGETARCH" = "$(dpkg --print-architecture)" ] || dpkg --add-architecture "$TARGETARCH"; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates; \
    mkdir /debs; chown _apt /debs; cd /debs; \
    apt-get download "libc6:$TARGETARCH" "libgcc-s1:$TARGETARCH"; \
    for deb in ./*.deb; do dpkg-deb --extract "$deb" /debs/root; done; \
    mkdir -p "/rootfs/lib/$triplet" "/rootfs${loader%/*}" /rootfs/etc/ssl/certs /rootfs/tmp \
      /rootfs/var/cache/modfleet /rootfs/usr/share/doc; \
    for lib in libc.so.6 libm.so.6 libgcc_s.so.1 "${loader##*/}"; do \
      cp -L "/debs/root/lib/$triplet/$lib" "/rootfs/lib/$triplet/$lib"; \
    done; \
    [ -e "/rootfs$loader" ] || ln -s "$(realpath -m --relative-to="${loader%/*}" "/lib/$triplet/${loader##*/}")" "/rootfs$loader"; \
    for pkg in libc6 libgcc-s1 ca-certificates; do \
      mkdir -p "/rootfs/usr/share/doc/$pkg"; \
      cp "/usr/share/doc/$pkg/copyright" "/rootfs/usr/share/doc/$pkg/copyright"; \
    done; \
    cd /; rm -rf /debs /var/lib/apt/lists/*; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >/rootfs/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group; \
    chown 65532:65532 /rootfs/var/cache/modfleet; \
    chmod 1777 /rootfs/tmp

# ---- what the proxy runs to fetch private modules from Git (README, "Private modules"): git
# (the command and its HTTPS helper), ssh and sh (git runs credential helpers and ssh through
# it), each with the shared libraries it loads and nothing else of its packages (no perl, no
# other programs). The packages of the target architecture are downloaded with their whole
# dependency closure (apt-cache's, not an install: git's perl need not be installable) and
# unpacked; the libraries are found by walking each program's DT_NEEDED entries with readelf, which reads
# any architecture's ELF files, so nothing of the target architecture runs here either ----
FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS git-rootfs
ARG TARGETARCH
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) triplet=x86_64-linux-gnu ;; \
      arm64) triplet=aarch64-linux-gnu ;; \
      *) echo "no git for TARGETARCH=$TARGETARCH (amd64 and arm64 are supported)" >&2; exit 1 ;; \
    esac; \
    [ "$TARGETARCH" = "$(dpkg --print-architecture)" ] || dpkg --add-architecture "$TARGETARCH"; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils; \
    pkgs="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances \
      "git:$TARGETARCH" "openssh-client:$TARGETARCH" "dash:$TARGETARCH" | grep '^[a-z0-9]' | sort -u)"; \
    mkdir /debs; chown _apt /debs; cd /debs; apt-get download $pkgs; cd /; \
    for deb in /debs/*.deb; do dpkg-deb --extract "$deb" /pkgs; done; \
    mkdir -p /gitfs/usr/bin /gitfs/usr/lib/git-core /gitfs/bin "/gitfs/lib/$triplet"; \
    cp -a /pkgs/usr/bin/git /pkgs/usr/bin/ssh /gitfs/usr/bin/; \
    cp -a /pkgs/bin/dash /gitfs/usr/bin/dash; \
    ln -s ../usr/bin/dash /gitfs/bin/sh; \
    cp -L /pkgs/usr/lib/git-core/git-remote-http /gitfs/usr/lib/git-core/; \
    ln -s git-remote-http /gitfs/usr/lib/git-core/git-remote-https; \
    ln -s ../../bin/git /gitfs/usr/lib/git-core/git; \
    need() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }; \
    todo="$(for f in /gitfs/usr/bin/git /gitfs/usr/bin/ssh /gitfs/usr/bin/dash /gitfs/usr/lib/git-core/git-remote-http; do need "$f"; done)"; \
    done_=" "; \
    while [ -n "$todo" ]; do \
      next=""; \
      for lib in $todo; do \
        case "$done_" in *" $lib "*) continue ;; esac; \
        case "$lib" in libc.so.6|libm.so.6|libgcc_s.so.1|ld-linux-*) continue ;; esac; \
        done_="$done_$lib "; \
        src=""; \
        for d in "/pkgs/lib/$triplet" "/pkgs/usr/lib/$triplet"; do \
          [ -e "$d/$lib" ] && { src="$d/$lib"; break; }; \
        done; \
        [ -n "$src" ] || { echo "no $lib for $TARGETARCH in the packages of git, ssh and sh" >&2; exit 1; }; \
        cp -L "$src" "/gitfs/lib/$triplet/$lib"; \
        next="$next $(need "/gitfs/lib/$triplet/$lib")"; \
      done; \
      todo="$(echo $next)"; \
    done; \
    echo "git, ssh and sh need, besides the runtime's libc, libm and libgcc_s: $done_"; \
    for pkg in $(ls /debs | sed -n 's/_.*\.deb$//p'); do \
      [ -e "/pkgs/usr/share/doc/$pkg/copyright" ] || continue; \
      mkdir -p "/gitfs/usr/share/doc/$pkg"; \
      cp "/pkgs/usr/share/doc/$pkg/copyright" "/gitfs/usr/share/doc/$pkg/copyright"; \
    done; \
    rm -rf /debs /pkgs /var/lib/apt/lists/*

# ---- runtime base: nothing but those files ----
FROM scratch AS runtime
COPY --from=rootfs /rootfs/ /
USER 65532:65532

# image: modfleet/modfleet-proxy
FROM runtime AS proxy
LABEL org.opencontainers.image.title="modfleet-proxy" \
      org.opencontainers.image.description="Go module proxy (GOPROXY) with a verified, crash-safe disk cache" \
      org.opencontainers.image.source="https://github.com/modfleet/modfleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=git-rootfs /gitfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY --from=binaries /out/modfleet-proxy /usr/local/bin/modfleet-proxy
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
COPY --from=binaries /out/modfleet-operator /usr/local/bin/modfleet-operator
COPY --from=binaries /out/crdgen /usr/local/bin/crdgen
# 8080: /metrics, /healthz, /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/modfleet-operator"]
