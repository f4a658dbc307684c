#!/usr/bin/env bash
# A tiny volume provisioner for the local cluster, started in the background by
# `hack/cluster.sh up` and stopped by `down`.
#
# kwok fakes nodes without a kubelet, so nothing is ever mounted; PVCs only need a
# PersistentVolume to bind to. For every Pending PVC of a StorageClass whose provisioner
# is modfleet.dev/fake-provisioner, this creates a hostPath PV named pvc-<uid> with the
# claim's size, access modes and volume mode, pre-bound to the claim (claimRef with uid),
# and the PV controller in kube-controller-manager binds the pair. PVs it made that are
# Released (their claim was deleted) are deleted, as reclaimPolicy Delete promises. A
# bound claim whose request grew gets its PV and status capacity grown (expansion).
#
# Event driven: it watches PVCs (`kubectl get -w`) in windows of WATCH_SECONDS and does
# a full resync between windows, so a missed event costs at most one window.
#
# Env: KUBECONFIG (required), KUBECTL (default kubectl), WATCH_SECONDS (default 20).
set -uo pipefail

KUBECTL="${KUBECTL:-kubectl}"
WATCH_SECONDS="${WATCH_SECONDS:-20}"
PROVISIONER=modfleet.dev/fake-provisioner
PV_LABEL=modfleet.dev/local-cluster=fake-pv

log() { printf '%s provisioner: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# StorageClasses served by us, space separated.
our_classes() {
  "$KUBECTL" get storageclass \
    -o jsonpath="{range .items[?(@.provisioner==\"$PROVISIONER\")]}{.metadata.name}{\" \"}{end}" 2>/dev/null
}

# One line per PVC: namespace|name|uid|phase|class|volumeName|request|accessModes(JSON)|volumeMode|capacity
PVC_TEMPLATE='{.metadata.namespace}|{.metadata.name}|{.metadata.uid}|{.status.phase}|{.spec.storageClassName}|{.spec.volumeName}|{.spec.resources.requests.storage}|{.spec.accessModes}|{.spec.volumeMode}|{.status.capacity.storage}{"\n"}'

provision() { # ns name uid class size modes vmode
  local ns="$1" name="$2" uid="$3" class="$4" size="$5" modes="$6" vmode="${7:-Filesystem}"
  [[ -n "$modes" ]] || modes='["ReadWriteOnce"]'
  local out
  if out="$("$KUBECTL" create -f - 2>&1 <<EOF
{
  "apiVersion": "v1",
  "kind": "PersistentVolume",
  "metadata": {
    "name": "pvc-$uid",
    "labels": {"modfleet.dev/local-cluster": "fake-pv"},
    "annotations": {"pv.kubernetes.io/provisioned-by": "$PROVISIONER"}
  },
  "spec": {
    "capacity": {"storage": "$size"},
    "accessModes": $modes,
    "volumeMode": "$vmode",
    "persistentVolumeReclaimPolicy": "Delete",
    "storageClassName": "$class",
    "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "namespace": "$ns", "name": "$name", "uid": "$uid"},
    "hostPath": {"path": "/var/lib/modfleet-fake-pv/pvc-$uid"}
  }
}
EOF
  )"; then
    log "created pv/pvc-$uid ($size, $modes) for $ns/$name"
  elif [[ "$out" == *AlreadyExists* ]]; then
    : # made in an earlier pass; the PV controller will bind it
  else
    log "failed to create a PV for $ns/$name: $out"
  fi
}

# Expansion (allowVolumeExpansion): the API server only accepts growing requests, so a
# bound claim whose request differs from its capacity has grown. Grow the PV, then
# report the new capacity in the claim's status, as a resizer and kubelet would.
resize() { # ns name vol size
  local ns="$1" name="$2" vol="$3" size="$4"
  if "$KUBECTL" patch pv "$vol" --type=merge \
    -p "{\"spec\":{\"capacity\":{\"storage\":\"$size\"}}}" >/dev/null 2>&1 &&
    "$KUBECTL" patch pvc "$name" -n "$ns" --subresource=status --type=merge \
      -p "{\"status\":{\"capacity\":{\"storage\":\"$size\"}}}" >/dev/null 2>&1; then
    log "resized pv/$vol and $ns/$name to $size"
  else
    log "failed to resize $ns/$name to $size"
  fi
}

handle_line() {
  local ns name uid phase class vol size modes vmode capacity
  IFS='|' read -r ns name uid phase class vol size modes vmode capacity <<<"$1"
  [[ -n "$class" && -n "$size" && " $CLASSES " == *" $class "* ]] || return 0
  if [[ "$phase" == Pending && -z "$vol" ]]; then
    provision "$ns" "$name" "$uid" "$class" "$size" "$modes" "$vmode"
  elif [[ "$phase" == Bound && -n "$vol" && -n "$capacity" && "$capacity" != "$size" &&
    "$vol" == "pvc-$uid" ]]; then
    resize "$ns" "$name" "$vol" "$size"
  fi
}

sweep_released() {
  local line pv phase
  while IFS='|' read -r pv phase; do
    [[ -n "$pv" ]] || continue
    if [[ "$phase" == Released || "$phase" == Failed ]]; then
      "$KUBECTL" delete pv "$pv" --wait=false >/dev/null 2>&1 && log "deleted $phase pv/$pv"
    fi
  done < <("$KUBECTL" get pv -l "$PV_LABEL" \
    -o jsonpath='{range .items[*]}{.metadata.name}|{.status.phase}{"\n"}{end}' 2>/dev/null)
}

log "started (pid $$), serving StorageClasses with provisioner $PROVISIONER"
trap 'log "stopping"; exit 0' TERM INT
while true; do
  started=$SECONDS
  CLASSES="$(our_classes)"
  sweep_released
  # Without --watch-only, kubectl first prints every existing PVC, then changes.
  while IFS= read -r line; do
    handle_line "$line"
  done < <(timeout "$WATCH_SECONDS" "$KUBECTL" get pvc --all-namespaces --watch \
    -o jsonpath="$PVC_TEMPLATE" 2>/dev/null)
  # The API server is down or unreachable: don't spin.
  if ((SECONDS - started < 2)); then sleep 2; fi
done
