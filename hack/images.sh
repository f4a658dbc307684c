#!/usr/bin/env bash
# modfleet's container images, built from the repository's Dockerfile with buildah (no Docker
# engine needed): vfs storage, chroot isolation, and storage/engine configuration files of our
# own under the cache directory, so nothing touches the system's containers storage.
# See `hack/images.sh help` and docs/install.md ("Images").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=SCRIPTDIR/images.env
source "$ROOT/hack/images.env"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/modfleet"
INSTANCE="${MODFLEET_CLUSTER_NAME:-modfleet}"
STORE="${MODFLEET_IMAGES_STORE:-$CACHE_ROOT/images/store-$INSTANCE}"
BASE_ROOT="$CACHE_ROOT/images"
DEBIAN_SOURCES="${MODFLEET_DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
BASE_IMAGE="docker.io/library/debian:${DEBIAN_SUITE}-slim"
# The chart's default image names (charts/modfleet/values.yaml), fully qualified the way every
# container runtime reads a name without a registry host.
IMAGE_PREFIX="docker.io/modfleet"
TARGETS=(proxy operator)
# Builds share 2 cores with everything else: be nice.
NICE=(nice -n 10)

usage() {
  cat <<EOF
Usage: hack/images.sh <command> [args]

Builds modfleet's two images (Dockerfile targets 'proxy' and 'operator') with buildah:
glibc binaries built on the host with cargo are fed to the Dockerfile's BINARIES=prebuilt
build argument; its Debian stage runs on a base made by mmdebstrap (cached by version).
Every binary is then run inside the image it went into (podman for this machine's
architecture, qemu-user on the image's own files for another), so a missing library fails here.

Commands:
  build [--debug]  the binaries and both images for this machine's architecture, tagged
                   with the chart's defaults: $(image_name proxy), $(image_name operator).
                   Release binaries; --debug packages the debug binaries instead (cargo's dev
                   profile, built the way the tests build them, so after the unit and e2e
                   stages nothing is compiled: hack/test.sh's images stage)
  multiarch        release binaries for amd64 and arm64 (arm64 cross-compiled), both images
                   for both architectures (NAME-amd64, NAME-arm64), each binary run in its
                   image (arm64 under qemu-aarch64-static), and one image index (manifest
                   list) under each plain NAME; not part of CI (docs/install.md)
  push PREFIX      push both images as PREFIX/modfleet-proxy:$(version) and
                   PREFIX/modfleet-operator:$(version), with every architecture of the index
                   when 'multiarch' made one; PREFIX is a containers-transports reference
                   prefix: docker://registry.example.com/platform/modfleet, oci:/tmp/layout
  base             only make (or find in the cache) and import the Debian base image
  name TARGET      print the local name of the image of TARGET (proxy or operator)
  env              print the shell lines that point podman/buildah at this store:
                     eval "\$(hack/images.sh env)"
  podman ARGS...   run podman on this store (with runc and the ulimits this machine allows)
  buildah ARGS...  run buildah on this store
  help             this text

Environment:
  MODFLEET_CLUSTER_NAME     instance name; each gets its own image store (default modfleet)
  MODFLEET_IMAGES_STORE     the store (default \${XDG_CACHE_HOME:-~/.cache}/modfleet/images/store-NAME)
  MODFLEET_DEBIAN_SOURCES   apt sources file for mmdebstrap (default $DEBIAN_SOURCES)
  CARGO_TARGET_DIR          cargo's target directory, as for any cargo build

Needs buildah, podman, runc, mmdebstrap, file and binutils (.ci/run installs them with apt);
for 'multiarch' also gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user-static and the Rust target
aarch64-unknown-linux-gnu (rustup target add aarch64-unknown-linux-gnu).
EOF
}

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

need() { # <command> <Debian package>
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed: apt-get install -y $2"
}

version() {
  awk -F'"' '/^appVersion:/ {print $2; exit}' "$ROOT/charts/modfleet/Chart.yaml"
}

image_name() { # <target>
  echo "$IMAGE_PREFIX/modfleet-$1:$(version)"
}

host_arch() {
  case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) die "unsupported machine architecture $(uname -m) (amd64 and arm64 are built)" ;;
  esac
}

rust_target() { # <arch>
  case "$1" in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    *) die "unknown architecture '$1' (expected amd64 or arm64)" ;;
  esac
}

