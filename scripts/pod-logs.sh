#!/usr/bin/env bash
# Prints a pod container's log from its CRI log files under /var/log/pods,
# without the kubelet: handy when the kubelet is down or the pod is gone (the
# logs outlive the sandbox until the kubelet cleans them up).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: pod-logs.sh POD [-n NAMESPACE] [-c CONTAINER] [-f] [--raw]

Prints the log of a container of POD from its newest restart,
/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log (older rotated files
of that restart first). Each CRI line is "<time> <stream> <F|P> <message>";
only the message is printed, and partial (P) pieces are joined back into one
line.

Options:
  -n, --namespace NS    the pod's namespace (default: default)
  -c, --container NAME  the container (needed when the pod has several)
  -f, --follow          keep printing new lines (tail -F; survives rotation)
      --raw             print the lines as stored, time and stream included
  -h, --help            this help

Examples:
  pod-logs.sh web
  pod-logs.sh web -c sidecar -f
  pod-logs.sh web --raw | grep ' stderr '

Environment: PEAPOD_LOG_DIR and PEAPOD_STATE_DIR override where the logs and
the sandboxes are.
USAGE
}

# shellcheck source=scripts/pod-lib.sh
source "$(dirname "$0")/pod-lib.sh"

namespace=default container="" follow=false raw=false pod=""
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --namespace) need_value "$1" $#; namespace=$2; shift ;;
    -c | --container) need_value "$1" $#; container=$2; shift ;;
    -f | --follow) follow=true ;;
    --raw) raw=true ;;
    -*) usage_error "unknown option $1" ;;
    *) [[ -z $pod ]] || usage_error "one pod at a time (got $pod and $1)"; pod=$1 ;;
  esac
  shift
done
[[ -n $pod ]] || usage_error "which pod?"

# The running pod's log directory is named after its sandbox (same uid). With
# no sandbox left, the newest log directory of that pod name still has logs.
pod_logs=""
if [[ -n $(compgen -G "$STATE_DIR/${namespace}_${pod}_*/sandbox.json") ]]; then
  pod_logs=$LOG_DIR/$(basename "$(sandbox_dir "$namespace" "$pod")")
else
  for candidate in "$LOG_DIR/${namespace}_${pod}_"*/; do
    [[ -d $candidate ]] || continue
    if [[ -z $pod_logs || $candidate -nt $pod_logs ]]; then pod_logs=${candidate%/}; fi
  done
fi
[[ -n $pod_logs ]] || fail "no pod \"$pod\" in namespace \"$namespace\""
[[ -d $pod_logs ]] || fail "pod \"$pod\" has no logs yet ($pod_logs)"

mapfile -t names < <(find "$pod_logs" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
if [[ -z $container ]]; then
  ((${#names[@]} > 0)) || fail "pod \"$pod\" has no container logs yet ($pod_logs)"
  # kubectl's wording, for the same situation.
  ((${#names[@]} == 1)) || fail "a container name must be specified for pod $pod, choose one of: [${names[*]}]"
  container=${names[0]}
fi
[[ -d $pod_logs/$container ]] || fail "no container \"$container\" in pod \"$pod\" (containers with logs: ${names[*]:-none})"

# The newest restart: the highest <n>.log.
restart=$(find "$pod_logs/$container" -maxdepth 1 -name '*.log' -printf '%f\n' |
  sed -n 's/^\([0-9][0-9]*\)\.log$/\1/p' | sort -n | tail -1)
[[ -n $restart ]] || fail "no log file in $pod_logs/$container"
log=$pod_logs/$container/$restart.log
# Rotated files are <n>.log.<timestamp>: their names sort by age.
mapfile -t rotated < <(find "$pod_logs/$container" -maxdepth 1 -name "$restart.log.[0-9]*" | sort)

# Drops "<time> <stream> <tag> " and ends a line only at a full (F) entry.
# With -f the lines must come out as they arrive: fflush() for the output,
# and mawk (Debian's awk) reads a pipe in blocks unless -W interactive.
awk_flags=()
if awk -W version 2>/dev/null | grep -q mawk; then awk_flags=(-W interactive); fi
message() {
  awk "${awk_flags[@]}" '{
    split($0, f, " ")
    if (match($0, /^[^ ]+ [^ ]+ [FP]( |$)/)) {
      text = substr($0, RLENGTH + 1)
      if (f[3] == "P") printf "%s", text; else print text
    } else print
    fflush()
  }'
}
show() { if $raw; then cat; else message; fi; }

if $follow; then
  # -n +1: the whole file first; -F: reopen the new file after a rotation.
  { ((${#rotated[@]} == 0)) || cat "${rotated[@]}"; tail -n +1 -F "$log"; } | show
else
  cat ${rotated[@]+"${rotated[@]}"} "$log" | show
fi
