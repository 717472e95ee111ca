#!/usr/bin/python3
"""Cost of the Wasm filter: proxy CPU per request and req/s with no filter, with Envoy's native header
mutation (route request_headers_to_add / response_headers_to_add), and with the documents' Wasm filter
(tests/wasm/demo_filter.c on V8: replaces one request header, adds one response header). One worker,
HTTP/1.1 keep-alive.

Method (robust on a shared, noisy machine): for each mode every variant runs as its own proxy at the same
time. Each round loads the baseline (no filter) and one other variant *simultaneously*, each with its own
wrk, so both see the same contention; the proxy's CPU time (utime+stime of all its threads, from /proc)
divided by the requests it served gives CPU per request. Rounds are interleaved (baseline+native,
baseline+wasm, baseline+native, ...) and the report gives medians: of each variant's CPU per request and of
the per-round overhead against the baseline measured alongside it.

Modes:
  upstream  the realistic sidecar case: the route goes to a backend (a separate nginx, keep-alive)
  direct    a direct_response route: no backend, so the filter's share of the proxy's work is largest

VM memory per worker: after the load, RSS of the Wasm proxy vs the plain one with 1 worker, and the growth
when a second worker starts its VM (--memory).

--instructions: instead of CPU time, each proxy runs in turn under valgrind's callgrind and the report gives
user-space instructions per request (deterministic, so usable on a busy machine; the kernel's share, about
two thirds of a request's CPU here, is not counted, so the overhead in % comes out larger than in CPU time).

Standard library only; needs wrk and nginx (Debian: wrk, nginx-light; valgrind for --instructions). Examples:
  bench/wasm_bench.py --build build -d 5 --rounds 5
  bench/wasm_bench.py --build build --instructions -d 4 --modes upstream
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BODY = "hello from backend\n"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(BENCH_DIR, "..", "build"),
                   help="build dir with bin/skiff, lib/libskiff_wasm_v8.so and wasm/demo_filter.wasm")
    p.add_argument("--skiff", help="skiff binary (default <build>/bin/skiff)")
    p.add_argument("--wasm", help="Wasm module (default <build>/wasm/demo_filter.wasm)")
    p.add_argument("-d", "--duration", type=int, default=5, help="seconds of measured load per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds per variant (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of load per proxy before measuring")
    p.add_argument("-c", "--connections", type=int, default=50, help="wrk connections per load generator")
    p.add_argument("--modes", default="upstream,direct", help="comma list of upstream,direct")
    p.add_argument("--variants", default="native,wasm", help="comma list of native,wasm (baseline is always run)")
    p.add_argument("--log-level", default="warn",
                   help="skiff --log-level (default warn, as Istio runs its sidecars: the demo filter logs two "
                        "info lines per request)")
    p.add_argument("--memory", action="store_true", help="also probe VM memory per worker (concurrency 1 vs 2)")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the proxies (e.g. SKIFF_V8_FLAGS=...)")
    p.add_argument("--instructions", action="store_true",
                   help="callgrind: user-space instructions per request instead of CPU time (needs valgrind)")
    a = p.parse_args()
    a.skiff = os.path.abspath(a.skiff or os.path.join(a.build, "bin", "skiff"))
    a.wasm = os.path.abspath(a.wasm or os.path.join(a.build, "wasm", "demo_filter.wasm"))
    a.modes = [m for m in a.modes.split(",") if m]
    a.variants = [v for v in a.variants.split(",") if v]
    for path in (a.skiff, a.wasm):
        if not os.path.exists(path):
            sys.exit(f"missing {path} (build the skiff and wasm test targets first)")
    for tool in ("wrk",) + (("nginx",) if "upstream" in a.modes else ()) + \
            (("valgrind", "callgrind_control") if a.instructions else ()):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    return a


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """Every process started here runs in its own session and is killed by process group on exit."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log, env=None):
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self):
        for proc in self.procs:
            self.stop(proc)


NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "{body}"; }}
  }}
}}
"""


def skiff_config(mode, variant, port, admin_port, backend_port, wasm):
    route = ('{ match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "ok" } } }'
             if mode == "direct" else '{ match: { prefix: "/" }, route: { cluster: backend } }')
    vhost_extra = ""
    if variant == "native":  # the same work as the Wasm filter: replace one request header, add a response one
        vhost_extra = """
              request_headers_to_add:
              - header: { key: user-agent, value: hello }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              response_headers_to_add:
              - header: { key: x-proxy-native, value: my-native-filter }"""
    filters = ""
    if variant == "wasm":
        filters = f"""
          - name: my-wasm-filter
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: my-wasm-filter
                configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: User-Agent }}
                vm_config:
                  vm_id: my-vm
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}"""
    return f"""admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            name: local_route
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{route}]{vhost_extra}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend_port} }} }} }}
"""


def get(port, timeout=1.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as r:
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read().decode()


def wait_ready(port, proc, what, deadline_s=15):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            return get(port)
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} not answering on port {port}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def wrk(port, seconds, connections):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(round(seconds))}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(m.group(1)) if m else 0, int(errors.group(1)) if errors else 0


def measure_together(targets, seconds, connections):
    """Loads every (port, pid) in `targets` at once; returns (requests, µs CPU/request, non-2xx) each."""
    before = [cpu_ticks(pid) for _, pid in targets]
    results = [None] * len(targets)

    def run(i, port):
        results[i] = wrk(port, seconds, connections)

    threads = [threading.Thread(target=run, args=(i, port)) for i, (port, _) in enumerate(targets)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    out = []
    for (port, pid), b, (n, errors) in zip(targets, before, results):
        cpu = (cpu_ticks(pid) - b) / TICK
        out.append({"requests": n, "rps": n / wall, "us": cpu / n * 1e6 if n else float("nan"), "errors": errors})
    return out


def check_variant(variant, headers, body, mode):
    if mode == "upstream" and body != BODY:
        return f"unexpected body {body!r} (not the backend's)"
    if variant == "wasm" and headers.get("x-proxy-wasm") != "my-wasm-filter":
        return "response lacks x-proxy-wasm (Wasm filter not run?)"
    if variant == "native" and headers.get("x-proxy-native") != "my-native-filter":
        return "response lacks x-proxy-native (route header mutation not applied?)"
    return None


ADMIN = {}  # proxy pid -> admin port


def live_vms(pid):
    """Envoy's wasm.envoy.wasm.runtime.v8.active gauge of that proxy (None when absent)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN[pid]}/stats", timeout=2) as r:
            m = re.search(r"^wasm\.envoy\.wasm\.runtime\.v8\.active: (\d+)$", r.read().decode(), re.M)
            return int(m.group(1)) if m else None
    except OSError:
        return None


def start_skiff(a, procs, tmp, mode, variant, backend_port, concurrency=1, prefix=(), deadline_s=15):
    port, admin = free_port(), free_port()
    path = os.path.join(tmp, f"{mode}-{variant}-{concurrency}.yaml")
    with open(path, "w") as f:
        f.write(skiff_config(mode, variant, port, admin, backend_port, a.wasm))
    env = dict(os.environ)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    log = open(os.path.join(tmp, f"{mode}-{variant}-{concurrency}.log"), "w")
    proc = procs.start(list(prefix) + [a.skiff, "-c", path, "--concurrency", str(concurrency), "--log-level",
                                       a.log_level], log, env)
    ADMIN[proc.pid] = admin
    _, headers, body = wait_ready(port, proc, f"skiff ({mode}, {variant})", deadline_s)
    problem = check_variant(variant, headers, body, mode)
    if problem:
        sys.exit(f"{mode}/{variant}: {problem}")
    return port, proc


