#!/usr/bin/env bash
# Lists the node's pods from the host's own state (no kubelet needed): each
# pod with its IP and network namespace inode, then each of its containers
# with its runtime status, the inodes of its namespaces and its cgroup. Equal
# inodes mean a shared namespace: the containers of a pod share net, ipc and
# uts (the pod's pinned ones) and each has its own pid and mnt.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: pod-ls.sh [-n NAMESPACE | -A]

Prints one line per pod:
  NAMESPACE NAME UID IP NETNS-INODE
and below it one line per container:
  CONTAINER ID PID STATUS NET IPC UTS PIDNS MNT CGROUP
ID is the first 12 characters; NET..MNT are namespace inodes
(stat -L -c %i /proc/<pid>/ns/<type>); for a container that does not run,
NET, IPC and UTS are the pod's pinned namespaces and the rest is "-".

Options:
  -n, --namespace NS    pods of namespace NS (default: default)
  -A, --all-namespaces  pods of every namespace
  -h, --help            this help

Examples:
  pod-ls.sh
  pod-ls.sh -A
  pod-ls.sh -n kube-system

Environment: PEAPOD_STATE_DIR, PEAPOD_RUNTIME_ROOT, PEAPOD_NETNS_DIR and
PEAPOD_RUNTIME override where the sandboxes, the runtime state, the netns pins
and the runtime binary are.
USAGE
}

# shellcheck source=scripts/pod-lib.sh
source "$(dirname "$0")/pod-lib.sh"

namespace=default
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --namespace) need_value "$1" $#; namespace=$2; shift ;;
    -A | --all-namespaces) namespace="" ;;
    *) usage_error "unexpected argument $1" ;;
  esac
  shift
done

inode() { stat -L -c %i "$1" 2>/dev/null || echo -; }

# The cgroup path of a process: the memory hierarchy's on cgroup v1 (all
# hierarchies carry the same kubepods/.../<id> path), the unified one on v2.
cgroup_of() {
  awk -F: '$2 == "memory" { v1 = $3 } $1 == "0" && $2 == "" { v2 = $3 }
    END { print (v1 != "" ? v1 : (v2 != "" ? v2 : "-")) }' "/proc/$1/cgroup" 2>/dev/null || echo -
}

# Rows go out tab-separated, "P" rows for pods and "C" rows for containers;
# align() pads each kind's columns to its own widths.
rows() {
  local dir record netns id name status pid kind
  printf 'P\tNAMESPACE\tNAME\tUID\tIP\tNETNS-INODE\n'
  printf 'C\tCONTAINER\tID\tPID\tSTATUS\tNET\tIPC\tUTS\tPIDNS\tMNT\tCGROUP\n'
  while read -r dir; do
    record=$dir/sandbox.json
    netns=$(netns_path "$dir")
    printf 'P\t%s\t%s\t%s\t%s\t%s\n' "$(json "$record" '.config.namespace')" \
      "$(json "$record" '.config.name')" "$(json "$record" '.config.uid')" \
      "$(json "$record" '.ip // "<none>"')" "$(inode "$netns")"
    while read -r id; do
      name=$(container_name "$dir" "$id")
      read -r status pid < <(runtime_state "$id")
      if [[ $status == running && $pid -gt 0 ]]; then
        printf 'C\t%s\t%s\t%s\t%s' "$name" "${id:0:12}" "$pid" "$status"
        for kind in net ipc uts pid mnt; do printf '\t%s' "$(inode "/proc/$pid/ns/$kind")"; done
        printf '\t%s\n' "$(cgroup_of "$pid")"
      else
        printf 'C\t%s\t%s\t-\t%s\t%s\t%s\t%s\t-\t-\t-\n' "$name" "${id:0:12}" "$status" \
          "$(inode "$netns")" "$(inode "$(json "$record" '.pins.ipc')")" "$(inode "$(json "$record" '.pins.uts')")"
      fi
    done < <(container_ids "$dir")
  done <<<"$dirs"
}

align() {
  awk -F'\t' '
    { kind[NR] = $1; line[NR] = $0
      for (i = 2; i <= NF; i++) if (length($i) > w[$1, i]) w[$1, i] = length($i) }
    END {
      for (n = 1; n <= NR; n++) {
        k = split(line[n], f, "\t"); out = (kind[n] == "C" ? "  " : "")
        for (i = 2; i <= k; i++) out = out (i < k ? sprintf("%-" w[kind[n], i] "s  ", f[i]) : f[i])
        print out
      }
    }'
}

dirs=$(sandbox_dirs "$namespace")
if [[ -z $dirs ]]; then
  # As kubectl says it; not an error, so a loop over namespaces goes on.
  echo "No pods found${namespace:+ in $namespace namespace}." >&2
  exit 0
fi
# Header lines first, then pods in name order each followed by its containers.
rows | align
