#!/usr/bin/python3
"""HTTP/2 benchmark: Skiff vs HAProxy (one worker/thread each), h2c front and h2c back to nghttpd, with h2load;
then gRPC unary round trips through one Skiff vs direct (the grpc++ Echo test client, sequential calls).

Rows:
  h2-h2      h2load (prior knowledge) -> proxy (h2c) -> nghttpd (h2c)   req/s, proxy CPU s per 10k requests
  grpc       N sequential unary calls: direct to the Echo server vs through Skiff (mean µs per call)

    bench/h2_bench.py                      # 10 s per h2load row, prints a Markdown table
    bench/h2_bench.py -d 20 -c 8 -m 32 --out bench/results/$(date +%F)-h2.md

Needs: build/bin/skiff, build/bin/skiff-grpc-test-server/-client, h2load (nghttp2-client), nghttpd
(nghttp2-server), haproxy. The machine this was written on is shared (2 CPUs, other builds running):
numbers from it are noisy; re-run on a quiet machine for figures worth quoting. Only 127.0.0.1 is used;
every process started here is stopped on exit.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import BIN, Procs, cpu_seconds, free_port, run_h2load, wait_port, write_report  # noqa: E402


def skiff_config(port, admin, backend_port, h2_upstream):
    cluster = {
        "name": "backend", "connect_timeout": "1s", "type": "STATIC",
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": backend_port}}}}]}]},
    }
    if h2_upstream:
        cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
           "stat_prefix": "bench", "codec_type": "AUTO",
           "route_config": {"virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "route": {"cluster": "backend", "timeout": "0s"}}]}]},
           "http_filters": [{"name": "envoy.filters.http.router"}]}
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {
                "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                               "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                               "typed_config": hcm}]}]}],
                "clusters": [cluster]}}


def haproxy_config(port, backend_port, h2_upstream):
    proto = " proto h2" if h2_upstream else ""
    return f"""global
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{port} proto h2
    default_backend be
backend be
    http-reuse always
    server s1 127.0.0.1:{backend_port}{proto}
"""


def h2load(port, duration, clients, streams, path="/index.html"):
    return run_h2load(f"http://127.0.0.1:{port}{path}", duration, clients, streams)


def run_h2load_row(name, proxy, port, args):
    before = cpu_seconds(proxy.pid)
    rps, ok, raw = h2load(port, args.duration, args.clients, args.streams)
    cpu = cpu_seconds(proxy.pid) - before
    per10k = cpu / ok * 10000 if ok else float("nan")
    return f"| {name} | {rps:,.0f} | {ok} | {per10k:.3f} |"


def grpc_round_trips(port, calls):
    client = BIN / "skiff-grpc-test-client"
    start = time.monotonic()
    out = subprocess.run([str(client), "--target", f"127.0.0.1:{port}", "--calls", str(calls)],
                         capture_output=True, text=True, timeout=600).stdout
    elapsed = time.monotonic() - start
    ok = json.loads(out.strip().splitlines()[-1])["ok_calls"]
    return elapsed / max(ok, 1) * 1e6, ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=10)
    ap.add_argument("-c", "--clients", type=int, default=4)
    ap.add_argument("-m", "--streams", type=int, default=16)
    ap.add_argument("--grpc-calls", type=int, default=3000)
    ap.add_argument("--out")
    args = ap.parse_args()
    for tool in ("h2load", "haproxy"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required")
    nghttpd = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="h2bench-"))
    rows = ["| setup | req/s | requests ok | proxy CPU s / 10k rq |", "|---|---|---|---|"]
    try:
        www = tmp / "www"
        www.mkdir()
        (www / "index.html").write_text("x" * 512)
        backend_port = free_port()
        backend = procs.start([nghttpd, "--no-tls", "-a", "127.0.0.1", "-n", "1", "-d", str(www), str(backend_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(backend_port, backend)

        sport, sadmin = free_port(), free_port()
        (tmp / "skiff.json").write_text(json.dumps(skiff_config(sport, sadmin, backend_port, True)))
        skiff = procs.start([str(BIN / "skiff"), "-c", str(tmp / "skiff.json"), "--concurrency", "1", "-l", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(sport, skiff)
        h2load(sport, 1, args.clients, args.streams)  # warm-up
        rows.append(run_h2load_row("skiff h2c -> h2c nghttpd", skiff, sport, args))

        hport = free_port()
        (tmp / "haproxy.cfg").write_text(haproxy_config(hport, backend_port, True))
        haproxy = procs.start(["haproxy", "-f", str(tmp / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        wait_port(hport, haproxy)
        h2load(hport, 1, args.clients, args.streams)
        rows.append(run_h2load_row("haproxy h2c -> h2c nghttpd", haproxy, hport, args))

        rows.append("")
        rows.append("| gRPC unary (sequential) | µs per call | calls ok |")
        rows.append("|---|---|---|")
        server = procs.start([str(BIN / "skiff-grpc-test-server"), "--port", "0"], stdout=subprocess.PIPE, text=True)
        gport = int(server.stdout.readline().split()[1])
        gsport, gadmin = free_port(), free_port()
        (tmp / "grpc.json").write_text(json.dumps(skiff_config(gsport, gadmin, gport, True)))
        gskiff = procs.start([str(BIN / "skiff"), "-c", str(tmp / "grpc.json"), "--concurrency", "1", "-l", "warn"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(gsport, gskiff)
        for name, port in (("direct", gport), ("through skiff", gsport)):
            grpc_round_trips(port, 100)  # warm-up
            us, ok = grpc_round_trips(port, args.grpc_calls)
            rows.append(f"| {name} | {us:.0f} | {ok} |")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    write_report("\n".join(rows) + "\n\n(noisy shared machine: re-run on a quiet one before quoting)\n", args.out)


if __name__ == "__main__":
    main()
