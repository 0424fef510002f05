#!/usr/bin/env bash
# Builds peapod-runtime (release) and runs a busybox container with it, from
# a bundle made on the spot (no image registry), then walks a detached
# container through create/start/state/list/kill/delete. Run as root on
# Debian; installs what it needs with apt. Leaves nothing behind.
#
#   scripts/demo-runtime.sh
#
# PEAPOD_RUNTIME=/path/to/runtime skips the build and uses that binary.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_root

mapfile -t build_deps < <(build_packages)
ensure_packages busybox-static "${build_deps[@]}"
if [[ -n ${PEAPOD_RUNTIME:-} ]]; then
  rt=$PEAPOD_RUNTIME
else
  ensure_cargo
  log "cargo build --release -p peapod-runtime"
  (cd "$PEAPOD_ROOT" && cargo build --release -p peapod-runtime)
  rt=$(target_dir)/release/peapod-runtime
fi
[[ -x $rt ]] || die "no runtime binary at $rt"

tmp=$(mktemp -d)
root=$tmp/state
ids=()
cleanup() {
  local id
  for id in "${ids[@]}"; do
    "$rt" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Shows a command (on stderr, so it stays visible when stdout is
# redirected), then runs it.
show() {
  printf '\n$ %s\n' "$*" >&2
  "$@"
}
runtime() { show "$rt" --root "$root" "$@"; }

log "1. run a container in the foreground"
# shellcheck disable=SC2016 # expanded inside the container
"$PEAPOD_ROOT/scripts/mkbundle.sh" "$tmp/hello" -- sh -c '
  echo "hostname: $(hostname)"
  echo "id: $(id)"
  echo "ls /: $(ls / | tr "\n" " ")"
  echo "mounts:"
  awk "{ print \"  \" \$5, \$(NF-2) }" /proc/self/mountinfo'
id=demo-hello-$$
ids+=("$id")
runtime run --bundle "$tmp/hello" "$id"

log "2. a detached container: create, start, state, list, kill, delete"
# The shell is pid 1 of its pid namespace, which ignores SIGTERM unless it
# installs a handler: trap it to exit cleanly.
"$PEAPOD_ROOT/scripts/mkbundle.sh" "$tmp/sleeper" -- sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
id=demo-sleeper-$$
ids+=("$id")
# create hands its stdio to the container: keep the container off ours.
runtime create --bundle "$tmp/sleeper" "$id" </dev/null >/dev/null
runtime state "$id"
runtime start "$id"
runtime list
runtime kill "$id" TERM
for _ in $(seq 50); do
  "$rt" --root "$root" state "$id" | grep -q '"status": *"stopped"' && break
  sleep 0.1
done
runtime state "$id"
runtime delete "$id"
runtime list

printf '\ndemo-runtime: done\n'
