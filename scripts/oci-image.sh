#!/usr/bin/env bash
# Build an OCI image archive of a tiny busybox rootfs, without a registry.
#
#   scripts/oci-image.sh OUT.tar [REF]
#
# The rootfs is the host's static busybox (Debian: busybox-static) plus one
# symlink per applet and a minimal /etc/passwd and /etc/group. The archive is
# an OCI image layout (oci-layout, index.json, blobs/sha256/...) holding one
# gzip'd layer, an image config (Cmd ["sh"], Env PATH) and a manifest.
# The manifest is annotated with REF (default peapod.test/busybox:latest), as
# org.opencontainers.image.ref.name and io.containerd.image.name, so that
# `ctr images import OUT.tar` names the image REF.
#
# The output is deterministic: the same busybox binary gives the same digests.
# Needs only bash, coreutils, GNU tar and gzip.
#
# Environment:
#   BUSYBOX  path of a statically linked busybox (default: /bin/busybox)
set -euo pipefail
umask 022

usage() {
    echo "usage: $0 OUT.tar [REF]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
out=$1
ref=${2:-peapod.test/busybox:latest}
busybox=${BUSYBOX:-/bin/busybox}

# REF goes into JSON unescaped, so allow only reference characters.
if [[ ! $ref =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]]; then
    echo "$0: invalid image reference: $ref" >&2
    exit 2
fi
if [[ ! -x $busybox ]]; then
    echo "$0: $busybox not found (install busybox-static or set BUSYBOX)" >&2
    exit 1
fi
# A dynamically linked busybox would not run inside the image.
if command -v ldd >/dev/null && ldd "$busybox" >/dev/null 2>&1; then
    echo "$0: $busybox is dynamically linked; use busybox-static" >&2
    exit 1
fi

# Image platform, in Go's GOARCH spelling as OCI requires.
case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    armv7l) arch=arm ;;
    i?86) arch=386 ;;
    ppc64le) arch=ppc64le ;;
    s390x) arch=s390x ;;
    riscv64) arch=riscv64 ;;
    *) echo "$0: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- rootfs -----------------------------------------------------------------
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,root,var,run}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
mapfile -t applets < <("$busybox" --list-full)
dirs=("$rootfs")
for applet in "${applets[@]}"; do
    if [[ $applet == */* ]]; then dirs+=("$rootfs/${applet%/*}"); fi
done
mkdir -p "${dirs[@]}"
for applet in "${applets[@]}"; do
    if [[ $applet != bin/busybox ]]; then ln -sf /bin/busybox "$rootfs/$applet"; fi
done
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"

# Deterministic tar: sorted names, fixed times and owners, no pax headers.
det_tar() {
    tar --create --format=gnu --sort=name --mtime=@0 \
        --owner=0 --group=0 --numeric-owner "$@"
}

# --- blobs ------------------------------------------------------------------
layout=$work/layout
blobs=$layout/blobs/sha256
mkdir -p "$blobs"

sha256() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# Move FILE into the blob store; print its digest (hex).
add_blob() {
    local digest
    digest=$(sha256 "$1")
    mv "$1" "$blobs/$digest"
    echo "$digest"
}

det_tar -C "$rootfs" -f "$work/layer.tar" .
diff_id=$(sha256 "$work/layer.tar")
gzip -n -9 "$work/layer.tar"
layer_size=$(size "$work/layer.tar.gz")
layer=$(add_blob "$work/layer.tar.gz")

printf '%s' '{"architecture":"'"$arch"'","os":"linux",'\
'"created":"1970-01-01T00:00:00Z",'\
'"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],'\
'"Cmd":["sh"]},'\
'"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},'\
'"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/oci-image.sh"}]}' \
    >"$work/config.json"
config_size=$(size "$work/config.json")
config=$(add_blob "$work/config.json")

printf '%s' '{"schemaVersion":2,'\
'"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'\
'"digest":"sha256:'"$config"'","size":'"$config_size"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'\
'"digest":"sha256:'"$layer"'","size":'"$layer_size"'}]}' \
    >"$work/manifest.json"
manifest_size=$(size "$work/manifest.json")
manifest=$(add_blob "$work/manifest.json")

# --- layout -----------------------------------------------------------------
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '%s' '{"schemaVersion":2,'\
'"mediaType":"application/vnd.oci.image.index.v1+json",'\
'"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"digest":"sha256:'"$manifest"'","size":'"$manifest_size"','\
'"platform":{"architecture":"'"$arch"'","os":"linux"},'\
'"annotations":{"io.containerd.image.name":"'"$ref"'",'\
'"org.opencontainers.image.ref.name":"'"$ref"'"}}]}' \
    >"$layout/index.json"

chmod -R u=rwX,go=rX "$layout"
det_tar -C "$layout" -f "$work/image.tar" oci-layout index.json blobs
mv "$work/image.tar" "$out"
