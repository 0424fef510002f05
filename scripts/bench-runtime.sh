#!/usr/bin/env bash
# Times `RUNTIME --root TMP run ID` of /bin/true in a busybox bundle for
# peapod-runtime, runc and crun, interleaved in one invocation, and prints
# each runtime's median and the ratios peapod/runc and peapod/crun, then
# each runtime's peak RSS during `run` (the median over RSS_RUNS untimed
# runs of /usr/bin/time's %M: the maximum resident set of the runtime
# process and of the processes it reaps, e.g. runc's `runc init`).
#
#   scripts/bench-runtime.sh [RUNS]        (default 50, at least 50)
#
# Each run uses a fresh id; `run` deletes its container on exit and an
# untimed `delete --force` makes sure. peapod-runtime is $PEAPOD_RUNTIME,
# else the release build (built if missing). A runtime that cannot run the
# bundle on this host is reported with its error and left out; for crun,
# `--cgroup-manager=disabled` is tried next. crun refuses v1/v2 hybrid hosts
# whose cgroup2 mount holds a controller: there the script times all three
# runtimes a second time in a private mount namespace where that cgroup2
# mount is hidden, so crun runs beside the others under equal conditions.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_root

runs=${1:-50}
if [[ ! $runs =~ ^[0-9]+$ ]] || ((runs < 50)); then die "RUNS must be a number >= 50"; fi
warmup=3
rss_runs=11
# GNU time reports the peak RSS that wait4 returns; bash's `time` cannot.
ensure_packages time

peapod=$(runtime_binary)
if [[ -z $peapod ]]; then
  ensure_cargo
  log "cargo build --release -p peapod-runtime"
  (cd "$PEAPOD_ROOT" && cargo build --release -p peapod-runtime)
  peapod=$(target_dir)/release/peapod-runtime
fi

unified=/sys/fs/cgroup/unified
if [[ ${PEAPOD_BENCH_HIDE_CGROUP2:-} == 1 ]]; then
  umount "$unified" || die "cannot hide $unified in this mount namespace"
  echo "(private mount namespace: $unified hidden, cgroup v1 controllers only)"
fi

