#!/usr/bin/env bash
# Runs a command inside a pod's container, straight from the host (no
# kubelet): nsenter into the container's mount, UTS, IPC, network and PID
# namespaces, found by the container's pid in the runtime's state.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: pod-enter.sh POD [-n NAMESPACE] [-c CONTAINER] [-- CMD...]
       pod-enter.sh POD [-n NAMESPACE] --net-only [-- CMD...]

Runs CMD (default: sh) in the namespaces of a container of POD: the named
CONTAINER, else the pod's first running container. CMD is the container's
program (its mount namespace is entered), and sees the container's own
processes (pid 1 is its init).

With --net-only, enters only the pod's network namespace (/run/netns/<sandbox>)
and runs a host program there; this works while no container runs.

Options:
  -n, --namespace NS   the pod's namespace (default: default)
  -c, --container NAME the container (default: the first running one)
      --net-only       only the network namespace, host programs
  -h, --help           this help

Examples:
  pod-enter.sh web                          # a shell in web's first container
  pod-enter.sh web -c sidecar -- ps         # the sidecar's processes
  pod-enter.sh web -n shop -- cat /etc/hosts
  pod-enter.sh web --net-only -- ss -tlnp   # what listens in the pod, host ss

Environment: PEAPOD_STATE_DIR, PEAPOD_RUNTIME_ROOT, PEAPOD_NETNS_DIR and
PEAPOD_RUNTIME override where the sandboxes, the runtime state, the netns pins
and the runtime binary are.
USAGE
}

# shellcheck source=scripts/pod-lib.sh
source "$(dirname "$0")/pod-lib.sh"

namespace=default container="" net_only=false pod=""
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --namespace) need_value "$1" $#; namespace=$2; shift ;;
    -c | --container) need_value "$1" $#; container=$2; shift ;;
    --net-only) net_only=true ;;
    --) shift; break ;;
    -*) usage_error "unknown option $1" ;;
    *) [[ -z $pod ]] || usage_error "one pod at a time (got $pod and $1)"; pod=$1 ;;
  esac
  shift
done
[[ -n $pod ]] || usage_error "which pod?"
cmd=("$@")
((${#cmd[@]} > 0)) || cmd=(sh)
if $net_only && [[ -n $container ]]; then usage_error "--net-only and -c exclude each other"; fi

dir=$(sandbox_dir "$namespace" "$pod")

if $net_only; then
  netns=$(netns_path "$dir")
  [[ -e $netns ]] || fail "pod \"$pod\": its network namespace $netns is gone"
  exec nsenter --net="$netns" -- "${cmd[@]}"
fi

read -r id status pid < <(pick_container "$dir" "$container") || true
if [[ -z ${id:-} && -n $container ]]; then
  fail "no container \"$container\" in pod \"$pod\" (containers: $(container_names "$dir"))"
fi
[[ -n ${id:-} ]] || fail "pod \"$pod\" has no containers yet; --net-only enters its network"
[[ $status == running && $pid -gt 0 ]] ||
  fail "container $(container_name "$dir" "$id") of pod \"$pod\" is not running (status $status); --net-only enters its network"

# The mount namespace gives CMD the container's filesystem (-r: its root,
# -w: its working directory); the PID namespace makes nsenter fork, so CMD
# runs as a process of the container.
exec nsenter --target "$pid" --mount --uts --ipc --net --pid --root --wd -- "${cmd[@]}"