# ---- configuration of podman and buildah: files of our own, never the system's ----

write_config() {
  # Written on every call (tests run podman through this script concurrently): to files of
  # this process, then renamed into place.
  local tmp=".tmp.$$"
  mkdir -p "$STORE/conf" "$STORE/storage" "$STORE/run" "$STORE/volumes"
  cat >"$STORE/conf/storage.conf$tmp" <<EOF
# Written by hack/images.sh: modfleet's own image store.
[storage]
driver = "vfs"
graphroot = "$STORE/storage"
runroot = "$STORE/run"
EOF
  # runc (this kernel's cgroup layout is one crun 1.8 refuses), cgroupfs, no default network
  # namespace setup (containers choose --network themselves), and ulimits within the hard
  # nofile limit a process may raise itself to here (podman's default asks for 1048576).
  cat >"$STORE/conf/containers.conf$tmp" <<EOF
# Written by hack/images.sh.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$STORE/run/events.log"
tmp_dir = "$STORE/run/libpod"
static_dir = "$STORE/storage/libpod"
volume_path = "$STORE/volumes"
EOF
  # Short names (`FROM debian:...-slim`, `modfleet/modfleet-proxy`) resolve in the local store
  # only: nothing is ever pulled (every build and run passes --pull=never as well).
  cat >"$STORE/conf/registries.conf$tmp" <<EOF
# Written by hack/images.sh.
unqualified-search-registries = []
short-name-mode = "permissive"
EOF
  local f
  for f in storage containers registries; do
    mv -f "$STORE/conf/$f.conf$tmp" "$STORE/conf/$f.conf"
  done
}

container_env() {
  echo "CONTAINERS_STORAGE_CONF=$STORE/conf/storage.conf"
  echo "CONTAINERS_CONF=$STORE/conf/containers.conf"
  echo "CONTAINERS_REGISTRIES_CONF=$STORE/conf/registries.conf"
  echo "BUILDAH_ISOLATION=chroot"
}

podman_() {
  local vars
  need podman podman
  need runc runc
  mapfile -t vars < <(container_env)
  env "${vars[@]}" podman "$@"
}

buildah_() {
  local vars
  need buildah buildah
  mapfile -t vars < <(container_env)
  env "${vars[@]}" buildah "$@"
}

# ---- the Debian base, made by mmdebstrap and cached by version ----

# shellcheck source=SCRIPTDIR/lib/build-cache.sh
source "$ROOT/hack/lib/build-cache.sh"

# mmdebstrap's options: Debian's minbase with a merged /usr made by mmdebstrap's own hook
# (not by installing usrmerge, which pulls in perl), slimmed like the official -slim images
# (no manual pages, documentation but copyright files, translations).
BASE_OPTS=(
  --variant=minbase
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --aptopt='Acquire::Languages "none"'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  # And their apt and dpkg settings (debuerreotype's): no package cache left in a build
  # layer, compressed package lists, no suggests kept by autoremove, no fsync per file. (With
  # the caches switched off, mmdebstrap's final `apt-get clean` leaves the ones its own run
  # made: removed here.)
  --customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" >"$1/etc/apt/apt.conf.d/docker-clean" && rm -f "$1"/var/cache/apt/*.bin'
  --customize-hook='echo "Acquire::GzipIndexes \"true\";" >"$1/etc/apt/apt.conf.d/docker-gzip-indexes"'
  --customize-hook='echo "Apt::AutoRemove::SuggestsImportant \"false\";" >"$1/etc/apt/apt.conf.d/docker-autoremove-suggests"'
  --customize-hook='echo force-unsafe-io >"$1/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"'
)

