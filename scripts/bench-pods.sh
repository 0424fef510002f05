#!/usr/bin/env bash
# Times pods from `peapod apply` to Running on a kubelet of its own, and
# measures the kubelet at rest with many pods; prints the figures.
#
#   scripts/bench-pods.sh [RUNS] [PODS]        (default 10 runs, 30 pods)
#
# 1. one pod, RUNS times: apply a one-container busybox pod, time until the
#    kubelet reports it Running with its container ready, delete it;
# 2. PODS pods at once: one `peapod apply -f DIR`, each pod timed from that
#    apply to its Running;
# 3. with those PODS pods running, the kubelet's RSS and CPU time over 60 idle
#    seconds (/proc/<pid>/status VmRSS, /proc/<pid>/stat utime+stime).
# 4. PODS web pods, each with a startup, a liveness (httpGet) and a readiness
#    (tcpSocket) probe every second: the kubelet's CPU over 60 s once all are
#    Ready (utime+stime plus its reaped children's, so probe helpers count).
# Times are p50/p99 in ms, measured by polling the kubelet's /pods every 10 ms.
#
# The node is throwaway: manifests, image store (busybox made from
# busybox-static), runtime root, sandboxes, logs and cgroup root in a temp dir,
# and the pod network (bridge, veths, NAT) in a private network namespace, so
# nothing touches the host's network. The binaries are $PEAPOD_BIN, else the
# release build (built if missing). Everything is removed at exit.
#
# Targets (issue 5): one pod Running in under 300 ms p50; kubelet RSS under
# 30 MB with 30 pods. (issue 6): probes of 30 pods under 2% of one core.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_root

runs=${1:-10}
pods=${2:-30}
idle_seconds=${IDLE_SECONDS:-60}
for n in "$runs" "$pods"; do
  if [[ ! $n =~ ^[0-9]+$ ]] || ((n < 1)); then die "RUNS and PODS must be positive numbers"; fi
done
for tool in curl jq ip; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install curl jq iproute2)"
done

bin=${PEAPOD_BIN:-$(target_dir)/release}
if [[ ! -x $bin/peapod-kubelet ]]; then
  ensure_cargo
  log "cargo build --release --workspace --bins"
  (cd "$PEAPOD_ROOT" && cargo build --release --workspace --bins)
fi

tmp=$(mktemp -d /var/tmp/peapod-bench-pods.XXXXXX)
netns=pp-bench-$$
cgroup_root=/pp-bench-$$
kubelet_pid=
sock=$tmp/kubelet.sock

