#!/usr/bin/env bash
# Test tools built from their Go modules and cached:
#   otelcol-modfleet  a minimal OpenTelemetry Collector (OTLP receiver, gRPC + HTTP, and the
#                     file exporter), from the wrapper module in hack/otelcol/; the tests
#                     start it through testkit/src/collector.rs
#   promtool          Prometheus's rule checker, from github.com/prometheus/prometheus at the
#                     version pinned in hack/promtool/go.mod
#   s3s-fs            an S3 server over a directory (Rust, from the crates registry through
#                     `cargo install`), pinned below; the object-store tests start it through
#                     testkit/src/s3.rs
# Binaries go to ${XDG_CACHE_HOME:-~/.cache}/modfleet/bin/<tool>-<key>/ (the same cache root as
# hack/cluster.sh); the key is the pinned version, and for otelcol-modfleet also a hash of
# hack/otelcol/{go.mod,go.sum,main.go}, so editing the wrapper rebuilds it. Go modules and
# build cache are the go command's defaults (go env GOMODCACHE, GOCACHE).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OTELCOL_MOD="$ROOT/hack/otelcol"
PROMTOOL_MOD="$ROOT/hack/promtool"
BIN_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/modfleet/bin"
# Builds share 2 cores with everything else: be nice.
NICE=(nice -n 10)
TOOLS=(otelcol-modfleet promtool s3s-fs)
# The S3 server of the object-store tests. 0.14.1 needs `x-amz-content-sha256` on every
# request, which the object_store crate sends.
S3S_FS_VERSION=0.14.1

usage() {
  cat <<EOF
Usage: hack/tools.sh <command>

Builds the test tools from their Go modules (s3s-fs: from the crates registry with
cargo install), once, and caches them under
$BIN_ROOT/<tool>-<key>/.

Commands:
  build        build every tool that is not cached yet (instant when all are)
  path NAME    print the absolute path of a built tool's binary; fails if it is not
               built. NAME: ${TOOLS[*]}
  help         this text

Tools:
  otelcol-modfleet  OpenTelemetry Collector (OTLP receiver + file exporter), wrapper module
                    hack/otelcol/ (collector $(otelcol_version))
  promtool          from github.com/prometheus/prometheus $(promtool_version) (hack/promtool/)
  s3s-fs            S3 server over a directory, s3s-fs $S3S_FS_VERSION (cargo install)

Measured on 2 cores with empty Go caches (downloads included, other builds running):
the Collector 2.5 minutes, promtool 7.5, s3s-fs 10 (while another cargo
build ran); a cached 'build' takes 0.02 s.
EOF
}

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

# mod_version <go.mod> <module>: the version of <module> that <go.mod> requires.
mod_version() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1"
}

otelcol_version() { mod_version "$OTELCOL_MOD/go.mod" go.opentelemetry.io/collector/otelcol; }
promtool_version() { mod_version "$PROMTOOL_MOD/go.mod" github.com/prometheus/prometheus; }

otelcol_key() {
  local hash
  hash="$(cat "$OTELCOL_MOD/go.mod" "$OTELCOL_MOD/go.sum" "$OTELCOL_MOD/main.go" | sha256sum | cut -c1-12)"
  echo "$(otelcol_version)-$hash"
}

tool_dir() {
  case "$1" in
    otelcol-modfleet) echo "$BIN_ROOT/otelcol-modfleet-$(otelcol_key)" ;;
    promtool) echo "$BIN_ROOT/promtool-$(promtool_version)" ;;
    s3s-fs) echo "$BIN_ROOT/s3s-fs-$S3S_FS_VERSION" ;;
    *) die "unknown tool '$1' (expected: ${TOOLS[*]})" ;;
  esac
}

need_go() {
  command -v go >/dev/null 2>&1 ||
    die "'go' is not on PATH: install Go >= 1.26 (hack/otelcol and hack/promtool need it) and retry"
}

# shellcheck source=SCRIPTDIR/lib/build-cache.sh
source "$ROOT/hack/lib/build-cache.sh"

# with_build_dir <tool> <function>: builds <tool> once (see cached_build).
with_build_dir() {
  cached_build "$1" "$(tool_dir "$1")" "$2"
}

build_otelcol() {
  local out="$1"
  need_go
  (cd "$OTELCOL_MOD" && GOFLAGS="" "${NICE[@]}" go build -trimpath -mod=readonly -buildvcs=false \
    -ldflags='-s -w' -o "$out/otelcol-modfleet" .)
  "$out/otelcol-modfleet" components >/dev/null ||
    die "the built otelcol-modfleet does not run"
}

build_promtool() {
  local out="$1" v n
  need_go
  v="$(promtool_version)"
  [[ -n "$v" ]] || die "$PROMTOOL_MOD/go.mod does not require github.com/prometheus/prometheus"
  # Module v0.MMmm.p is Prometheus M.mm.p (v0.313.5 = 3.13.5).
  n="${v#v0.}"
  n="${n%%.*}"
  local release="$((n / 100)).$((n % 100)).${v##*.}"
  local ver=github.com/prometheus/common/version
  # Prometheus's go.mod has replace directives, so `go install ...@version` refuses it; the
  # wrapper module repeats them and lists promtool as a `tool`.
  (cd "$PROMTOOL_MOD" && GOFLAGS="" "${NICE[@]}" go build -trimpath -mod=readonly -buildvcs=false \
    -ldflags="-s -w -X $ver.Version=$release -X $ver.Revision=$v -X $ver.Branch=HEAD" \
    -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool)
  "$out/promtool" --version >&2
}

build_s3s_fs() {
  local out="$1"
  command -v cargo >/dev/null 2>&1 || die "'cargo' is not on PATH: install Rust (rustup) and retry"
  # Its own target dir under the temporary one, removed with it: nothing left in the
  # workspace's target dirs.
  CARGO_TARGET_DIR="$out/.target" "${NICE[@]}" cargo install --locked --quiet \
    --root "$out/.root" --features binary "s3s-fs@$S3S_FS_VERSION"
  mv "$out/.root/bin/s3s-fs" "$out/s3s-fs"
  rm -rf "$out/.root" "$out/.target"
  "$out/s3s-fs" --help >/dev/null || die "the built s3s-fs does not run"
}

cmd_path() {
  local tool="$1" dir bin
  dir="$(tool_dir "$tool")"
  bin="$dir/$tool"
  if [[ ! -f "$dir/.complete" || ! -x "$bin" ]]; then
    die "$tool is not built (expected $bin): run hack/tools.sh build"
  fi
  echo "$bin"
}

main() {
  case "${1:-}" in
    build)
      [[ $# -eq 1 ]] || die "usage: hack/tools.sh build"
      with_build_dir otelcol-modfleet build_otelcol
      with_build_dir promtool build_promtool
      with_build_dir s3s-fs build_s3s_fs
      ;;
    path)
      [[ $# -eq 2 ]] || die "usage: hack/tools.sh path <${TOOLS[*]// /|}>"
      cmd_path "$2"
      ;;
    help | -h | --help) usage ;;
    "") usage >&2; exit 2 ;;
    *) usage >&2; die "unknown command '$1'" ;;
  esac
}

main "$@"
