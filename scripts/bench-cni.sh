#!/usr/bin/env bash
# Times the same CNI workload against peapod's plugins (peapod-bridge +
# peapod-host-local) and the reference ones (bridge + host-local from Debian's
# containernetworking-plugins) in one run: N sequential ADDs then DELs, and K
# concurrent ADDs then DELs, with ipMasq on. Prints median and p90 per
# operation and the ratio peapod/reference.
#
#   scripts/bench-cni.sh [N] [K]        (default 50 20)
#
# Safety: the plugins run inside a private "host" network namespace made
# here (no uplink, only lo): the bridge, the veths' host ends, the ipMasq
# rules and ip_forward all live there, and pods are namespaces made here too.
# No packet leaves those namespaces; all of them are removed on exit.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_root

n=${1:-50}
k=${2:-20}
ref_dir=/usr/lib/cni
[[ -x $ref_dir/bridge && -x $ref_dir/host-local ]] || die "reference plugins missing: apt-get install containernetworking-plugins"

ours_dir=${PEAPOD_CNI_DIR:-}
if [[ -z $ours_dir ]]; then
  ensure_cargo
  log "cargo build --release -p peapod-cni"
  (cd "$PEAPOD_ROOT" && cargo build --release -p peapod-cni)
  ours_dir=$(target_dir)/release
fi
[[ -x $ours_dir/peapod-bridge && -x $ours_dir/peapod-host-local ]] || die "no peapod-bridge/peapod-host-local in $ours_dir"

tag=ppb$$
host=$tag-host
tmp=$(mktemp -d)
pods=()
cleanup() {
  local p
  for p in "${pods[@]}"; do ip netns delete "$p" 2>/dev/null || true; done
  ip netns delete "$host" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$host"
ip netns exec "$host" ip link set lo up
for ((i = 0; i < (n > k ? n : k); i++)); do
  pods+=("$tag-$i")
  ip netns add "$tag-$i"
done

# config NAME BRIDGE IPAM-TYPE SUBNET
config() {
  cat <<JSON
{"cniVersion":"1.0.0","name":"$1","type":"$2","bridge":"$3","isGateway":true,"ipMasq":true,
 "ipam":{"type":"$4","subnet":"$5","dataDir":"$tmp/ipam-$1"}}
JSON
}

now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$((10#$t))"; }

# call CNI_PATH CONFIG VERB POD: one plugin invocation from inside the host namespace.
call() {
  local path=$1 conf=$2 verb=$3 pod=$4 plugin
  plugin=$(sed -n 's/.*"type":"\([^"]*\)","bridge".*/\1/p' <<<"$conf")
  CNI_COMMAND=$verb CNI_CONTAINERID=$pod CNI_NETNS=/run/netns/$pod CNI_IFNAME=eth0 CNI_PATH=$path \
    ip netns exec "$host" "${path%%:*}/$plugin" <<<"$conf" >"$tmp/out.$pod" 2>&1 ||
    die "$plugin $verb $pod failed: $(cat "$tmp/out.$pod")"
}

# bench LABEL CNI_PATH BRIDGE-TYPE IPAM-TYPE SUBNET: appends timings to $tmp/LABEL.*
bench() {
  local label=$1 path=$2 bridge_type=$3 ipam=$4 subnet=$5 conf i t0 t1
  conf=$(config "$label" "$bridge_type" "$tag${label:0:1}0" "$ipam" "$subnet" | tr -d '\n')
  for ((i = 0; i < n; i++)); do
    t0=$(now_us); call "$path" "$conf" ADD "$tag-$i"; t1=$(now_us)
    echo $((t1 - t0)) >>"$tmp/$label.add"
  done
  for ((i = 0; i < n; i++)); do
    t0=$(now_us); call "$path" "$conf" DEL "$tag-$i"; t1=$(now_us)
    echo $((t1 - t0)) >>"$tmp/$label.del"
  done
  t0=$(now_us)
  for ((i = 0; i < k; i++)); do call "$path" "$conf" ADD "$tag-$i" & done
  wait
  t1=$(now_us)
  echo $((t1 - t0)) >>"$tmp/$label.par_add"
  t0=$(now_us)
  for ((i = 0; i < k; i++)); do call "$path" "$conf" DEL "$tag-$i" & done
  wait
  t1=$(now_us)
  echo $((t1 - t0)) >>"$tmp/$label.par_del"
}

# stat FILE P: the P-th percentile (50 = median) in ms.
stat() {
  sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int((NR * p + 99) / 100); if (i < 1) i = 1; printf "%.2f", v[i] / 1000 }'
}

log "reference: $ref_dir (bridge + host-local); peapod: $ours_dir (peapod-bridge + peapod-host-local)"
log "workload: $n sequential ADD then DEL, $k concurrent ADD then DEL, ipMasq on, in netns $host"
bench reference "$ref_dir" bridge host-local 10.251.0.0/16
bench peapod "$ours_dir:$ref_dir" peapod-bridge peapod-host-local 10.252.0.0/16

printf '\n%-22s %12s %12s %12s %12s %8s\n' operation "ref median" "ref p90" "peapod med" "peapod p90" ratio
for op in add del par_add par_del; do
  case $op in
    add) name="ADD (sequential)" ;; del) name="DEL (sequential)" ;;
    par_add) name="$k concurrent ADD" ;; par_del) name="$k concurrent DEL" ;;
  esac
  rm=$(stat "$tmp/reference.$op" 50); rp=$(stat "$tmp/reference.$op" 90)
  pm=$(stat "$tmp/peapod.$op" 50); pp=$(stat "$tmp/peapod.$op" 90)
  printf '%-22s %10s ms %10s ms %10s ms %10s ms %8.2f\n' "$name" "$rm" "$rp" "$pm" "$pp" "$(awk -v a="$pm" -v b="$rm" 'BEGIN { print a / b }')"
done
