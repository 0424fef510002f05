#!/usr/bin/env bash
# The peapod journey on this machine, no cluster and no registry needed: builds
# peapod, installs it, imports a busybox image made from Debian's busybox-static,
# starts peapod-kubelet, runs examples/web.yaml (a busybox web server and a
# sidecar), lists it with its IP, fetches its page from that IP, shows its logs
# and runs a command in it. Run as root on Debian; installs what it needs with apt.
#
#   scripts/quickstart.sh          # run the journey (the kubelet and pod keep running)
#   scripts/quickstart.sh stop     # delete the pod and stop the kubelet
#
# What it installs:
#   /usr/local/bin/{peapod,peapod-kubelet,peapod-runtime,peapod-shim}
#   /opt/cni/bin/{peapod-bridge,peapod-host-local}
#   /etc/cni/net.d/10-peapod.conflist   (only if /etc/cni/net.d has no config)
#   /etc/peapod/manifests/              (the kubelet's static pods folder)
#
# Environment:
#   PEAPOD_NETNS=NAME  run the pod network in network namespace NAME (made if
#                      missing) instead of the host's own: the bridge, veths and
#                      NAT rules go there, and the page is fetched from there.
#   PEAPOD_BIN=DIR     use the binaries in DIR instead of building them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

readonly BIN=/usr/local/bin
readonly CNI_BIN=/opt/cni/bin
readonly CNI_CONF=/etc/cni/net.d
readonly MANIFESTS=/etc/peapod/manifests
readonly SOCKET=/run/peapod/kubelet.sock
readonly PIDFILE=/run/peapod/kubelet.pid
readonly KUBELET_LOG=/var/log/peapod-kubelet.log
readonly IMAGE=docker.io/library/busybox:latest

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

# Shows a command (on stderr, so it stays visible when stdout is redirected),
# then runs it.
show() {
  printf '\n$ %s\n' "$*" >&2
  "$@"
}

kubelet_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [[ -n $pid && -d /proc/$pid ]] && grep -q peapod-kubelet "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

stop() {
  local pid node
  node=$(hostname | tr '[:upper:]' '[:lower:]')
  if pid=$(kubelet_pid); then
    show peapod delete pod "web-$node" --ignore-not-found || true
    log "stopping peapod-kubelet (pid $pid)"
    kill "$pid"
    while [[ -d /proc/$pid ]]; do sleep 0.1; done
    rm -f "$PIDFILE"
  else
    log "peapod-kubelet is not running"
  fi
  rm -f "$MANIFESTS/web.yaml"
}

case ${1:-} in
  -h | --help) usage; exit 0 ;;
  stop) require_root; stop; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac
require_root

log "1. packages: busybox-static (the image's content), iproute2, iptables, the reference CNI loopback plugin, jq, curl"
mapfile -t build_deps < <(build_packages)
ensure_packages busybox-static iproute2 iptables containernetworking-plugins jq curl "${build_deps[@]}"

log "2. build and install peapod"
if [[ -n ${PEAPOD_BIN:-} ]]; then
  bin_dir=$PEAPOD_BIN
else
  ensure_cargo
  (cd "$PEAPOD_ROOT" && cargo build --release --workspace --bins)
  bin_dir=$(target_dir)/release
fi
install -d "$BIN" "$CNI_BIN" "$CNI_CONF" "$MANIFESTS"
for b in peapod peapod-kubelet peapod-runtime peapod-shim; do
  install -m 0755 "$bin_dir/$b" "$BIN/$b"
done
for b in peapod-bridge peapod-host-local; do
  install -m 0755 "$bin_dir/$b" "$CNI_BIN/$b"
done
if ! ls "$CNI_CONF"/*.conf "$CNI_CONF"/*.conflist "$CNI_CONF"/*.json >/dev/null 2>&1; then
  # peapod's default network: bridge peapod0, pods in 10.88.0.0/16.
  "$BIN/peapod-kubelet" --print-default-cni-config >"$CNI_CONF/10-peapod.conflist"
  log "installed $CNI_CONF/10-peapod.conflist"
fi

log "3. import a busybox image (made here from busybox-static: no registry)"
archive=$(mktemp --suffix=.tar)
trap 'rm -f "$archive"' EXIT
"$PEAPOD_ROOT/scripts/oci-image.sh" "$archive" "$IMAGE"
show peapod image import "$archive"

log "4. start peapod-kubelet (manifests: $MANIFESTS, API: $SOCKET, log: $KUBELET_LOG)"
if pid=$(kubelet_pid); then
  log "already running (pid $pid)"
else
  kubelet_args=(--manifests "$MANIFESTS" --socket "$SOCKET")
  if [[ -n ${PEAPOD_NETNS:-} ]]; then
    [[ -e /run/netns/$PEAPOD_NETNS ]] || { ip netns add "$PEAPOD_NETNS"; ip -n "$PEAPOD_NETNS" link set lo up; }
    kubelet_args+=(--cni-netns "/run/netns/$PEAPOD_NETNS")
  fi
  mkdir -p "$(dirname "$PIDFILE")"
  nohup "$BIN/peapod-kubelet" "${kubelet_args[@]}" >>"$KUBELET_LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 100); do
    [[ -S $SOCKET ]] && break
    sleep 0.1
  done
  [[ -S $SOCKET ]] || die "peapod-kubelet did not start; see $KUBELET_LOG"
fi

log "5. run a pod: a web server and a sidecar"
show peapod apply -f "$PEAPOD_ROOT/examples/web.yaml"
pod=web-$(hostname | tr '[:upper:]' '[:lower:]')
for _ in $(seq 100); do
  phase=$(peapod get pod "$pod" -o json 2>/dev/null | jq -r '.status.phase // empty' || true)
  [[ $phase == Running ]] && break
  sleep 0.1
done
[[ ${phase:-} == Running ]] || die "pod $pod is not running (phase: ${phase:-none}); see $KUBELET_LOG and: peapod describe pod $pod"
show peapod get pods -o wide
ip=$(peapod get pod "$pod" -o json | jq -r .status.podIP)

log "6. fetch the page from the pod's IP"
fetch=(curl -s "http://$ip:8080/")
[[ -z ${PEAPOD_NETNS:-} ]] || fetch=(ip netns exec "$PEAPOD_NETNS" "${fetch[@]}")
show "${fetch[@]}"

log "7. logs and a command inside the pod"
sleep 1
show peapod logs "$pod" -c web
show peapod exec "$pod" -c web -- hostname

cat <<EOM

quickstart: done. The pod keeps running; try:
  peapod describe pod $pod
  peapod exec -it $pod -c web -- sh
  peapod port-forward pod/$pod 8080:8080     # then: curl http://127.0.0.1:8080/
  scripts/pod-net.sh $pod                     # its netns, veth, bridge and NAT rules
Stop everything with:
  scripts/quickstart.sh stop
EOM
