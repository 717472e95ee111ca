#!/bin/sh
# Proxy CPU time per request with no filter vs the documents' Wasm filter (tests/wasm/demo_filter.c on V8):
# one worker, keep-alive, direct_response route (no backend in the measurement). CPU is the proxy's
# utime+stime from /proc around a wrk run, so other load on the machine inflates it less than req/s, but
# a shared machine is still noisy: run it on a quiet one for figures to publish.
# Usage: bench/wasm_cpu_per_request.sh [build dir] [seconds] [rounds]
set -eu
BUILD=${1:-$(dirname "$0")/../build}
SECS=${2:-6}
ROUNDS=${3:-3}
WASM=$(realpath "$BUILD/wasm/demo_filter.wasm")
SKIFF=$(realpath "$BUILD/bin/skiff")
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
PORT=18777
config() {  # $1 = extra http_filters entries
  cat <<YAML
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: $PORT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "ok" } } }]
          http_filters:
$1
          - name: envoy.filters.http.router
YAML
}
WASM_FILTER="          - name: my-wasm-filter
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: my-wasm-filter
                configuration: { \"@type\": type.googleapis.com/google.protobuf.StringValue, value: User-Agent }
                vm_config: { runtime: envoy.wasm.runtime.v8, code: { local: { filename: $WASM } } }"
config "" > "$DIR/plain.yaml"
config "$WASM_FILTER" > "$DIR/wasm.yaml"
HZ=$(getconf CLK_TCK)
run() {  # $1 = label, $2 = config
  "$SKIFF" -c "$2" --concurrency 1 -l warn > "$DIR/$1.log" 2>&1 &
  pid=$!
  i=0; until curl -s -o /dev/null "http://127.0.0.1:$PORT/" || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
  wrk -t1 -c20 -d2s "http://127.0.0.1:$PORT/" > /dev/null  # warm-up (VM start, V8 tier-up)
  r=0
  while [ $r -lt "$ROUNDS" ]; do
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    n=$(wrk -t1 -c20 -d"${SECS}s" "http://127.0.0.1:$PORT/" | awk '/requests in/ {print $1}')
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    python3 -c "print('$1: %.2f us CPU/request (%d requests)' % (($t1-$t0)/$HZ/$n*1e6, $n))"
    r=$((r+1))
  done
  kill $pid; wait $pid 2>/dev/null || true
}
run no-filter "$DIR/plain.yaml"
run wasm-demo "$DIR/wasm.yaml"
