#!/usr/bin/python3
"""2-hop mTLS mesh at a FIXED request rate: latency added over direct and sidecar CPU, against Istio's
published figures (+0.228 ms p90 / +0.298 ms p99 for client + server sidecars; 0.20 vCPU per 1000 rps
through a proxy).

Client pod → server pod over the netns mesh (mesh/skiff_mesh.py, REDIRECT interception by skiff-init):
  direct     - the same two pods with no rules and no sidecars
  mesh       - both sidecars, plaintext between them
  mesh-mtls  - both sidecars, Istio's STRICT mTLS shape (mesh/mtls_config.py: SPIFFE IDs checked both ways,
               XFCC added on the server side)
The server app is nginx answering a fixed 1024-byte body. The load is open-loop: bench/mesh_loadgen.cc
(compiled here with g++) runs in the client pod as its app and sends request i at start + i/rate whatever
happened before; latency is measured from that intended time (no coordinated omission), over keep-alive
connections (--connections). Sidecar CPU = utime+stime of each skiff process over the whole run (warm-up
included: the rate is constant), as vCPU per 1000 rps.

    bench/mesh_mtls_bench.py                            # 1000 rps, 20 s after 5 s warm-up, 1 round
    bench/mesh_mtls_bench.py --rounds 3 -d 30 --name $(date +%F)-mesh-mtls

Needs root (network namespaces), nginx, g++, skiff/skiff-init/skiff-certs built. The machine this was written
on is shared (2 CPUs, builds running): tail latencies there are mostly other processes' noise — re-run on a
quiet machine before quoting. Namespaces, processes and temporary files are always removed.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT / "mesh"))

import skiff_mesh  # noqa: E402
from mtls_config import MeshMtls  # noqa: E402

BODY_BYTES = 1024
ISTIO = {"p90_ms": 0.228, "p99_ms": 0.298, "vcpu_per_1000rps": 0.20}
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
  keepalive_timeout 300s;
  server {{ listen 80; location / {{ default_type text/plain; return 200 "{body}"; }} }}
}}
"""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-r", "--rate", type=float, default=1000, help="requests per second (default 1000)")
    p.add_argument("-d", "--duration", type=float, default=20, help="measured seconds per row (default 20)")
    p.add_argument("--warmup", type=float, default=5, help="unmeasured seconds first, same rate (default 5)")
    p.add_argument("-c", "--connections", type=int, default=16, help="keep-alive connections (default 16)")
    p.add_argument("--rounds", type=int, default=1, help="repeat the three rows, alternating (default 1)")
    p.add_argument("--rows", default="direct,mesh,mesh-mtls")
    p.add_argument("--out", default=str(BENCH_DIR / "results"))
    p.add_argument("--name", default=datetime.date.today().isoformat() + "-mesh-mtls")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if not (0 < a.rate <= 100000 and 0 < a.duration <= 600 and 0 <= a.warmup <= 120 and a.connections > 0):
        p.error("bad rate/duration/warm-up/connections")
    return a


def pods(nginx_dir):
    return {"pods": [
        {"name": "server", "command": ["nginx", "-p", nginx_dir, "-c", f"{nginx_dir}/nginx.conf"],
         "ports": [{"port": 80, "protocol": "http"}]},
        {"name": "client", "command": ["sleep", "infinity"]},
    ]}


def make_pki(base, certs_bin):
    def run(*args):
        subprocess.run([str(certs_bin), *map(str, args)], check=True, capture_output=True, timeout=60)
    run("ca", "init", "--out", base / "ca", "--trust-domain", "cluster.local")
    dirs = {}
    for pod in ("client", "server"):
        run("workload", "--ca-dir", base / "ca", "--out", base / pod, "--ns", "default", "--sa", pod)
        dirs[pod] = base / pod
        for f in (base / pod).iterdir():
            os.chown(f, skiff_mesh.PROXY_UID, skiff_mesh.PROXY_UID)
    for d in [base, *base.rglob("*")]:
        if d.is_dir():
            os.chmod(d, 0o755)
    return dirs, base / "ca" / "root-cert.pem"


def cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def skiff_pid(mesh, pod):
    """The skiff process of a pod (ip netns exec and setpriv exec it in place; checked by name)."""
    proc = next(p for n, r, p in mesh.procs if n == pod and r == "skiff")
    comm = Path(f"/proc/{proc.pid}/comm").read_text().strip()
    if comm != "skiff":
        raise RuntimeError(f"{pod}: expected the skiff process, found {comm}")
    return proc.pid


