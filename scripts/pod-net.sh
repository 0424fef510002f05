#!/usr/bin/env bash
# Shows a pod's network as the host sees it, with the commands that find each
# piece: its network namespace, the pod's interfaces, addresses and routes, the
# veth pair into the host, the bridge, and the NAT and anti-spoofing rules CNI
# added for the pod. Reads the host directly (no kubelet needed).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: pod-net.sh POD [-n NAMESPACE]

Prints the network of POD: its netns (path and inode), interfaces, addresses
and routes inside the pod, the veth pair (the pod's eth0 and the host-side
peer), the bridge the peer is on with the bridge's addresses, the pod IP, the
iptables masquerade rules CNI made for the pod (chains CNI-<hash>, commented
'name: "<network>" id: "<sandbox>"') and its nftables MAC-spoof check, if any.

The host side is the network namespace the script runs in; to look at a
test's private "host" namespace, run it there with `ip netns exec HOSTNS`.

Options:
  -n, --namespace NS   the pod's namespace (default: default)
  -h, --help           this help

Examples:
  pod-net.sh web
  pod-net.sh web -n shop
  ip netns exec my-host-ns pod-net.sh web

Environment: PEAPOD_STATE_DIR and PEAPOD_NETNS_DIR override where the
sandboxes and the netns pins are.
USAGE
}

# shellcheck source=scripts/pod-lib.sh
source "$(dirname "$0")/pod-lib.sh"

namespace=default pod=""
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --namespace) need_value "$1" $#; namespace=$2; shift ;;
    -*) usage_error "unknown option $1" ;;
    *) [[ -z $pod ]] || usage_error "one pod at a time (got $pod and $1)"; pod=$1 ;;
  esac
  shift
done
[[ -n $pod ]] || usage_error "which pod?"

dir=$(sandbox_dir "$namespace" "$pod")
sandbox=$(basename "$dir")
netns=$(netns_path "$dir")
[[ -e $netns ]] || fail "pod \"$pod\": its network namespace $netns is gone"

# Commands inside the pod's netns. nsenter takes any pin path, where
# `ip -n NAME` only knows /run/netns.
in_pod() { nsenter --net="$netns" -- "$@"; }
section() { printf '\n== %s\n' "$1"; }
indent() { sed 's/^/  /'; }

printf 'pod:      %s/%s (uid %s)\n' "$namespace" "$pod" "$(json "$dir/sandbox.json" '.config.uid')"
printf 'sandbox:  %s\n' "$sandbox"
printf 'netns:    %s (inode %s)\n' "$netns" "$(stat -L -c %i "$netns")"

# The record has the IP CNI gave; fall back to eth0's for a pod whose record
# was written before the network came up.
ip_addr=$(json "$dir/sandbox.json" '.ip')
[[ -n $ip_addr ]] || ip_addr=$(in_pod ip -j addr show dev eth0 2>/dev/null |
  jq -r '[.[0].addr_info[]? | select(.scope == "global") | .local][0] // empty')
printf 'pod IP:   %s\n' "${ip_addr:-(none)}"

section "interfaces in the pod (ip -br addr)"
in_pod ip -br addr | indent
section "routes in the pod (ip route)"
in_pod ip route | indent
in_pod ip -6 route 2>/dev/null | grep -v '^fe80::/64' | indent || true

# eth0 is one end of a veth pair: its link_index is the ifindex of the peer
# in the namespace the peer lives in, the host's. Check the candidate points
# back at eth0, so an unrelated link with that index elsewhere is not shown.
section "veth pair"
eth0=$(in_pod ip -j -d link show dev eth0 2>/dev/null || echo '[]')
eth0_index=$(jq -r '.[0].ifindex // empty' <<<"$eth0")
peer_index=$(jq -r '.[0].link_index // empty' <<<"$eth0")
host_veth="" bridge=""
if [[ -z $eth0_index ]]; then
  echo "  the pod has no eth0 (not attached to a network yet?)"
elif [[ -z $peer_index ]]; then
  echo "  eth0 (ifindex $eth0_index) has no peer: kind $(jq -r '.[0].linkinfo.info_kind // "unknown"' <<<"$eth0")"
else
  peer=$(ip -j -d link show 2>/dev/null |
    jq -c --argjson i "$peer_index" --argjson e "$eth0_index" \
      '[.[] | select(.ifindex == $i and .link_index == $e and .linkinfo.info_kind == "veth")][0] // empty')
  if [[ -n $peer ]]; then
    host_veth=$(jq -r '.ifname' <<<"$peer")
    bridge=$(jq -r '.master // empty' <<<"$peer")
    printf '  pod:  eth0 (ifindex %s, mac %s)\n' "$eth0_index" "$(jq -r '.[0].address' <<<"$eth0")"
    printf '  host: %s (ifindex %s, mac %s)\n' "$host_veth" "$peer_index" "$(jq -r '.address' <<<"$peer")"
  else
    printf '  pod:  eth0 (ifindex %s); its peer (ifindex %s) is not in this network namespace\n' "$eth0_index" "$peer_index"
    echo "  (run this script in the namespace the pod's bridge is in: ip netns exec HOSTNS $0 ...)"
  fi
fi

section "bridge"
if [[ -n $bridge ]]; then
  printf '  %s, addresses: %s\n' "$bridge" \
    "$(ip -j addr show dev "$bridge" | jq -r '[.[0].addr_info[]? | select(.scope == "global") | "\(.local)/\(.prefixlen)"] | join(" ")')"
  printf '  ports: %s\n' "$(ip -o link show master "$bridge" | awk -F': ' '{sub(/@.*/, "", $2); printf "%s ", $2}')"
else
  echo "  (none found: ${host_veth:-no host-side veth}${host_veth:+ is on no bridge})"
fi

# CNI's masquerade rules carry the comment 'name: "<net>" id: "<sandbox>"':
# the jump from POSTROUTING names the pod's CNI-<hash> chain.
section "masquerade (iptables -t nat)"
found=false
for tool in iptables ip6tables; do
  command -v "$tool" >/dev/null || continue
  rules=$("$tool" -w -t nat -S 2>/dev/null | grep -F "id: \\\"$sandbox\\\"" || true)
  [[ -n $rules ]] || continue
  found=true
  # The jumps into the pod's chains, then each chain whole.
  grep -v -- '^-A CNI-' <<<"$rules" | sed "s/^/  $tool: /" || true
  while read -r chain; do
    printf '  %s chain %s:\n' "$tool" "$chain"
    "$tool" -w -t nat -S "$chain" | grep -v -- '^-N ' | indent | indent
  done < <(grep -o 'CNI-[0-9a-f]*' <<<"$rules" | sort -u)
done
$found || echo "  (no rules for $sandbox)"

# The bridge plugin's macspoofchk rules sit in table `bridge nat`: a jump
# from PREROUTING for the host-side veth into chains named after the sandbox
# and interface (cni-br-iface-<sandbox>-eth0[-mac]). Print those chains whole.
section "MAC spoof check (nft table bridge nat)"
spoof=""
if command -v nft >/dev/null; then
  spoof=$(nft list table bridge nat 2>/dev/null |
    awk -v chains="cni-br-iface-$sandbox-" -v comment="macspoofchk-$sandbox-" '
      /^[[:space:]]*chain / { inside = index($2, chains) == 1 }
      /^}/ { inside = 0 }
      inside || index($0, comment) { print }' || true)
fi
if [[ -n $spoof ]]; then printf '%s\n' "$spoof" | sed 's/\t/  /g' | grep -v '^$' | indent; else echo "  (none)"; fi
