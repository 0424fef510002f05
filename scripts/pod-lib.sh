# shellcheck shell=bash
# Shared helpers of the pod-*.sh debugging scripts; source it, don't run it.
# They read the node's state straight from the host (no kubelet needed):
#
#   $PEAPOD_STATE_DIR    sandboxes, <ns>_<pod>_<uid>/sandbox.json   (/run/peapod/sandboxes)
#   $PEAPOD_RUNTIME_ROOT the runtime's --root, for `state <id>`     (/run/peapod)
#   $PEAPOD_NETNS_DIR    the pods' pinned network namespaces         (/run/netns)
#   $PEAPOD_LOG_DIR      CRI logs, <ns>_<pod>_<uid>/<container>/<n>.log (/var/log/pods)
#   $PEAPOD_RUNTIME      the runtime binary                          (peapod-runtime)
#
# Expects the caller to have `set -euo pipefail` and to define usage().
# Needs jq to read the JSON records.

STATE_DIR=${PEAPOD_STATE_DIR:-/run/peapod/sandboxes}
RUNTIME_ROOT=${PEAPOD_RUNTIME_ROOT:-/run/peapod}
NETNS_DIR=${PEAPOD_NETNS_DIR:-/run/netns}
# shellcheck disable=SC2034 # (used by pod-logs.sh)
LOG_DIR=${PEAPOD_LOG_DIR:-/var/log/pods}
RUNTIME=${PEAPOD_RUNTIME:-peapod-runtime}

# The script's name without .sh, as messages are prefixed with it.
PROG=$(basename "$0" .sh)

fail() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }

# usage_error MESSAGE: a bad command line; usage goes to stderr, exit 2.
usage_error() {
  printf '%s: %s\n' "$PROG" "$1" >&2
  usage >&2
  exit 2
}

# need_value OPTION ARGC: an option that takes a value was given none.
need_value() { (($2 >= 2)) || usage_error "$1 needs a value"; }

need_jq() { command -v jq >/dev/null || fail "jq is needed to read the state (apt-get install jq)"; }

# json FILE FILTER: one jq query on a file, raw output ('' for null).
json() { jq -r "$2 // empty" "$1"; }

# sandbox_dir NS POD: the pod's sandbox directory, or exit 1 naming the pod.
# Sandbox names are <ns>_<pod>_<uid> and none of the parts holds a '_', so the
# glob matches only this pod; after a quick delete-and-recreate two may exist
# for a moment, and the newest record is the live one.
sandbox_dir() {
  local ns=$1 pod=$2 record newest=""
  need_jq
  for record in "$STATE_DIR/${ns}_${pod}_"*/sandbox.json; do
    [[ -f $record ]] || continue
    if [[ -z $newest || $record -nt $newest ]]; then newest=$record; fi
  done
  [[ -n $newest ]] || fail "no pod \"$pod\" in namespace \"$ns\""
  dirname "$newest"
}

# sandbox_dirs [NS]: every sandbox directory (of namespace NS), sorted by name.
sandbox_dirs() {
  local pattern="${1:-*}_*_*" dir
  need_jq
  for dir in "$STATE_DIR"/$pattern; do
    [[ -f $dir/sandbox.json ]] && printf '%s\n' "$dir"
  done
  return 0
}

# container_ids SANDBOX_DIR: the ids of the pod's containers (one bundle each),
# oldest first, so a restarted container's newest id comes last.
container_ids() {
  [[ -d $1/containers ]] || return 0
  find "$1/containers" -mindepth 2 -maxdepth 2 -name config.json -printf '%T@ %h\n' |
    sort -n | while read -r _ dir; do basename "$dir"; done
}

# container_name SANDBOX_DIR ID: the name the pod spec gives the container.
container_name() {
  json "$1/containers/$2/config.json" '.annotations["io.kubernetes.container.name"]'
}

# runtime_state ID: "STATUS PID" from the runtime; "unknown 0" when the
# runtime has no such container (deleted, or never started).
runtime_state() {
  local state
  if state=$("$RUNTIME" --root "$RUNTIME_ROOT" state "$1" 2>/dev/null); then
    jq -r '"\(.status // "unknown") \(.pid // 0)"' <<<"$state"
  else
    echo "unknown 0"
  fi
}

# pick_container SANDBOX_DIR [NAME]: "ID STATUS PID" of the newest running
# container called NAME (any name when empty), else of the newest one so
# called; nothing when the pod has none. Running ones come first because a
# restarted container leaves its exited predecessors' bundles behind.
pick_container() {
  local dir=$1 want=${2:-} id status pid running="" any=""
  while read -r id; do
    [[ -z $want || $(container_name "$dir" "$id") == "$want" ]] || continue
    read -r status pid < <(runtime_state "$id")
    any="$id $status $pid"
    # Keep the first running one: "the first running container" of the pod.
    if [[ $status == running && -z $running ]]; then running=$any; fi
  done < <(container_ids "$dir")
  if [[ -n $running ]]; then echo "$running"; elif [[ -n $any ]]; then echo "$any"; fi
}

# container_names SANDBOX_DIR: the distinct container names, space-separated.
container_names() {
  local id
  while read -r id; do container_name "$1" "$id"; done < <(container_ids "$1") |
    awk '!seen[$0]++' | paste -sd' ' -
}

# netns_path SANDBOX_DIR: the pod's pinned network namespace: in
# $PEAPOD_NETNS_DIR when that is set, else where the record says.
netns_path() {
  local pinned=""
  [[ -n ${PEAPOD_NETNS_DIR:-} ]] || pinned=$(json "$1/sandbox.json" '.pins.net')
  printf '%s\n' "${pinned:-$NETNS_DIR/$(basename "$1")}"
}
