#!/usr/bin/env bash
# Installs everything Skiff needs to build, test and benchmark, from Debian 12's packages.
# Idempotent: packages already present are skipped; V8 is extracted once into third_party/v8.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang-14 libclang-rt-14-dev lld-14 clang-format clang-tidy
  # libraries
  libssl-dev libprotobuf-dev zlib1g-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc libyaml-cpp-dev
  libspdlog-dev libfmt-dev libasio-dev libre2-dev libc-ares-dev libnghttp2-dev libnftnl-dev libmnl-dev
  libluajit2-5.1-dev libgtest-dev libgmock-dev libbenchmark-dev
  # V8 runtime dependencies (libnode108 is extracted, not installed; see below)
  libicu72 libuv1 libc-ares2 libbrotli1
  # test peers and tools
  python3 python3-pytest python3-yaml python3-httpbin gunicorn haproxy nginx-light wrk curl nghttp2-client nghttp2-server
  openssl nftables iproute2 procps util-linux
  # benchmark-only: instruction counts per request (bench/*_overhead, --instructions); arena dumps (bench/xds_arenas.py)
  valgrind gdb
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The test peers must not keep running as system services: tests start their own.
  for svc in haproxy nginx; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# V8 10.2 from Debian's libnode108. The machine's Node.js 20 conflicts with libnode108, so unless Debian's
# libnode-dev is installed system-wide we extract both packages into third_party/v8 (see DESIGN.md).
v8_dir=third_party/v8
if dpkg-query -W -f='${Status}' libnode-dev 2>/dev/null | grep -q 'install ok installed'; then
  echo "install-deps: using system libnode-dev"
elif [ ! -f "$v8_dir/usr/include/node/v8.h" ] || [ ! -e "$v8_dir/usr/lib/x86_64-linux-gnu/libnode.so.108" ]; then
  echo "install-deps: extracting V8 from libnode108 into $v8_dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download libnode108 libnode-dev >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq && apt-get download libnode108 libnode-dev; })
  mkdir -p "$v8_dir"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$v8_dir"; done
fi
echo "install-deps: done"