# The point release of the suite's base-files in the machine's apt lists, e.g. 12.4+deb12u15.
base_files_version() {
  local v
  v="$(apt-cache madison base-files 2>/dev/null |
    awk -F'|' -v s=" $DEBIAN_SUITE/" 'index($3, s) {gsub(/ /, "", $2); print $2; exit}')"
  [[ -n "$v" ]] ||
    die "apt knows no base-files in $DEBIAN_SUITE: run 'apt-get update' (the base is keyed by Debian's point release)"
  echo "$v"
}

base_key() {
  local recipe
  recipe="$(printf '%s\n' "${BASE_OPTS[@]}" "$SOURCE_DATE_EPOCH" && declare -f build_base && cat "$DEBIAN_SOURCES")"
  echo "$DEBIAN_SUITE-$(base_files_version)-$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
}

base_dir() { echo "$BASE_ROOT/debian-$(base_key)"; }

build_base() {
  local out="$1"
  need mmdebstrap mmdebstrap
  [[ -r "$DEBIAN_SOURCES" ]] ||
    die "no apt sources file $DEBIAN_SOURCES (set MODFLEET_DEBIAN_SOURCES to a deb822 .sources file)"
  # The sources file names the mirror the machine already uses, so no mirror is named here.
  SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" "${NICE[@]}" mmdebstrap --quiet "${BASE_OPTS[@]}" \
    --customize-hook="dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W >'$out/packages.txt'" \
    "$DEBIAN_SUITE" "$out/rootfs.tar" "$DEBIAN_SOURCES"
  (cd "$out" && sha256sum rootfs.tar >rootfs.tar.sha256)
  log "base: $(wc -l <"$out/packages.txt") packages, $(du -m "$out/rootfs.tar" | cut -f1) MB, $(cut -c1-16 "$out/rootfs.tar.sha256")"
}

# Imports the cached base under the Dockerfile's name, unless the store has this very key.
cmd_base() {
  local dir key have
  grep -Eq "^FROM (--platform=[^ ]+ )?debian:${DEBIAN_SUITE}-slim " "$ROOT/Dockerfile" ||
    die "the Dockerfile has no 'FROM debian:${DEBIAN_SUITE}-slim' stage: hack/images.env (DEBIAN_SUITE) and the Dockerfile must agree"
  key="$(base_key)"
  dir="$BASE_ROOT/debian-$key"
  cached_build "debian-base" "$dir" build_base
  write_config
  have="$(podman_ image inspect --format '{{index .Labels "dev.modfleet.base-key"}}' "$BASE_IMAGE" 2>/dev/null || true)"
  if [[ "$have" != "$key" ]]; then
    local old
    old="$(podman_ image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)"
    log "base: importing $dir/rootfs.tar as $BASE_IMAGE"
    podman_ import --quiet --change "LABEL dev.modfleet.base-key=$key" --change 'CMD ["bash"]' \
      "$dir/rootfs.tar" "$BASE_IMAGE" >/dev/null
    # The previous base, unless images built on it still need it.
    [[ -z "$old" ]] || podman_ rmi "$old" >/dev/null 2>&1 || true
  fi
  # Older bases are pruned, so the cache does not grow without bound.
  find "$BASE_ROOT" -mindepth 1 -maxdepth 1 -type d -name 'debian-*' ! -name "debian-$key" \
    -exec rm -rf {} + 2>/dev/null || true
}

# ---- binaries (cargo on the host) and images (buildah, from the Dockerfile) ----

