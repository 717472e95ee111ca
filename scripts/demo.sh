#!/usr/bin/env bash
# Installs, builds and runs the demo: Skiff (examples/demo.envoy.yaml) in front of a local httpbin.
# Shows one proxied request and the admin stats, then keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

/usr/bin/python3 -m gunicorn -b 127.0.0.1:8000 -k gthread --threads 8 --log-level warning httpbin:app &
pids+=($!)
build/bin/skiff -c examples/demo.envoy.yaml --concurrency 2 &
pids+=($!)

wait_for() {  # url
  for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "demo: $1 did not come up" >&2
  return 1
}
wait_for http://127.0.0.1:8000/get
wait_for http://127.0.0.1:15000/ready

echo
echo "== A request through Skiff: curl -s http://127.0.0.1:10000/headers?show_env=1"
curl -s "http://127.0.0.1:10000/headers?show_env=1"
echo
echo "== Admin stats: curl -s 'http://127.0.0.1:15000/stats?filter=^(cluster.httpbin.upstream_(rq|cx)_total|http.ingress_http.downstream_rq_(total|2xx))$'"
curl -s 'http://127.0.0.1:15000/stats?filter=^(cluster.httpbin.upstream_(rq|cx)_total|http.ingress_http.downstream_rq_(total|2xx))$'
echo
echo "Skiff is serving on http://127.0.0.1:10000 (admin: http://127.0.0.1:15000). Ctrl-C stops it."
wait "${pids[1]}"
