#!/usr/bin/env bash
# Makes a busybox OCI bundle: DIR/rootfs from Debian's busybox-static and
# DIR/config.json, running CMD (default: sh) without a terminal.
#
#   scripts/mkbundle.sh DIR [-- CMD...]
#
# config.json comes from `peapod-runtime spec` ($PEAPOD_RUNTIME, else the
# release build, else peapod-runtime on PATH). If that runtime is missing or
# its `spec` fails, the script writes the default `runc spec` document
# itself, the same one the integration tests generate (tests/src/spec.rs).
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

# --- config.json ---
# The default `runc spec` document (runc 1.1), kept in step with tests/src/spec.rs.
default_spec() {
  cat <<'SPEC'
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": true,
    "user": {
      "uid": 0,
      "gid": 0
    },
    "args": [
      "sh"
    ],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=xterm"
    ],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [
      { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }
    ],
    "noNewPrivileges": true
  },
  "root": {
    "path": "rootfs",
    "readonly": true
  },
  "hostname": "runc",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
      "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
      "options": ["nosuid", "noexec", "nodev"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] },
    { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
  ],
  "linux": {
    "resources": {
      "devices": [
        { "allow": false, "access": "rwm" }
      ]
    },
    "namespaces": [
      { "type": "pid" },
      { "type": "network" },
      { "type": "ipc" },
      { "type": "uts" },
      { "type": "mount" }
    ],
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
    ],
    "readonlyPaths": [
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]
  }
}
SPEC
}

runtime=$(runtime_binary)
from="$(basename "${runtime:-peapod-runtime}") spec"
if [[ -z $runtime ]] || ! "$runtime" spec --bundle "$dir" >/dev/null 2>&1 || [[ ! -s $dir/config.json ]]; then
  from="the built-in default spec"
  default_spec >"$dir/config.json"
fi

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
