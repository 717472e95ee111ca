#!/usr/bin/python3
"""Cost of a headers-only ext_proc round trip per request: wrk through skiff with no filter ("plain") and
with an ext_proc filter that sends only the request headers to a grpc++ processor ("ext_proc"), which
answers with one header mutation (the founding documents' processor). Rounds are interleaved so drifting
machine load hits both rows alike; the report gives each row's median round.

    bench/ext_proc_bench.py [-d 10] [-c 50] [--rounds 3] [--skiff build/bin/skiff]

Reported per row: requests/s, wrk latency p50/p99, and skiff's CPU time per request (utime+stime of the
skiff process over the run / requests). The added cost per request is the difference between the rows.
The processor runs on the same machine and competes for CPU, so the plain-vs-ext_proc gap in requests/s
includes the processor's own work; skiff's CPU per request is the cleaner number. On a shared or busy
machine all figures are noisy: re-run on a quiet one before quoting them.
Standard library only; needs wrk and nginx (nginx-light); everything listens on 127.0.0.1, free ports.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "hello from backend\\n"; }} }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def skiff_config(listen, backend, admin, processor=None):
    filters = []
    if processor is not None:
        filters.append({"name": "envoy.filters.http.ext_proc", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": "processor"}},
            "message_timeout": "1s",
            "processing_mode": {"request_header_mode": "SEND", "response_header_mode": "SKIP"}}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})

    def cluster(name, port):
        return {"name": name, "connect_timeout": "1s", "type": "STATIC", "load_assignment": {
            "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}

    clusters = [cluster("backend", backend)] + ([cluster("processor", processor)] if processor else [])
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "name": "bench", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                         "HttpConnectionManager",
                "stat_prefix": "bench",
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
                "http_filters": filters}}]}]}],
            "clusters": clusters}}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(port, seconds, connections):
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)
    text = out.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:Non-2xx or 3xx responses|timeout) (\d+)", text))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", text, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    return {"requests": requests, "errors": errors, "p50_ms": pct(50), "p99_ms": pct(99)}


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=10)
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--skiff", default=os.path.join(REPO, "build", "bin", "skiff"))
    ap.add_argument("--processor", default=os.path.join(REPO, "build", "bin", "skiff-ext-proc-test-server"))
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"ext_proc_bench: {tool} not found")
    for binary in (args.skiff, args.processor):
        if not os.path.exists(binary):
            sys.exit(f"ext_proc_bench: {binary} not built")
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="skiff-ext-proc-bench-")
    try:
        os.makedirs(f"{tmp}/tmp")
        backend = free_port()
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(dir=tmp, port=backend))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.start([nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf"])
        processor_port = free_port()
        procs.start([args.processor, "--port", str(processor_port), "--quiet"])
        rows = {}
        for name, processor in (("plain", None), ("ext_proc", processor_port)):
            listen, admin = free_port(), free_port()
            path = f"{tmp}/{name}.json"
            with open(path, "w") as f:
                json.dump(skiff_config(listen, backend, admin, processor), f)
            err = open(f"{tmp}/{name}.err", "wb")
            p = procs.start([args.skiff, "-c", path, "--concurrency", "1", "-l", "warn"], stderr=err)
            if not wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=1).status
                            == 200):
                sys.exit(f"{name}: skiff did not answer:\n{open(f'{tmp}/{name}.err').read()}")
            rows[name] = {"proc": p, "port": listen, "rounds": []}
        for _ in range(args.rounds):
            for name, row in rows.items():
                run_wrk(row["port"], args.warmup, args.connections)
                before = cpu_seconds(row["proc"].pid)
                result = run_wrk(row["port"], args.duration, args.connections)
                result["cpu_us_per_req"] = (cpu_seconds(row["proc"].pid) - before) / max(result["requests"], 1) * 1e6
                result["rps"] = result["requests"] / args.duration
                row["rounds"].append(result)
        print(f"ext_proc headers-only round trip: wrk -c {args.connections}, {args.duration} s x {args.rounds} "
              f"rounds, skiff --concurrency 1 (median round by skiff CPU/request). Noisy if the machine is shared.")
        print(f"{'row':10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'skiff CPU us/req':>17} {'errors':>7}")
        medians = {}
        for name, row in rows.items():
            r = sorted(row["rounds"], key=lambda x: x["cpu_us_per_req"])[len(row["rounds"]) // 2]
            medians[name] = r
            print(f"{name:10} {r['rps']:10.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['cpu_us_per_req']:17.1f} "
                  f"{r['errors']:7d}")
        a, b = medians["plain"], medians["ext_proc"]
        print(f"added per request: {b['cpu_us_per_req'] - a['cpu_us_per_req']:.1f} us skiff CPU, "
              f"{b['p50_ms'] - a['p50_ms']:.2f} ms p50 latency; all rounds: "
              + json.dumps({n: [round(x['rps']) for x in row['rounds']] for n, row in rows.items()}))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
