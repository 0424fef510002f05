# shellcheck shell=bash
# Shared helpers for peapod's scripts; source it, don't run it.
# Expects the caller to have `set -euo pipefail`.

# The repository root (the directory above scripts/).
PEAPOD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
  [[ $(id -u) -eq 0 ]] || die "$(basename "$0") must run as root (it runs containers and installs packages)"
}

# Installs the given Debian packages that are not installed yet.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Makes cargo available: the one on PATH, else a rustup install in
# ~/.cargo, else Debian's cargo package as a last resort (it may be older
# than the workspace's rust-version; then the build says so).
ensure_cargo() {
  if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    log "cargo not found: installing Debian's Rust toolchain"
    ensure_packages cargo rustc rustfmt rust-clippy
  fi
}

# Debian packages that building the workspace needs: a C toolchain (the
# `cc` crate), plus pkg-config and libseccomp-dev once a crate links libseccomp.
build_packages() {
  local pkgs=(build-essential ca-certificates)
  if grep -q '^name = "libseccomp' "$PEAPOD_ROOT/Cargo.lock" 2>/dev/null; then
    pkgs+=(pkg-config libseccomp-dev)
  fi
  printf '%s\n' "${pkgs[@]}"
}

# The cargo target directory (honours CARGO_TARGET_DIR).
target_dir() {
  local dir=${CARGO_TARGET_DIR:-$PEAPOD_ROOT/target}
  [[ $dir == /* ]] || dir=$PEAPOD_ROOT/$dir
  printf '%s\n' "$dir"
}

# The runtime binary: $PEAPOD_RUNTIME, else the release build, else
# peapod-runtime on PATH. Prints nothing if none exists.
runtime_binary() {
  local candidate
  for candidate in "${PEAPOD_RUNTIME:-}" "$(target_dir)/release/peapod-runtime" "$(command -v peapod-runtime || true)"; do
    if [[ -n $candidate && -x $candidate ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
}