def run_mode(a, procs, tmp, mode, backend_port):
    variants = ["none"] + a.variants
    proxies = {v: start_skiff(a, procs, tmp, mode, v, backend_port) for v in variants}
    for v in variants:  # warm-up: VM start on the worker, V8 tier-up, upstream connections
        wrk(proxies[v][0], a.warmup, a.connections)
    rows = {v: [] for v in variants}
    overhead = {v: [] for v in a.variants}
    for r in range(a.rounds):
        for v in a.variants:
            pair = [("none", proxies["none"]), (v, proxies[v])]
            if r % 2:
                pair.reverse()  # alternate which wrk starts first
            res = dict(zip([name for name, _ in pair],
                           measure_together([(p[0], p[1].pid) for _, p in pair], a.duration, a.connections)))
            rows["none"].append(res["none"])
            rows[v].append(res[v])
            overhead[v].append((res[v]["us"] / res["none"]["us"] - 1) * 100)
            print(f"  {mode} round {r + 1}: none {res['none']['us']:.2f} µs/req {res['none']['rps']:.0f} req/s | "
                  f"{v} {res[v]['us']:.2f} µs/req {res[v]['rps']:.0f} req/s | overhead {overhead[v][-1]:+.1f} %",
                  flush=True)
    for v in variants:
        for row in rows[v]:
            if row["errors"]:
                print(f"  warning: {mode}/{v} had {row['errors']} non-2xx responses in a round")
    summary = {}
    for v in variants:
        summary[v] = {
            "us": statistics.median(x["us"] for x in rows[v]),
            "rps": statistics.median(x["rps"] for x in rows[v]),
            "overhead": statistics.median(overhead[v]) if v in overhead else 0.0,
            "spread": (min(overhead[v]), max(overhead[v])) if v in overhead else (0.0, 0.0),
            "rss": rss_bytes(proxies[v][1].pid),
        }
    for v in variants:
        procs.stop(proxies[v][1])
    return summary


def admin_counter(pid, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN[pid]}/stats", timeout=10) as r:
        m = re.search(r"^" + re.escape(name) + r": (\d+)$", r.read().decode(), re.M)
        return int(m.group(1)) if m else None


def instructions_per_request(a, procs, tmp, mode, variant, backend_port):
    """One proxy under callgrind, instrumented only around a measured wrk run; the proxy's own request
    counter (admin requests are not proxied) gives the requests."""
    out = os.path.join(tmp, f"callgrind.{mode}.{variant}")
    prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no"]
    port, proc = start_skiff(a, procs, tmp, mode, variant, backend_port, prefix=prefix, deadline_s=120)
    ctl = lambda *args: subprocess.run(["callgrind_control", *args, str(proc.pid)], capture_output=True,
                                       check=True)
    wrk(port, max(a.warmup, 2), a.connections)  # uninstrumented: VM start, tier-up
    ctl("-i", "on")
    wrk(port, 2, a.connections)  # instrumented: valgrind translates the hot code
    ctl("-z")
    before = admin_counter(proc.pid, "http.bench.downstream_rq_total")
    wrk(port, a.duration, a.connections)
    after = admin_counter(proc.pid, "http.bench.downstream_rq_total")
    ctl("-d")
    dumps = sorted((f for f in os.listdir(tmp) if f.startswith(f"callgrind.{mode}.{variant}.")),
                   key=lambda f: int(f.rsplit(".", 1)[1]))
    total = None
    with open(os.path.join(tmp, dumps[-1])) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
                break
    procs.stop(proc)
    return total / (after - before), after - before


def run_instructions(a, procs, tmp, backend_port):
    print("\n| mode | variant | instructions/request (user space) | requests measured | overhead vs none |")
    print("|---|---|---|---|---|")
    for mode in a.modes:
        base = None
        for variant in ["none"] + a.variants:
            ipr, n = instructions_per_request(a, procs, tmp, mode, variant, backend_port)
            base = ipr if variant == "none" else base
            over = "" if variant == "none" else f"{(ipr / base - 1) * 100:+.1f} % ({ipr - base:+.0f})"
            print(f"| {mode} | {variant} | {ipr:.0f} | {n} | {over} |", flush=True)