cleanup() {
  set +e
  if [[ -n $kubelet_pid ]]; then
    rm -f "$tmp"/manifests/*
    for _ in $(seq 600); do
      [[ $(pods_json | jq '.items | length') == 0 ]] && break
      sleep 0.1
    done
    kill "$kubelet_pid" 2>/dev/null
    wait "$kubelet_pid" 2>/dev/null
  fi
  ip netns delete "$netns" 2>/dev/null
  local mnt
  while read -r mnt; do umount -l "$mnt" 2>/dev/null; done < <(
    awk -v p="$tmp/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r)
  local dir
  for dir in /sys/fs/cgroup/*"$cgroup_root" /sys/fs/cgroup"$cgroup_root"; do
    [[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

pods_json() { curl -s --max-time 5 --unix-socket "$sock" http://localhost/pods; }
now_ms() { date +%s%3N; }
peapod() { "$bin/peapod" --socket "$sock" --root "$tmp/images" "$@"; }

mkdir -p "$tmp"/{manifests,cni,images,batch}
ip netns add "$netns"
ip -n "$netns" link set lo up
jq -n --arg ipam "$tmp/ipam" '{
  cniVersion: "1.0.0", name: "peapod",
  plugins: [
    {type: "loopback"},
    {type: "peapod-bridge", bridge: "peapod0", isGateway: true, ipMasq: true,
     ipam: {type: "peapod-host-local", subnet: "10.88.0.0/16", dataDir: $ipam}}
  ]}' >"$tmp/cni/10-bench.conflist"
"$PEAPOD_ROOT/scripts/oci-image.sh" "$tmp/busybox.tar" docker.io/library/busybox:latest
peapod image import "$tmp/busybox.tar" >/dev/null

"$bin/peapod-kubelet" --manifests "$tmp/manifests" --socket "$sock" --node-name bench \
  --root "$tmp/images" --runtime-root "$tmp/run" --sandbox-dir "$tmp/sandboxes" \
  --pod-log-dir "$tmp/logs" --cgroup-root "$cgroup_root" --cni-conf-dir "$tmp/cni" \
  --cni-bin-dir "$bin" --cni-bin-dir /usr/lib/cni --cni-bin-dir /opt/cni/bin \
  --cni-cache-dir "$tmp/cni-cache" --cni-netns "/run/netns/$netns" \
  >"$tmp/kubelet.log" 2>&1 </dev/null &
kubelet_pid=$!
for _ in $(seq 100); do
  [[ $(curl -s --unix-socket "$sock" http://localhost/healthz 2>/dev/null) == ok ]] && break
  sleep 0.1
done
[[ -S $sock ]] || die "the kubelet did not start: $(cat "$tmp/kubelet.log")"

pod_yaml() {
  cat <<EOM
apiVersion: v1
kind: Pod
metadata:
  name: $1
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
EOM
}

# Names (node-suffixed) of the pods that are Running with every container ready.
running_pods() {
  pods_json | jq -r '.items[]
    | select(.status.phase == "Running" and ([.status.containerStatuses[]? | .ready] | all))
    | .metadata.name'
}

# p50 and p99 of the numbers on stdin, as "p50 p99".
percentiles() {
  sort -n | awk '{ v[NR] = $1 } END {
    p50 = v[int((NR + 1) / 2)]; i = int(NR * 0.99 + 0.999); if (i > NR) i = NR; if (i < 1) i = 1
    printf "%d %d\n", p50, v[i] }'
}

log "1. one pod, $runs runs"
single=()
for i in $(seq "$runs"); do
  pod_yaml "one-$i" >"$tmp/one.yaml"
  start=$(now_ms)
  peapod apply -f "$tmp/one.yaml" >/dev/null
  until running_pods | grep -qx "one-$i-bench"; do
    (($(now_ms) - start < 30000)) || die "pod one-$i not Running after 30 s: $(tail -5 "$tmp/kubelet.log")"
    sleep 0.01
  done
  single+=($(($(now_ms) - start)))
  peapod delete pod "one-$i-bench" >/dev/null
done
read -r single_p50 single_p99 < <(printf '%s\n' "${single[@]}" | percentiles)
echo "one pod: apply -> Running ms: ${single[*]}"

log "2. $pods pods at once"
for i in $(seq "$pods"); do pod_yaml "many-$i" >"$tmp/batch/many-$i.yaml"; done
declare -A seen=()
start=$(now_ms)
peapod apply -f "$tmp/batch" >/dev/null
while ((${#seen[@]} < pods)); do
  (($(now_ms) - start < 120000)) || die "only ${#seen[@]} of $pods pods Running after 120 s"
  t=$(now_ms)
  while read -r name; do
    [[ -n $name && -z ${seen[$name]:-} ]] && seen[$name]=$((t - start))
  done < <(running_pods)
  sleep 0.01
done
read -r many_p50 many_p99 < <(printf '%s\n' "${seen[@]}" | percentiles)
all_running=$(printf '%s\n' "${seen[@]}" | sort -n | tail -1)

log "3. the kubelet at rest with $pods pods, ${idle_seconds}s"
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$kubelet_pid/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$kubelet_pid/status"; }
ticks0=$(cpu_ticks)
max_rss=0
for _ in $(seq "$idle_seconds"); do
  sleep 1
  rss=$(rss_kb)
  ((rss > max_rss)) && max_rss=$rss
done
ticks1=$(cpu_ticks)
cpu_pct=$(awk -v t=$((ticks1 - ticks0)) -v hz="$hz" -v s="$idle_seconds" 'BEGIN { printf "%.2f", 100 * t / hz / s }')

log "4. $pods web pods with three 1-second probes each, ${idle_seconds}s"
rm -f "$tmp"/manifests/*
for _ in $(seq 600); do
  [[ $(pods_json | jq '.items | length') == 0 ]] && break
  sleep 0.1
done
rm -rf "$tmp/batch" && mkdir -p "$tmp/batch"
for i in $(seq "$pods"); do
  cat >"$tmp/batch/web-$i.yaml" <<EOM
apiVersion: v1
kind: Pod
metadata:
  name: web-$i
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    startupProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1, failureThreshold: 30}
    livenessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
EOM
done
start=$(now_ms)
peapod apply -f "$tmp/batch" >/dev/null
until (($(running_pods | grep -c '^web-') == pods)); do
  (($(now_ms) - start < 120000)) || die "the probed pods are not all Ready after 120 s"
  sleep 0.1
done
all_cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$kubelet_pid/stat"; }
ticks0=$(all_cpu_ticks)
sleep "$idle_seconds"
ticks1=$(all_cpu_ticks)
probe_pct=$(awk -v t=$((ticks1 - ticks0)) -v hz="$hz" -v s="$idle_seconds" 'BEGIN { printf "%.2f", 100 * t / hz / s }')
restarts=$(pods_json | jq '[.items[].status.containerStatuses[]?.restartCount] | add')

cat <<EOM

bench-pods: $(nproc) cpus, release build, images present, pod network in a private netns
  1 pod, apply -> Running:            p50 ${single_p50} ms   p99 ${single_p99} ms   ($runs runs; target p50 < 300 ms)
  $pods pods at once, apply -> Running: p50 ${many_p50} ms   p99 ${many_p99} ms   (all Running after ${all_running} ms)
  kubelet at rest with $pods pods:    RSS max $((max_rss / 1024)) MB ($max_rss kB; target < 30 MB)   CPU ${cpu_pct}% of one core over ${idle_seconds}s
  $pods pods x 3 one-second probes:   kubelet CPU ${probe_pct}% of one core over ${idle_seconds}s (target < 2%; restarts: $restarts)
EOM
