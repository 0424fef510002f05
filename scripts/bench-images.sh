#!/usr/bin/env bash
# Times pulling and unpacking a ~100 MB multi-layer image from a loopback
# registry with `peapod pull` and with containerd (`ctr images pull
# --plain-http`, which unpacks into its overlayfs snapshotter), interleaved
# in one invocation; prints each one's median and the ratio peapod/containerd.
#
#   scripts/bench-images.sh [RUNS]          (default 3)
#
# The image (5 gzip'd layers of generated files, half random, half text) is
# written as an OCI layout and pushed with skopeo to a private
# docker-registry on 127.0.0.1 (own config and storage in a temp dir). Each
# run starts from a fresh state: a new `--root` for peapod, and for
# containerd a private daemon (own root, state and socket in the temp dir)
# started for that run and stopped by its PID afterwards; only the pull is
# timed. Everything is removed at exit. peapod is $PEAPOD, else the release
# build (built if missing).
#
# Needs: docker-registry, skopeo, containerd (Debian packages of those names).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_root

runs=${1:-3}
if [[ ! $runs =~ ^[0-9]+$ ]] || ((runs < 1)); then die "RUNS must be a positive number"; fi
layers=5
mib_per_layer=20

for tool in docker-registry skopeo containerd ctr; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install docker-registry skopeo containerd)"
done

peapod=${PEAPOD:-$(target_dir)/release/peapod}
if [[ ! -x $peapod ]]; then
  ensure_cargo
  log "cargo build --release -p peapod-kubelet --bin peapod"
  (cd "$PEAPOD_ROOT" && cargo build --release -p peapod-kubelet --bin peapod)
fi

tmp=$(mktemp -d /var/tmp/peapod-bench-images.XXXXXX)
registry_pid=
containerd_pid=
# Ends only the processes this script started (by PID), unmounts whatever
# containerd left under the temp dir, then removes it.
cleanup() {
  stop_containerd
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  local mnt
  while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done < <(
    awk -v p="$tmp/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf "$tmp"
}
trap cleanup EXIT

stop_containerd() {
  if [[ -n $containerd_pid ]]; then
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
    containerd_pid=
  fi
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# A loopback port nobody listens on.
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "no free loopback port found"
}

# --- image ------------------------------------------------------------------
log "building a $((layers * mib_per_layer)) MiB image of $layers gzip'd layers"
layout=$tmp/layout
blobs=$layout/blobs/sha256
mkdir -p "$blobs"
layer_json=()
diff_ids=()
for i in $(seq "$layers"); do
  dir=$tmp/layer-$i
  mkdir -p "$dir/data/$i"
  half=$((mib_per_layer / 2))
  # Random (incompressible) files, and text that gzip shrinks several times.
  for j in $(seq "$half"); do
    head -c 1M /dev/urandom >"$dir/data/$i/random-$j.bin"
    head -c 768K /dev/urandom | base64 -w 100 >"$dir/data/$i/text-$j.txt"
  done
  tar --create --format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -C "$dir" -f "$tmp/layer.tar" data
  diff_ids+=("\"sha256:$(sha256 "$tmp/layer.tar")\"")
  gzip -n -6 "$tmp/layer.tar"
  digest=$(sha256 "$tmp/layer.tar.gz")
  layer_json+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$digest\",\"size\":$(size "$tmp/layer.tar.gz")}")
  mv "$tmp/layer.tar.gz" "$blobs/$digest"
  rm -rf "$dir"
done
join() { local IFS=,; echo "$*"; }
printf '%s' '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},'\
'"rootfs":{"type":"layers","diff_ids":['"$(join "${diff_ids[@]}")"']}}' >"$tmp/config.json"
config=$(sha256 "$tmp/config.json")
config_size=$(size "$tmp/config.json")
mv "$tmp/config.json" "$blobs/$config"
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config"'","size":'"$config_size"'},'\
'"layers":['"$(join "${layer_json[@]}")"']}' >"$tmp/manifest.json"
manifest=$(sha256 "$tmp/manifest.json")
manifest_size=$(size "$tmp/manifest.json")
mv "$tmp/manifest.json" "$blobs/$manifest"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"digest":"sha256:'"$manifest"'","size":'"$manifest_size"',"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
  >"$layout/index.json"
