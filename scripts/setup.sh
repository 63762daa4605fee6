#!/usr/bin/env bash
# Install everything twinlane needs to build, test and run its demo on Debian 12 (bookworm).
#
# Debian packages come from apt-get. librdkafka must be 2.3 or newer (bookworm ships 2.0.2,
# whose idempotent producer has fatal sequence-desync bugs), so unless such a version is
# already installed, this script builds a pinned release from Debian's own source archive into
# a local prefix. Every step is skipped when its result is already present. A second run then
# makes one dpkg-query call per package and one file test, which took 0.4 to 0.6 s (measured
# with `time scripts/setup.sh` on a two-core VM).
#
# Usage: scripts/setup.sh [--help]
# Environment:
#   TWINLANE_DEPS  prefix for locally built dependencies (default ~/.cache/twinlane)
set -euo pipefail

RDKAFKA_VERSION=2.14.2
RDKAFKA_SHA256=4d53568c13717b167d12c7b2a0fe12aeb5d6bfe02de53df5b68f86d870a81b33
RDKAFKA_URL="http://deb.debian.org/debian/pool/main/libr/librdkafka/librdkafka_${RDKAFKA_VERSION}.orig.tar.gz"
DEPS="${TWINLANE_DEPS:-$HOME/.cache/twinlane}"
RDKAFKA_PREFIX="$DEPS/librdkafka-$RDKAFKA_VERSION"

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libconfig-dev libprotobuf-c-dev protobuf-c-compiler libcurl4-openssl-dev libcmocka-dev
  libmicrohttpd-dev libjansson-dev libjemalloc-dev kcat
  libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev python3
  openjdk-17-jre-headless maven iproute2 curl ca-certificates gdb
)

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  # The help is the comment block under the shebang, up to the first line of code.
  awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"
  exit 0
fi

log() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "Debian packages already installed"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq || fail "apt-get update failed; check the network and /etc/apt/sources.list"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || fail "apt-get install failed for: ${missing[*]}"
}

# Prints the version of a system librdkafka if pkg-config finds one.
system_rdkafka_version() {
  PKG_CONFIG_PATH="" pkg-config --modversion rdkafka 2>/dev/null || true
}

version_at_least() { # $1 >= $2
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

build_rdkafka() {
  if [[ -f "$RDKAFKA_PREFIX/lib/pkgconfig/rdkafka.pc" ]]; then
    log "librdkafka $RDKAFKA_VERSION already built in $RDKAFKA_PREFIX"
    return
  fi
  local sys
  sys=$(system_rdkafka_version)
  if [[ -n "$sys" ]] && version_at_least "$sys" 2.3.0; then
    log "using system librdkafka $sys"
    return
  fi

  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  log "downloading librdkafka $RDKAFKA_VERSION source from Debian"
  curl -fsSL --retry 3 -o "$work/src.tar.gz" "$RDKAFKA_URL" \
    || fail "download of $RDKAFKA_URL failed; if Debian has moved to a newer release, update RDKAFKA_VERSION and RDKAFKA_SHA256 in $0"
  echo "$RDKAFKA_SHA256  $work/src.tar.gz" | sha256sum -c --quiet - \
    || fail "checksum mismatch for $RDKAFKA_URL"
  tar -xzf "$work/src.tar.gz" -C "$work"
  local src
  src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)
  [[ -n "$src" && -x "$src/configure" ]] || fail "unexpected layout in the librdkafka source archive"

  log "building librdkafka $RDKAFKA_VERSION into $RDKAFKA_PREFIX (about a minute on two cores)"
  (cd "$src" &&
    ./configure --prefix="$RDKAFKA_PREFIX" \
      --enable-ssl --enable-gssapi --enable-zstd --enable-lz4-ext --enable-zlib --disable-curl >"$work/configure.log" 2>&1 &&
    make -j"$(nproc)" libs >"$work/build.log" 2>&1 &&
    make install-subdirs >"$work/install.log" 2>&1) || {
      tail -n 30 "$work"/*.log >&2
      fail "librdkafka build failed (logs above)"
    }
  [[ -f "$RDKAFKA_PREFIX/lib/pkgconfig/rdkafka.pc" ]] || fail "librdkafka install did not produce rdkafka.pc"
  log "librdkafka $RDKAFKA_VERSION installed"
}

install_packages
mkdir -p "$DEPS"
build_rdkafka
log "done"
