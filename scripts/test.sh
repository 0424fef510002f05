#!/usr/bin/env bash
# Runs every check peapod has, as root on Debian: installs what the tests
# need with apt, then cargo fmt --check, clippy with -D warnings, and
# cargo test --workspace (unit and integration tests; the integration tests
# run real containers). Ends with one PASS or FAIL line.
#
#   scripts/test.sh
#
# PEAPOD_RUNTIME=/usr/sbin/runc scripts/test.sh runs the integration tests
# against another runtime (to check the tests themselves).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_root

step="setup"
started=$SECONDS
finish() {
  local status=$?
  if ((status == 0)); then
    printf '\ntest.sh: PASS (%ss)\n' $((SECONDS - started))
  else
    printf '\ntest.sh: FAIL at %s (exit %s, %ss)\n' "$step" "$status" $((SECONDS - started))
  fi
}
trap finish EXIT

# busybox-static: container rootfs; containernetworking-plugins: the
# reference CNI plugins the interop tests run against; containerd: the drop-in test drives
# peapod-runtime through its runc shim; iproute2: `ip netns` in the namespace
# tests and the CNI plugins; iptables: the CNI plugins' masquerade rules;
# docker-registry, skopeo and apache2-utils (htpasswd): the image tests run a
# loopback registry, push the images they build to it and protect it with a
# password; openssl: the key, certificate and token signatures of the
# token-auth registry's token server and the HTTPS probe tests' server; jq: the
# pod-*.sh debugging scripts read the JSON state with it; shellcheck: their test
# lints them; nftables: the bridge plugins' macspoofchk rules; curl: the kubelet API
# test's HTTPS client with a client certificate.
mapfile -t build_deps < <(build_packages)
ensure_packages busybox-static containerd containernetworking-plugins iproute2 iptables \
  docker-registry skopeo apache2-utils openssl jq shellcheck nftables curl "${build_deps[@]}"
ensure_cargo
# The cluster tests drive the node with the real kubectl; machines without one get
# Debian's (older, SPDY-only) kubernetes-client.
command -v kubectl >/dev/null || ensure_packages kubernetes-client

cd "$PEAPOD_ROOT"
run_step() {
  step=$1
  shift
  log "$step: $*"
  "$@"
}
run_step "format" cargo fmt --all --check
run_step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests run target/<profile>/peapod-runtime, which
# `cargo test` does not build for another package's tests.
run_step "build" cargo build --workspace --bins --locked
run_step "test" cargo test --workspace --locked
