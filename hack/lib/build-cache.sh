# shellcheck shell=bash
# Shared by hack/cluster/build.sh and hack/tools.sh: a build that is done once and cached in
# a directory keyed by version. The sourcing script defines log() and die().

# cached_build <name> <dir> <function>: runs <function> <tmpdir> under a lock on <dir>'s
# parent, then moves the result to <dir>. A directory counts only once it holds `.complete`,
# so an interrupted build is redone, never half-used. Does nothing when <dir> is complete.
cached_build() {
  local name="$1" dir="$2" fn="$3" root tmp lock_fd start
  if [[ -f "$dir/.complete" ]]; then
    log "$name: cached in $dir"
    return 0
  fi
  root="$(dirname "$dir")"
  mkdir -p "$root"
  exec {lock_fd}>"$root/.lock-$name"
  flock "$lock_fd"
  if [[ -f "$dir/.complete" ]]; then # someone else built it meanwhile
    exec {lock_fd}>&-
    log "$name: cached in $dir"
    return 0
  fi
  tmp="$(mktemp -d "$root/.tmp-$name.XXXXXX")"
  start=$SECONDS
  log "$name: building into $dir (one-time)"
  if ! "$fn" "$tmp"; then
    rm -rf "$tmp"
    exec {lock_fd}>&-
    die "$name: build failed (see the output above)"
  fi
  date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  exec {lock_fd}>&-
  log "$name: built in $((SECONDS - start))s"
}