def measure(label, args, nginx_dir, loadgen, hook):
    kw = {"inject": False} if label == "direct" else {"config_hook": hook}
    with skiff_mesh.Mesh(pods(nginx_dir), **kw) as m:
        url = f"http://{m.ip('server')}/"
        got = m.exec("client", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url])
        if got.stdout.strip() != f"200 {BODY_BYTES}":
            raise RuntimeError(f"{label}: GET {url} gave {got.stdout!r} {got.stderr}")
        pids = {} if label == "direct" else {p: skiff_pid(m, p) for p in ("client", "server")}
        before = {p: cpu_seconds(pid) for p, pid in pids.items()}
        stats0 = {p: m.admin_stats(p) for p in pids}
        proc = m.exec("client", [str(loadgen), m.ip("server"), "80", str(args.rate), str(args.duration),
                                 "--warmup", str(args.warmup), "--connections", str(args.connections)],
                      timeout=args.duration + args.warmup + 60)
        if not proc.stdout.strip():
            raise RuntimeError(f"{label}: load generator failed: {proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        wall = args.duration + args.warmup
        cpu = {p: (cpu_seconds(pid) - before[p]) / wall for p, pid in pids.items()}
        row = {"row": label, **r, "cpu_vcpu": cpu}
        if label == "mesh-mtls":
            s = m.admin_stats("server")
            c = m.admin_stats("client")
            row["tls_handshakes"] = (c.get("cluster.outbound|80||server.ssl.handshake", 0),
                                     sum(v for k, v in s.items() if k.startswith("listener.")
                                         and k.endswith(".ssl.handshake")))
        if pids:
            row["rq_through"] = m.admin_stats("client").get("cluster.outbound|80||server.upstream_rq_total", 0) - \
                stats0["client"].get("cluster.outbound|80||server.upstream_rq_total", 0)
        return row


def fmt_ms(us):
    return f"{us / 1000:.3f}"


def report(args, rounds):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# 2-hop mTLS mesh at a fixed {args.rate:.0f} rps ({now})", "",
             f"`bench/mesh_mtls_bench.py -r {args.rate:.0f} -d {args.duration:g} --warmup {args.warmup:g} "
             f"-c {args.connections} --rounds {args.rounds}` (method in the script's docstring). Open-loop "
             f"load from bench/mesh_loadgen.cc in the client pod, {BODY_BYTES}-byte responses from nginx, "
             f"latency from each request's intended send time. Sidecars: skiff `--concurrency 1`, REDIRECT. "
             f"Load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs — a shared, busy "
             "machine: the tails below carry other processes' scheduling noise.", "",
             "| round | row | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | client sidecar vCPU | "
             "server sidecar vCPU |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, rows in enumerate(rounds, 1):
        for r in rows:
            cpu = r["cpu_vcpu"]
            lines.append(f"| {i} | {r['row']} | {fmt_ms(r['p50_us'])} | {fmt_ms(r['p90_us'])} | "
                         f"{fmt_ms(r['p99_us'])} | {fmt_ms(r['p999_us'])} | {fmt_ms(r['max_us'])} | {r['errors']} | "
                         f"{cpu.get('client', 0):.3f} | {cpu.get('server', 0):.3f} |")
    lines += ["", "Added over direct (median over rounds of the per-round difference) and sidecar CPU per 1000 rps, "
                  "next to Istio's published sidecar-mode figures (two proxies):", "",
              "| row | +p50 ms | +p90 ms | +p99 ms | vCPU / 1000 rps, per sidecar (client, server) |",
              "|---|---:|---:|---:|---|"]
    for name in [r["row"] for r in rounds[0] if r["row"] != "direct"]:
        def added(key):
            diffs = []
            for rows in rounds:
                by = {r["row"]: r for r in rows}
                if "direct" in by and name in by:
                    diffs.append((by[name][key] - by["direct"][key]) / 1000)
            return statistics.median(diffs) if diffs else float("nan")

        per_k = [statistics.median(r["cpu_vcpu"][p] for rows in rounds for r in rows if r["row"] == name)
                 / (args.rate / 1000) for p in ("client", "server")]
        lines.append(f"| {name} | {added('p50_us'):+.3f} | {added('p90_us'):+.3f} | {added('p99_us'):+.3f} | "
                     f"{per_k[0]:.3f}, {per_k[1]:.3f} |")
    lines.append(f"| Istio (published, sidecar mode) | | +{ISTIO['p90_ms']} | +{ISTIO['p99_ms']} | "
                 f"{ISTIO['vcpu_per_1000rps']} per proxy |")
    for rows in rounds[:1]:
        for r in rows:
            if "tls_handshakes" in r:
                lines += ["", f"Through the sidecars: {r['rq_through']} requests on the client's "
                              f"`outbound|80||server` in the run; TLS handshakes client/server: "
                              f"{r['tls_handshakes'][0]}/{r['tls_handshakes'][1]} (keep-alive connections)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        sys.exit("mesh_mtls_bench: needs root (network namespaces)")
    for tool in ("nginx", "curl", "g++"):
        if not shutil.which(tool):
            sys.exit(f"mesh_mtls_bench: {tool} not found")
    certs_bin = Path(os.environ.get("SKIFF_CERTS_BIN", skiff_mesh._default_bin("skiff").parent / "skiff-certs"))
    if not certs_bin.exists():
        sys.exit(f"mesh_mtls_bench: {certs_bin} not built")
    tmp = Path(tempfile.mkdtemp(prefix="skiff-mesh-mtls-bench-"))
    try:
        os.chmod(tmp, 0o755)
        loadgen = tmp / "mesh_loadgen"
        subprocess.run(["g++", "-O2", "-std=c++20", str(BENCH_DIR / "mesh_loadgen.cc"), "-o", str(loadgen)],
                       check=True)
        nginx_dir = tmp / "nginx"
        (nginx_dir / "tmp").mkdir(parents=True)
        (nginx_dir / "nginx.conf").write_text(NGINX_CONF.format(dir=nginx_dir, body="x" * BODY_BYTES))
        for p in [nginx_dir, *nginx_dir.rglob("*")]:
            os.chown(p, skiff_mesh.APP_UID, skiff_mesh.APP_UID)
        dirs, root = make_pki(tmp / "pki", certs_bin)
        mtls = MeshMtls(dirs, root)
        hooks = {"direct": None, "mesh": None, "mesh-mtls": mtls}
        rounds = []
        for i in range(args.rounds):
            rows = []
            for name in args.rows.split(","):
                print(f"round {i + 1}: {name} ...", file=sys.stderr, flush=True)
                rows.append(measure(name, args, str(nginx_dir), loadgen, hooks[name]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            rounds.append(rows)
    except (skiff_mesh.MeshError, RuntimeError, subprocess.CalledProcessError) as e:
        sys.exit(f"mesh_mtls_bench: {e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(args, rounds)
    print(text)
    if not args.no_write:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, args.name + ".md")
        Path(path).write_text(text)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
