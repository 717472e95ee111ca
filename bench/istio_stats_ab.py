#!/usr/bin/python3
"""istio.stats (+ istio.metadata_exchange) per-request overhead, A/B with both proxies loaded at once.

A = bench/configs/skiff.yaml (router only), B = bench/configs/skiff-istio.yaml (Istio's inbound HCM:
metadata exchange, istio.stats, router). Both get the same wrk load at the same time (keep-alive GETs that
carry a peer's x-envoy-peer-metadata headers, as a client sidecar sends them), one worker each, against one
nginx backend. CPU per request = utime+stime of the proxy over the requests wrk completed; the figure to
quote is the median over rounds. The machine is shared: numbers are noisy, rerun on a quiet machine.
Standard library only (plus wrk and nginx); the peer header is built here with a hand-written protobuf
encoder of google.protobuf.Struct.
"""
import argparse
import base64
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import run  # noqa: E402


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, payload):  # length-delimited field
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _struct(d):
    """google.protobuf.Struct bytes: fields (1) map<string, Value>; Value string (3) or struct (5)."""
    out = b""
    for k, v in sorted(d.items()):
        value = _field(5, _struct(v)) if isinstance(v, dict) else _field(3, v.encode())
        out += _field(1, _field(1, k.encode()) + _field(2, value))
    return out


PEER = base64.b64encode(_struct({"WORKLOAD_NAME": "productpage-v1", "NAMESPACE": "default",
                                 "CLUSTER_ID": "Kubernetes", "NAME": "productpage-v1-6b746f74dc-9stvs",
                                 "LABELS": {"app": "productpage", "version": "v1"}})).decode()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skiff", default=os.path.join(os.path.dirname(BENCH_DIR), "build", "bin", "skiff"))
    p.add_argument("-d", "--duration", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-c", "--connections", type=int, default=50)
    return p.parse_args(argv)


def wrk(port, args, seconds):
    argv = ["wrk", "-t1", "-c", str(args.connections), "-d", f"{seconds}s", "--timeout", "5s",
            "-H", f"x-envoy-peer-metadata: {PEER}", "-H", "x-envoy-peer-metadata-id: sidecar~10.0.0.9~pp.default",
            "-s", os.path.join(run.CONFIGS, "report.lua"), f"http://127.0.0.1:{port}/"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def result(proc, seconds):
    out, _ = proc.communicate(timeout=seconds + 30)
    for line in out.splitlines():
        if line.startswith("BENCH "):
            return {k: int(v) for k, v in (kv.split("=") for kv in line[6:].split())}
    raise RuntimeError("wrk failed: " + out[-300:])


def main():
    args = parse_args(sys.argv[1:])
    procs = run.Procs()
    tmp = tempfile.mkdtemp(prefix="skiff-istio-ab-")
    try:
        backend_port = run.free_port()
        cfg = run.render("backend-nginx.conf", f"{tmp}/backend.conf", tmp=tmp, backend_port=backend_port)
        procs.start(["nginx", "-p", tmp, "-c", cfg, "-e", f"{tmp}/backend-error.log"], f"{tmp}/backend.log")
        time.sleep(0.3)
        proxies = {}
        for label, template in (("A", "skiff.yaml"), ("B", "skiff-istio.yaml")):
            ports = {"listen_port": run.free_port(), "admin_port": run.free_port(), "backend_port": backend_port}
            path = run.render(template, f"{tmp}/{label}.yaml", **ports)
            proc = procs.start([args.skiff, "-c", path, "--concurrency", "1", "-l", "warn"], f"{tmp}/{label}.log")
            err = run.wait_ready(ports["listen_port"], proc)
            if err:
                raise RuntimeError(f"proxy {label}: {err}; {run.tail(f'{tmp}/{label}.log')}")
            proxies[label] = (proc, ports)
        print(f"{args.rounds} rounds x {args.duration} s, wrk -t1 -c{args.connections} on each at once; "
              "CPU = utime+stime per request (shared machine: noisy)")
        result(wrk(proxies["A"][1]["listen_port"], args, 2), 2)
        result(wrk(proxies["B"][1]["listen_port"], args, 2), 2)
        ratios, deltas = [], []
        for r in range(args.rounds):
            cpu = {k: run.cpu_seconds([p.pid]) for k, (p, _) in proxies.items()}
            running = {k: wrk(ports["listen_port"], args, args.duration) for k, (_, ports) in proxies.items()}
            res = {k: result(w, args.duration) for k, w in running.items()}
            us = {k: (run.cpu_seconds([proxies[k][0].pid]) - cpu[k]) * 1e6 / max(res[k]["requests"], 1)
                  for k in proxies}
            ratios.append(us["B"] / us["A"] - 1)
            deltas.append(us["B"] - us["A"])
            print(f"round {r + 1}: A {us['A']:.2f} us/req ({res['A']['requests']} req) | "
                  f"B {us['B']:.2f} us/req ({res['B']['requests']} req) | B over A {ratios[-1] * 100:+.1f} %")
        print(f"median: B over A {statistics.median(ratios) * 100:+.1f} % CPU/request "
              f"({statistics.median(deltas):+.2f} us/request)")
        # B really recorded the peer: its istio_requests_total names the workload the headers carried.
        conn = http.client.HTTPConnection("127.0.0.1", proxies["B"][1]["admin_port"], timeout=5)
        conn.request("GET", "/stats/prometheus")
        body = conn.getresponse().read().decode()
        total = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                    if line.startswith("istio_requests_total{") and 'source_workload="productpage-v1"' in line)
        print(f"B: istio_requests_total{{source_workload=\"productpage-v1\"}} = {total:.0f}")
        return 0
    finally:
        procs.stop_all()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