tmp=$(mktemp -d)
# Force-deletes whatever a state dir still holds (runc and crun keep one
# directory per container id there), then removes the temp dir.
cleanup() {
  local root state
  local -a cmd
  for root in "$tmp"/root-*/; do
    root=${root%/}
    read -r -a cmd <"$root.cmd" || continue
    for state in "$root"/*/; do
      if [[ -d $state ]]; then
        "${cmd[@]}" --root "$root" delete --force "$(basename "$state")" >/dev/null 2>&1 || true
      fi
    done
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

"$PEAPOD_ROOT/scripts/mkbundle.sh" "$tmp/bundle" -- /bin/true
"$PEAPOD_ROOT/scripts/mkbundle.sh" "$tmp/probe" -- echo bench-probe-ok

# Runs runtime NAME (its command line is in $tmp/root-NAME.cmd) on bundle
# $2 as id $3; its output goes to $tmp/out.
run_once() {
  local name=$1 bundle=$2 id=$3
  local -a cmd
  read -r -a cmd <"$tmp/root-$name.cmd"
  "${cmd[@]}" --root "$tmp/root-$name" run --bundle "$bundle" "$id" </dev/null >"$tmp/out" 2>&1
}

# Registers runtime NAME as CMD... (split on spaces) if it runs the probe bundle and prints
# its marker (a stub that exits 0 without running anything does not count).
usable=()
try_runtime() {
  local name=$1
  shift
  mkdir -p "$tmp/root-$name"
  echo "$*" >"$tmp/root-$name.cmd"
  if run_once "$name" "$tmp/probe" "probe-$name-$$" && grep -q bench-probe-ok "$tmp/out"; then
    usable+=("$name")
    printf '%-7s %s\n' "$name:" "$*"
    return 0
  fi
  printf '%-7s %s: cannot run the bundle here: %s\n' "$name:" "$*" "$(tr '\n' ' ' <"$tmp/out" | cut -c1-300)"
  return 1
}

echo "runtimes:"
try_runtime peapod "$peapod" || true
if command -v runc >/dev/null; then try_runtime runc "$(command -v runc)" || true; fi
if command -v crun >/dev/null; then
  try_runtime crun "$(command -v crun)" ||
    { echo "        retrying crun without cgroups: --cgroup-manager=disabled"; try_runtime crun "$(command -v crun) --cgroup-manager=disabled"; } ||
    {
      echo "        crun left out"
      if [[ -s $unified/cgroup.controllers ]]; then
        echo "        (this is a v1/v2 hybrid host whose cgroup2 still holds controllers: $(cat "$unified/cgroup.controllers"))"
      fi
    }
fi
((${#usable[@]} > 0)) || die "no runtime can run the bundle"

# Interleaved, so that drift on the machine hits every runtime alike.
# EPOCHREALTIME (bash 5) reads the clock without forking.
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$((10#$t))"; }
echo "timing $runs runs each (+$warmup warm-up) of: run /bin/true"
for ((i = 1; i <= warmup + runs; i++)); do
  for name in "${usable[@]}"; do
    id=bench-$name-$$-$i
    t0=$(now_us)
    run_once "$name" "$tmp/bundle" "$id" || die "$name failed on run $i: $(cat "$tmp/out")"
    t1=$(now_us)
    ((i > warmup)) && echo $((t1 - t0)) >>"$tmp/times-$name"
    read -r -a cmd <"$tmp/root-$name.cmd"
    "${cmd[@]}" --root "$tmp/root-$name" delete --force "$id" >/dev/null 2>&1 || true
  done
done

# Median in microseconds of the numbers in file $1.
median() {
  sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# Peak RSS in KiB of $rss_runs runs each, untimed, again interleaved.
for ((i = 1; i <= rss_runs; i++)); do
  for name in "${usable[@]}"; do
    id=rss-$name-$$-$i
    read -r -a cmd <"$tmp/root-$name.cmd"
    /usr/bin/time -f %M -o "$tmp/rss" "${cmd[@]}" --root "$tmp/root-$name" run --bundle "$tmp/bundle" "$id" </dev/null >"$tmp/out" 2>&1 ||
      die "$name failed on RSS run $i: $(cat "$tmp/out")"
    tail -n 1 "$tmp/rss" >>"$tmp/rss-$name"
    "${cmd[@]}" --root "$tmp/root-$name" delete --force "$id" >/dev/null 2>&1 || true
  done
done

declare -A med rss
echo
printf '%-8s %12s %14s\n' runtime "median (ms)" "peak RSS (MB)"
for name in "${usable[@]}"; do
  med[$name]=$(median "$tmp/times-$name")
  rss[$name]=$(median "$tmp/rss-$name")
  printf '%-8s %12.2f %14.2f\n' "$name" "$(awk -v us="${med[$name]}" 'BEGIN { print us / 1000 }')" \
    "$(awk -v kb="${rss[$name]}" 'BEGIN { print kb * 1024 / 1e6 }')"
done
echo
for other in runc crun; do
  if [[ -n ${med[peapod]:-} && -n ${med[$other]:-} ]]; then
    printf 'peapod/%s: %.2f\n' "$other" "$(awk -v a="${med[peapod]}" -v b="${med[$other]}" 'BEGIN { print a / b }')"
  else
    printf 'peapod/%s: n/a (not measured)\n' "$other"
  fi
done
[[ -n ${med[peapod]:-} ]] || die "peapod-runtime was not measured"
if [[ -z ${med[crun]:-} && -z ${PEAPOD_BENCH_HIDE_CGROUP2:-} ]] && command -v crun >/dev/null && mountpoint -q "$unified"; then
  echo
  echo "crun cannot run on this host's cgroup layout: timing all three again in a private mount namespace"
  PEAPOD_RUNTIME=$peapod PEAPOD_BENCH_HIDE_CGROUP2=1 unshare --mount --propagation private "$0" "$runs"
fi