image_mib=$(du -sm "$blobs" | cut -f1)

# --- registry ---------------------------------------------------------------
port=$(free_port)
mkdir -p "$tmp/registry"
# Never the package's default config: it listens on every interface.
cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
env -u REGISTRY_HTTP_ADDR docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$registry_pid" 2>/dev/null || die "docker-registry exited: $(cat "$tmp/registry/log")"
  sleep 0.05
done
image=127.0.0.1:$port/bench/image:1
log "pushing $image ($image_mib MiB compressed) with skopeo"
skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false --dest-no-creds \
  "oci:$layout:1" "docker://$image"

# --- one timed pull each ----------------------------------------------------
# Each sets $seconds (not printed: a command substitution would run it in a
# subshell, out of reach of the cleanup trap).
seconds=
peapod_once() {
  local root=$tmp/peapod-$1 start end
  start=$(now)
  "$peapod" --root "$root" pull --quiet "$image" >"$tmp/out" 2>&1 || die "peapod pull failed: $(cat "$tmp/out")"
  end=$(now)
  # A pull that unpacked nothing must not pass for a fast one.
  local unpacked
  unpacked=$(find "$root/layers/sha256" -mindepth 1 -maxdepth 1 -type d | wc -l)
  ((unpacked == layers)) || die "peapod unpacked $unpacked layers, expected $layers"
  rm -rf "$root"
  seconds=$(elapsed "$start" "$end")
}

containerd_once() {
  local dir=$tmp/containerd-$1 start end
  mkdir -p "$dir"
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
EOF
  containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
  containerd_pid=$!
  for _ in $(seq 300); do
    ctr --address "$dir/containerd.sock" version >/dev/null 2>&1 && break
    kill -0 "$containerd_pid" 2>/dev/null || die "containerd exited: $(cat "$dir/log")"
    sleep 0.05
  done
  start=$(now)
  CONTAINERD_SNAPSHOTTER='' ctr --address "$dir/containerd.sock" --namespace bench \
    images pull --plain-http "$image" >"$tmp/out" 2>&1 || die "ctr pull failed: $(cat "$tmp/out")"
  end=$(now)
  local snapshots
  snapshots=$(ctr --address "$dir/containerd.sock" --namespace bench snapshots ls | awk 'NR > 1 && $NF == "Committed"' | wc -l)
  ((snapshots == layers)) || die "containerd unpacked $snapshots layers, expected $layers"
  stop_containerd
  local mnt
  while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done < <(
    awk -v p="$dir/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf "$dir"
  seconds=$(elapsed "$start" "$end")
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

peapod_times=()
containerd_times=()
for run in $(seq "$runs"); do
  sync
  peapod_once "$run"
  t=$seconds
  peapod_times+=("$t")
  sync
  containerd_once "$run"
  c=$seconds
  containerd_times+=("$c")
  printf 'run %d: peapod %ss, containerd %ss\n' "$run" "$t" "$c"
done

p=$(median "${peapod_times[@]}")
c=$(median "${containerd_times[@]}")
echo
printf 'image: %d layers, %s MiB compressed, %d MiB unpacked\n' "$layers" "$image_mib" $((layers * mib_per_layer))
printf 'peapod pull      median %ss  (%s)\n' "$p" "${peapod_times[*]}"
printf 'ctr images pull  median %ss  (%s)\n' "$c" "${containerd_times[*]}"
awk -v p="$p" -v c="$c" 'BEGIN { printf "ratio peapod/containerd: %.2f (%s)\n", p / c, (p <= c ? "peapod as fast or faster" : "peapod slower") }'