def memory_probe(a, procs, tmp, backend_port):
    """RSS after load: plain vs Wasm with 1 worker, and what a second worker's VM adds."""
    out = {}
    for variant in ("none", "wasm"):
        for conc in (1, 2):
            port, proc = start_skiff(a, procs, tmp, "memory", variant, backend_port, conc)
            wrk(port, max(a.warmup, 1), max(a.connections, 8))  # spreads connections over the workers
            out[(variant, conc)] = rss_bytes(proc.pid)
            if variant == "wasm":
                out[("vms", conc)] = live_vms(proc.pid)
            procs.stop(proc)
    return out


def main():
    a = parse_args()
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="wasm-bench-")
    try:
        backend_port = free_port()
        if "upstream" in a.modes or a.memory:
            with open(os.path.join(tmp, "nginx.conf"), "w") as f:
                f.write(NGINX_CONF.format(dir=tmp, port=backend_port, body=BODY.replace("\n", "\\n")))
            nginx = procs.start(["nginx", "-p", tmp, "-c", os.path.join(tmp, "nginx.conf"), "-e", "stderr"],
                                open(os.path.join(tmp, "nginx.log"), "w"))
            wait_ready(backend_port, nginx, "nginx backend")
        if a.instructions:
            print(f"skiff {a.skiff}\nwasm {a.wasm}\ncallgrind, {a.duration:g} s of wrk -t1 -c{a.connections} per "
                  f"proxy, --concurrency 1, --log-level {a.log_level}")
            run_instructions(a, procs, tmp, backend_port)
            return
        print(f"skiff {a.skiff}\nwasm {a.wasm}\n{a.rounds} rounds x {a.duration:g} s, wrk -t1 -c{a.connections} per "
              f"proxy, --concurrency 1, --log-level {a.log_level}, load average {os.getloadavg()[0]:.2f} at start")
        results = {m: run_mode(a, procs, tmp, m, backend_port) for m in a.modes}
        print("\n| mode | variant | µs CPU/request | req/s | overhead vs none (median of rounds) | min..max | RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for m, summary in results.items():
            for v, s in summary.items():
                over = "" if v == "none" else f"{s['overhead']:+.1f} %"
                spread = "" if v == "none" else f"{s['spread'][0]:+.1f}..{s['spread'][1]:+.1f} %"
                print(f"| {m} | {v} | {s['us']:.2f} | {s['rps']:.0f} | {over} | {spread} | {s['rss'] / 2**20:.1f} |")
        if a.memory:
            mem = memory_probe(a, procs, tmp, backend_port)
            vms = (mem.pop(("vms", 1)), mem.pop(("vms", 2)))
            mb = {k: v / 2**20 for k, v in mem.items()}
            print(f"\nRSS after load (MB): none c1 {mb[('none', 1)]:.1f}, c2 {mb[('none', 2)]:.1f}; "
                  f"wasm c1 {mb[('wasm', 1)]:.1f}, c2 {mb[('wasm', 2)]:.1f}")
            print(f"Wasm with 1 worker over plain: {mb[('wasm', 1)] - mb[('none', 1)]:+.1f} MB (libnode, "
                  f"config-time VM, one worker VM); per extra worker VM: "
                  f"{(mb[('wasm', 2)] - mb[('wasm', 1)]) - (mb[('none', 2)] - mb[('none', 1)]):+.1f} MB "
                  f"(live VMs by wasm.envoy.wasm.runtime.v8.active: {vms[0]} with 1 worker, {vms[1]} with 2)")
        print("\nThe machine may be shared: compare the overheads (measured side by side), not absolute figures.")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
