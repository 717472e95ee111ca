#!/usr/bin/python3
"""Cost of interception: client pod → server pod over the netns mesh, through both sidecars (REDIRECT), vs
the same two pods with no rules and no sidecars ("direct"). wrk runs in the client pod as its app and calls
the server pod's IP; the server app is nginx answering a fixed body. Needs root.

    bench/run.sh mesh [-d 10] [-c 50] [--name DATE-interception] [--no-write]
"""
import argparse
import datetime
import os
import re
import shutil
import sys
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(BENCH_DIR, "..", "mesh"))

import skiff_mesh  # noqa: E402

REPORT_LUA = os.path.join(BENCH_DIR, "configs", "report.lua")
BODY = "hello from backend\n"
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
  server {{ listen 80; location / {{ return 200 "{body}"; }} }}
}}
"""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.sh mesh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--duration", type=int, default=10, help="seconds of load per row (default 10)")
    p.add_argument("-c", "--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("-t", "--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first (default 2)")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results"), help="results directory")
    p.add_argument("--name", default=datetime.date.today().isoformat() + "-interception",
                   help="results file stem (default <today>-interception)")
    p.add_argument("--no-write", action="store_true", help="only print the table")
    a = p.parse_args(argv)
    if not (1 <= a.duration <= 300 and 0 <= a.warmup <= 60):
        p.error("duration must be 1..300 s and warmup 0..60 s")
    return a


def pods(nginx_dir):
    return {"pods": [
        {"name": "server", "command": ["nginx", "-p", nginx_dir, "-c", f"{nginx_dir}/nginx.conf"],
         "ports": [{"port": 80, "protocol": "http"}]},
        {"name": "client", "command": ["sleep", "infinity"]},
    ]}


def wrk(mesh, url, args, seconds):
    proc = mesh.exec("client", ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
                                "-s", REPORT_LUA, url], timeout=seconds + 60)
    m = re.search(r"BENCH (.*)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed: {proc.stdout[-300:]} {proc.stderr[-300:]}")
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def measure(label, args, nginx_dir, **mesh_kw):
    with skiff_mesh.Mesh(pods(nginx_dir), **mesh_kw) as m:
        url = f"http://{m.ip('server')}:80/"
        got = m.exec("client", ["curl", "-sS", "-D-", url])
        if BODY.strip() not in got.stdout:
            raise RuntimeError(f"{label}: GET {url} did not return the backend's body: {got.stdout} {got.stderr}")
        via_sidecars = "x-envoy-upstream-service-time" in got.stdout.lower() or "server: envoy" in got.stdout.lower()
        if args.warmup:
            wrk(m, url, args, args.warmup)
        r = wrk(m, url, args, args.duration)
        errors = sum(v for k, v in r.items() if k.startswith("err_"))
        row = {"target": label, "rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
               "p99_ms": r["p99_us"] / 1000, "requests": r["requests"], "errors": errors,
               "via_sidecars": via_sidecars}
        if mesh_kw.get("inject", True):
            stats = m.admin_stats("server")
            row["server_inbound_rq"] = stats.get("cluster.inbound|80||.upstream_rq_total", 0)
            row["client_outbound_rq"] = m.admin_stats("client").get("cluster.outbound|80||server.upstream_rq_total", 0)
        return row


def report(args, rows):
    base = rows[0]
    lines = [f"# Interception cost ({datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})", "",
             f"Client pod → server pod (nginx, fixed {len(BODY)}-byte body) over the netns mesh "
             f"(`mesh/skiff_mesh.py`, veth + bridge). wrk in the client pod as its app: {args.threads} thread(s), "
             f"{args.connections} keep-alive connections, {args.duration} s after {args.warmup} s warm-up. "
             "Nothing pinned; both sidecars run `--concurrency 1` on the same machine as wrk and nginx, so "
             "the mesh row pays for two extra proxies on shared cores.", "",
             "| path | requests/s | vs direct | p50 ms | p99 ms | requests | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['rps']:.0f} | {r['rps'] / base['rps'] * 100:.0f}% | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['requests']} | {r['errors']} |")
    for r in rows[1:]:
        if "server_inbound_rq" in r:
            lines += ["", f"Shown to go through the sidecars: client `cluster.outbound|80||server.upstream_rq_total` = "
                          f"{r['client_outbound_rq']}, server `cluster.inbound|80||.upstream_rq_total` = "
                          f"{r['server_inbound_rq']}."]
    lines += ["", f"Command: `bench/run.sh mesh -d {args.duration} -c {args.connections} -t {args.threads}`", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        sys.exit("bench mesh: needs root (network namespaces)")
    for tool in ("wrk", "nginx", "curl"):
        if not shutil.which(tool):
            sys.exit(f"bench mesh: {tool} not found")
    nginx_dir = tempfile.mkdtemp(prefix="skiff-bench-nginx-")
    try:
        os.makedirs(f"{nginx_dir}/tmp")
        with open(f"{nginx_dir}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(dir=nginx_dir, body=BODY.replace("\n", "\\n")))
        for root, dirs, files in os.walk(nginx_dir):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(name, skiff_mesh.APP_UID, skiff_mesh.APP_UID)
        rows = [measure("direct (no rules, no sidecars)", args, nginx_dir, inject=False)]
        rows.append(measure("mesh, REDIRECT (client sidecar → server sidecar)", args, nginx_dir, mode="REDIRECT"))
    except (skiff_mesh.MeshError, RuntimeError) as e:
        sys.exit(f"bench mesh: {e}")
    finally:
        shutil.rmtree(nginx_dir, ignore_errors=True)
    text = report(args, rows)
    print(text)
    if not args.no_write:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, args.name + ".md")
        with open(path, "w") as f:
            f.write(text)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
