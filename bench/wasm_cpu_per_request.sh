#!/bin/sh
# Kept for its old command line: the direct_response case of bench/wasm_bench.py (no filter vs the documents'
# Wasm filter, measured side by side). bench/wasm_bench.py also runs the upstream case and the native variant.
# Usage: bench/wasm_cpu_per_request.sh [build dir] [seconds] [rounds]
set -eu
exec python3 "$(dirname "$0")/wasm_bench.py" --build "${1:-$(dirname "$0")/../build}" -d "${2:-6}" \
  --rounds "${3:-3}" --modes direct --variants wasm