# cargo's target directory, as cargo itself finds it.
target_dir() {
  local d="${CARGO_TARGET_DIR:-$ROOT/target}"
  [[ "$d" == /* ]] || d="$ROOT/$d"
  echo "$d"
}

# The binaries for <arch> and <profile> (release or debug), stripped, into the `prebuilt`
# build context ($STORE/prebuilt/<arch>/), the way the Dockerfile's build-source stage builds
# them (glibc, release, locked).
build_binaries() { # <arch> <profile>
  local arch="$1" profile="$2" target out bin dir strip=strip
  target="$(rust_target "$arch")"
  need cargo "rustup (https://rustup.rs)"
  need strip binutils
  if [[ "$profile" == debug ]]; then
    # Exactly the builds the tests make (testkit's workspace_binary: `cargo build -p NAME
    # --bin NAME`), so after the unit and e2e stages this compiles nothing (crdgen: a link).
    log "binaries: debug, as the tests build them (cargo build -p ... --bin ...)"
    (cd "$ROOT" &&
      cargo build --quiet -p modfleet-proxy --bin modfleet-proxy &&
      cargo build --quiet -p modfleet-operator --bin modfleet-operator --bin crdgen)
    dir="$(target_dir)/debug"
  elif [[ "$arch" == "$(host_arch)" ]]; then
    log "binaries: cargo build --release"
    (cd "$ROOT" && "${NICE[@]}" cargo build --quiet --release --locked \
      --bin modfleet-proxy --bin modfleet-operator --bin crdgen)
    dir="$(target_dir)/release"
  else
    rustup target list --installed 2>/dev/null | grep -qx "$target" ||
      die "the Rust target $target is not installed: rustup target add $target"
    case "$arch" in
      arm64)
        # Debian's cross toolchain (its libc6-arm64-cross is bookworm's glibc, as in the
        # image); ring and aws-lc-sys compile their C with it too (cc-rs finds it by name).
        need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
        # Its headers are only a Recommends of gcc-aarch64-linux-gnu.
        [[ -e /usr/aarch64-linux-gnu/include/stdio.h ]] ||
          die "no arm64 C headers for the cross compiler: apt-get install libc6-dev-arm64-cross"
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        strip=aarch64-linux-gnu-strip
        ;;
      *) die "cross builds for $arch are not set up (an $arch machine builds them natively)" ;;
    esac
    log "binaries: cargo build --release --target $target"
    (cd "$ROOT" && "${NICE[@]}" cargo build --quiet --release --locked --target "$target" \
      --bin modfleet-proxy --bin modfleet-operator --bin crdgen)
    dir="$(target_dir)/$target/release"
  fi
  out="$STORE/prebuilt/$arch"
  mkdir -p "$out"
  for bin in modfleet-proxy modfleet-operator crdgen; do
    # Stripped of their symbol tables (as the Dockerfile's build-source stage does), and
    # replaced only when changed, so the image layers stay cached.
    "$strip" -o "$out/$bin.tmp" "$dir/$bin"
    if cmp -s "$out/$bin.tmp" "$out/$bin"; then
      rm -f "$out/$bin.tmp"
    else
      mv -f "$out/$bin.tmp" "$out/$bin"
    fi
  done
}

# Builds one image; the ids of every layer it made or took from the cache are appended to
# $STORE/run/keep, for prune_store.
build_image() { # <target> <arch> <tag>
  local target="$1" arch="$2" tag="$3" log="$STORE/run/build-$1-$2.log"
  log "image: $tag (Dockerfile target $target, linux/$arch)"
  # BUILDPLATFORM: docker sets it, buildah 1.28 does not (the Dockerfile's rootfs stage then
  # looks for a Debian image of the target architecture, which is never needed).
  if ! buildah_ bud --layers --pull=never --platform "linux/$arch" \
    --build-arg "BUILDPLATFORM=linux/$(host_arch)" --timestamp "$SOURCE_DATE_EPOCH" \
    --build-arg BINARIES=prebuilt --build-context "prebuilt=$STORE/prebuilt" \
    --target "$target" --tag "$tag" --file "$ROOT/Dockerfile" "$ROOT" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "buildah bud --target $target failed (log: $log)"
  fi
  grep -Eo -- '^--> (Using cache )?[0-9a-f]{11,64}' "$log" | awk '{print substr($NF, 1, 12)}' \
    >>"$STORE/run/keep"
}

# Removes untagged images that no build of this run used (older binaries' layers, stale
# layer cache), so the store does not grow with every change; what this run used stays as
# the layer cache of the next.
prune_store() {
  local id n=0
  [[ -f "$STORE/run/keep" ]] || return 0
  for id in $(podman_ images --quiet --filter dangling=true --no-trunc | sed 's/^sha256://' | cut -c1-12 | sort -u); do
    if ! grep -qx "$id" "$STORE/run/keep"; then
      podman_ rmi "$id" >/dev/null 2>&1 && n=$((n + 1))
    fi
  done
  rm -f "$STORE/run/keep"
  [[ $n -eq 0 ]] || log "store: removed $n unused image(s)"
}

image_size() { # <image>: its size in MB, uncompressed
  podman_ image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1 / 1e6}'
}

cmd_build() { # [--debug]
  local arch t profile=release start=$SECONDS
  case "${1:-}" in
    "") ;;
    --debug) profile=debug ;;
    *) die "usage: hack/images.sh build [--debug]" ;;
  esac
  arch="$(host_arch)"
  cmd_base
  build_binaries "$arch" "$profile"
  check_binaries "$arch"
  rm -f "$STORE/run/keep"
  for t in "${TARGETS[@]}"; do
    build_image "$t" "$arch" "$(image_name "$t")"
    check_image "$t" "$arch" "$(image_name "$t")"
    log "image: $(image_name "$t"): $(image_size "$(image_name "$t")") ($profile binaries)"
  done
  prune_store
  log "built in $((SECONDS - start))s"
}

# The binaries of <arch> are what they claim: ELF executables for that machine, glibc's
# dynamic loader as their interpreter, stripped.
check_binaries() { # <arch>
  local arch="$1" want interp bin path info
  need file file
  case "$arch" in
    amd64) want="x86-64" interp=/lib64/ld-linux-x86-64.so.2 ;;
    arm64) want="ARM aarch64" interp=/lib/ld-linux-aarch64.so.1 ;;
  esac
  for bin in modfleet-proxy modfleet-operator crdgen; do
    path="$STORE/prebuilt/$arch/$bin"
    info="$(file -b "$path")"
    [[ "$info" == *"ELF 64-bit"*"$want"* && "$info" == *"interpreter $interp"* && "$info" == *", stripped"* ]] ||
      die "$path is not a stripped $want glibc executable (interpreter $interp): $info"
  done
  log "binaries: $arch: $want, glibc (interpreter $interp), stripped"
}

# Each program of the image <tag> runs from the image's own files: with podman for this
# machine's architecture (read-only root, no network, as the image's user), else under
# qemu-user with the image's root as its library prefix. A library or glibc version the
# image lacks fails here, with the loader's message. Programs that cannot be run usefully
# without a network (git's HTTPS helper) are loaded only: the dynamic loader resolves every
# library and stops (LD_TRACE_LOADED_OBJECTS), failing on one it cannot find.
check_image() { # <target> <arch> <tag>
  local target="$1" arch="$2" tag="$3" run line out qemu="" mnt="" ctr=""
  local -a runs
  case "$target" in
    # "program args...", or "load program" for the loader-only check.
    proxy) runs=("/usr/local/bin/modfleet-proxy --version" "/usr/bin/git --version"
      "/usr/bin/ssh -V" "/bin/sh -c exit" "load /usr/lib/git-core/git-remote-https") ;;
    # crdgen takes an output path, not --version: without one it prints the CRD.
    operator) runs=("/usr/local/bin/modfleet-operator --version" "/usr/local/bin/crdgen") ;;
  esac
  if [[ "$arch" != "$(host_arch)" ]]; then
    case "$arch" in
      arm64) qemu=qemu-aarch64-static ;;
      amd64) qemu=qemu-x86_64-static ;;
    esac
    need "$qemu" qemu-user-static
    ctr="$(buildah_ from --pull-never "containers-storage:$tag")"
    mnt="$(buildah_ mount "$ctr")"
  fi
  for run in "${runs[@]}"; do
    local -a argv env=()
    read -r -a argv <<<"$run"
    if [[ "${argv[0]}" == load ]]; then
      argv=("${argv[@]:1}")
      env=(LD_TRACE_LOADED_OBJECTS=1)
    fi
    if [[ -z "$qemu" ]]; then
      out="$(podman_ run --rm --pull=never --network=none --read-only --cap-drop=all \
        "${env[@]/#/--env=}" --entrypoint "${argv[0]}" "$tag" "${argv[@]:1}" 2>&1)" ||
        die "$tag: ${argv[*]} does not run in the image: $out"
    else
      out="$(env "${env[@]}" "$qemu" -L "$mnt" "$mnt${argv[0]}" "${argv[@]:1}" 2>&1)" || {
        buildah_ rm "$ctr" >/dev/null 2>&1 || true
        die "$tag: ${argv[*]} does not run on the image's files under $qemu: $out"
      }
    fi
    [[ "$out" != *"not found"* ]] || die "$tag: ${argv[0]} lacks a library: $out"
    line="${out%%$'\n'*}"
    [[ -z "${env[*]}" ]] || line="loads $(grep -c '=>' <<<"$out") libraries"
    log "image: $tag: ${argv[0]} runs${qemu:+ (under $qemu, with the loader and libraries of the image)}: ${line:-ok}"
  done
  [[ -z "$ctr" ]] || buildah_ rm "$ctr" >/dev/null
}

cmd_multiarch() {
  local arch t list start=$SECONDS
  cmd_base
  for arch in amd64 arm64; do
    build_binaries "$arch" release
    check_binaries "$arch"
  done
  rm -f "$STORE/run/keep"
  for t in "${TARGETS[@]}"; do
    list="$(image_name "$t")"
    for arch in amd64 arm64; do
      build_image "$t" "$arch" "$list-$arch"
      check_image "$t" "$arch" "$list-$arch"
    done
    # The index takes the plain name (podman and kubelets pick the instance of their
    # architecture from it); rebuilt from scratch each time.
    buildah_ manifest rm "$list" >/dev/null 2>&1 || podman_ rmi "$list" >/dev/null 2>&1 || true
    buildah_ manifest create "$list" >/dev/null
    for arch in amd64 arm64; do
      buildah_ manifest add --arch "$arch" --os linux "$list" "containers-storage:$list-$arch" >/dev/null
    done
    log "index: $list: $(buildah_ manifest inspect "$list" |
      awk -F'"' '/"architecture"/ {printf "%s%s", sep, $4; sep=", "}')"
    for arch in amd64 arm64; do
      log "image: $list-$arch: $(image_size "$list-$arch")"
    done
  done
  prune_store
  log "built in $((SECONDS - start))s"
}

cmd_push() { # <prefix>
  local prefix="${1%/}" t name dest
  for t in "${TARGETS[@]}"; do
    name="$(image_name "$t")"
    dest="$prefix/modfleet-$t:$(version)"
    if buildah_ manifest inspect "$name" >/dev/null 2>&1; then
      log "push: $name (every architecture) -> $dest"
      buildah_ manifest push --all --quiet "$name" "$dest"
    elif podman_ image exists "$name"; then
      log "push: $name ($(host_arch) only; 'hack/images.sh multiarch' makes the index) -> $dest"
      buildah_ push --quiet "$name" "$dest"
    else
      die "no image $name: run 'hack/images.sh build' or 'hack/images.sh multiarch' first"
    fi
  done
}

main() {
  case "${1:-}" in
    build) shift; [[ $# -le 1 ]] || die "usage: hack/images.sh build [--debug]"; cmd_build "$@" ;;
    multiarch) [[ $# -eq 1 ]] || die "usage: hack/images.sh multiarch"; cmd_multiarch ;;
    push) [[ $# -eq 2 ]] || die "usage: hack/images.sh push PREFIX (e.g. docker://registry.example.com/platform/modfleet)"; write_config; cmd_push "$2" ;;
    base) cmd_base ;;
    name)
      [[ $# -eq 2 && " ${TARGETS[*]} " == *" $2 "* ]] || die "usage: hack/images.sh name <proxy|operator>"
      image_name "$2"
      ;;
    env)
      write_config
      container_env | while IFS='=' read -r k v; do printf 'export %s=%q\n' "$k" "$v"; done
      ;;
    podman) shift; write_config; podman_ "$@" ;;
    buildah) shift; write_config; buildah_ "$@" ;;
    help | -h | --help) usage ;;
    "") usage >&2; exit 2 ;;
    *) usage >&2; die "unknown command '$1'" ;;
  esac
}

main "$@"
