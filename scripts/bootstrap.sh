#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets up a fresh Debian 12 machine (as root) for kernmesh, and is a no-op
# when everything is already there: system packages, Node 24, npm packages,
# then the full build (BPF object -> skeleton -> addon, and the TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1mbootstrap:\033[0m %s\n' "$*"; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and the datapath needs CAP_BPF): sudo $0"

# --- system packages ---------------------------------------------------------
# clang/llvm: BPF C; libbpf-dev + pkg-config + cmake + g++: the addon;
# bpftool: vmlinux.h and the skeleton; iptables/iproute2: the baseline mode
# and test namespaces; redis-server: the control plane's store;
# util-linux: nsenter; haproxy + wrk: the benchmarks' reference and load;
# curl, h2load (nghttp2-client) and openssl: the tests' HTTP clients and TLS certificates;
# python3-minimal: the tests' listener that never accepts (an endpoint whose connects hang).
PACKAGES=(clang llvm libbpf-dev bpftool pkg-config cmake make g++ iptables iproute2 util-linux redis-server haproxy wrk nghttp2-client iperf3 librsvg2-bin curl ca-certificates openssl python3-minimal)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Node 24 ----------------------------------------------------------------
# The npm registry's node@24 package carries the official binary; installed
# into /usr/local, which precedes /usr/bin on PATH.
export PATH="/usr/local/bin:$PATH"
hash -r
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 24 ]; then
  log "installing Node 24 into /usr/local (found $(node -v 2>/dev/null || echo none))"
  npm install -g --prefix /usr/local --no-audit --no-fund node@24 >/dev/null 2>&1 || die "npm install -g node@24 failed"
  hash -r
  [ "$(node_major)" -ge 24 ] || die "Node 24 did not install: $(command -v node) is $(node -v)"
fi
log "node $(node -v) at $(command -v node)"

# --- npm packages -------------------------------------------------------------
# npm ci only when the lockfile or package.json changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
fi

# --- build ---------------------------------------------------------------------
log "building BPF object, native addon and TypeScript"
mkdir -p build
if ! npm run --silent build:native >build/native-build.log 2>&1; then
  cat build/native-build.log >&2
  die "native build failed (log above)"
fi
npm run --silent build:ts
log "ready"
