#!/usr/bin/env bash
# Makes a busybox OCI bundle: DIR/rootfs from Debian's busybox-static and
# DIR/config.json, running CMD (default: sh) without a terminal.
#
#   scripts/mkbundle.sh DIR [-- CMD...]
#
# config.json comes from `RUNTIME spec`: $PEAPOD_RUNTIME, else the release
# build, else peapod-runtime on PATH (any runc-compatible runtime will do).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

usage() { echo "usage: $0 DIR [-- CMD...]" >&2; exit 2; }
(($# >= 1)) || usage
dir=$1
shift
if (($# > 0)); then
  [[ $1 == -- ]] || usage
  shift
fi
cmd=("$@")
((${#cmd[@]} > 0)) || cmd=(sh)

busybox=/bin/busybox
[[ -x $busybox ]] || die "$busybox not found: apt-get install busybox-static"
[[ ! -e $dir/config.json && ! -e $dir/rootfs ]] || die "$dir already holds a bundle"

# Remove what this script made if it fails half-way.
made_dir=false
[[ -d $dir ]] || made_dir=true
finished=false
cleanup() {
  if ! $finished; then
    if $made_dir; then rm -rf "$dir"; else rm -rf "$dir/rootfs" "$dir/config.json"; fi
  fi
}
trap cleanup EXIT

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rootfs=$dir/rootfs

# --- rootfs: busybox, one symlink per applet, users root/user/nobody ---
mkdir -p "$rootfs"/{bin,dev,etc,proc,sys,root,home/user,tmp}
chmod 1777 "$rootfs/tmp"
chown 1000:1000 "$rootfs/home/user"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
done
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
users:x:100:user
user:x:1000:
nogroup:x:65534:
GROUP

# --- config.json: the runtime's own `spec` document ---
runtime=$(runtime_binary)
[[ -n $runtime ]] || die "no runtime to write config.json: build peapod (cargo build --release -p peapod-runtime) or set PEAPOD_RUNTIME"
"$runtime" spec --bundle "$dir" >/dev/null || die "$runtime spec --bundle $dir failed"
from="$(basename "$runtime") spec"

# Set process.args to CMD and process.terminal to false. `spec` output is
# pretty-printed JSON with "args": [ on a line of its own; the array may
# end on that line or further down.
json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  s=${s//$'\n'/\\n}
  printf '"%s"' "$s"
}
args_json=""
for arg in "${cmd[@]}"; do
  args_json+="${args_json:+, }$(json_string "$arg")"
done
# (The array goes through the environment: awk -v would undo its escapes.)
patched=$(ARGS="[$args_json]" awk '
  !done && /"args"[[:space:]]*:[[:space:]]*\[/ {
    indent = $0; sub(/[^[:space:]].*/, "", indent)
    line = $0
    while (line !~ /\]/ && (getline line) > 0) {}
    comma = (line ~ /\][[:space:]]*,[[:space:]]*$/) ? "," : ""
    print indent "\"args\": " ENVIRON["ARGS"] comma
    done = 1
    next
  }
  { sub(/"terminal"[[:space:]]*:[[:space:]]*true/, "\"terminal\": false"); print }
' "$dir/config.json")
grep -qF "\"args\": [$args_json]" <<<"$patched" || die "could not set process.args in $dir/config.json"
printf '%s\n' "$patched" >"$dir/config.json"

finished=true
log "bundle $dir: busybox rootfs, config.json from $from, running: ${cmd[*]}"
