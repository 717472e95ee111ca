#!/usr/bin/env bash
# Installs, builds and runs every test: unit and integration suites (build/), the same suites built with
# ASan+UBSan by clang (build-asan/), and a short run of each libFuzzer target.
# Options (environment): SKIFF_SKIP_ASAN=1 skips the sanitizer pass; SKIFF_FUZZ_SECONDS (default 20) per target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

echo "== build (gcc, RelWithDebInfo)"
bash scripts/build.sh build
echo "== tests"
(cd build && ctest --output-on-failure -j2 --timeout 600)

if [ "${SKIFF_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (clang, ASan+UBSan, libFuzzer targets)"
  bash scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DSKIFF_SANITIZE=ON -DSKIFF_FUZZ=ON -DSKIFF_BENCH=OFF
  echo "== tests under ASan+UBSan"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
  (cd build-asan && ctest --output-on-failure -j2 --timeout 900)

  echo "== fuzzing (${SKIFF_FUZZ_SECONDS:-20}s per target)"
  for target in build-asan/bin/fuzz_*; do
    [ -x "$target" ] || continue
    name=$(basename "$target")
    area=tests/fuzz/$(echo "$name" | sed -E 's/^fuzz_([a-z0-9]+)_.*/\1/')
    work=$(mktemp -d)
    [ -d "$area/corpus" ] && cp -r "$area/corpus"/. "$work"/
    dict=()
    for d in "$area"/*.dict; do [ -f "$d" ] && dict=(-dict="$d"); done
    echo "-- $name"
    "$target" "${dict[@]}" -max_total_time="${SKIFF_FUZZ_SECONDS:-20}" -print_final_stats=1 "$work" 2>&1 | tail -n 4
    rm -rf "$work"
  done
fi
echo "== all tests passed"
