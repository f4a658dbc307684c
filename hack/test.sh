#!/usr/bin/env bash
# Runs ALL of modfleet's checks and tests, in order, stopping at the first failure:
#   1. fmt     cargo fmt --all --check
#   2. clippy  cargo clippy --workspace --all-targets -- -D warnings
#   3. unit    cargo test   (default members' unit + integration tests; they need `go`
#                            and `python3` on PATH)
#   4. e2e     hack/cluster.sh up, then cargo test -p modfleet-e2e against that cluster
#              (taken down again on exit, unless it was already up before)
#
# Usage: hack/test.sh [fmt|clippy|unit|e2e]...   (no argument: all four, as CI does)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=(fmt clippy unit e2e)
for s in "${stages[@]}"; do
  case "$s" in
    fmt | clippy | unit | e2e) ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown stage '$s' (expected fmt, clippy, unit or e2e)" >&2; exit 2 ;;
  esac
done
want() { [[ " ${stages[*]} " == *" $1 "* ]]; }

stage_start=$SECONDS
banner() {
  printf '\n==================== %s ====================\n' "$*"
  stage_start=$SECONDS
}
done_stage() { printf -- '---- ok (%ss)\n' "$((SECONDS - stage_start))"; }

if want fmt; then
  banner "fmt: cargo fmt --all --check"
  cargo fmt --all --check
  done_stage
fi

if want clippy; then
  banner "clippy: cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
  done_stage
fi

if want unit; then
  banner "unit: cargo test (unit and integration tests)"
  for tool in go python3; do
    command -v "$tool" >/dev/null 2>&1 ||
      { echo "error: '$tool' is not on PATH; the proxy's tests need it" >&2; exit 1; }
  done
  cargo test
  done_stage
fi

if want e2e; then
  banner "e2e: tests against a local cluster (hack/cluster.sh up)"
  if hack/cluster.sh status >/dev/null 2>&1; then
    echo "reusing the cluster that is already up (it stays up afterwards)"
  else
    trap 'echo; echo "---- hack/cluster.sh down"; hack/cluster.sh down' EXIT
    hack/cluster.sh up
  fi
  eval "$(hack/cluster.sh env)"
  cargo test -p modfleet-e2e
  done_stage
fi
