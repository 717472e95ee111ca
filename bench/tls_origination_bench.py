#!/usr/bin/python3
"""TLS origination benchmark: Skiff vs HAProxy, one worker each, plain HTTP in, HTTPS out to the same nginx.

wrk (plain HTTP, keep-alive) → proxy on 127.0.0.1 → nginx over TLS 1.3 (EC P-256 certificate from
skiff-certs, verified by both proxies against the skiff-certs root, SNI "backend.local"). Two rows per proxy:
  keep-alive  - upstream TLS connections reused across requests: the record-layer cost only.
  handshakes  - one request per upstream connection and no session resumption (skiff:
                max_requests_per_connection 1 + max_session_keys 0; HAProxy: http-server-close, http-reuse
                never, no-ssl-reuse): req/s = full upstream TLS handshakes per second.
Proxy CPU seconds per 10k requests come from /proc/<pid>/stat, as in bench/tls_bench.py.

    bench/tls_origination_bench.py                  # 10 s per row, prints a Markdown table
    bench/tls_origination_bench.py -d 20 --rounds 2 --out bench/results/$(date +%F)-tls-origination.md

The machine this was written on is shared (2 CPUs, other builds running): numbers are noisy; re-run on a
quiet machine before quoting. Processes run in their own sessions and are killed on exit; only 127.0.0.1.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (CONFIGS, Procs, add_proxy_args, cpu_seconds, free_port,  # noqa: E402
                          make_workload_cert, require_tools, run_wrk, wait_port, wrk_errors, write_report)

SNI = "backend.local"


def wrk_http(port, seconds, connections, cpu):
    return run_wrk(f"http://127.0.0.1:{port}/", seconds, connections, cpu)


def nginx_tls_config(tmp, port, cert_dir):
    return f"""worker_processes 1;
daemon off;
pid {tmp}/backend.pid;
error_log {tmp}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp};
  scgi_temp_path {tmp};
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert_dir}/cert-chain.pem;
    ssl_certificate_key {cert_dir}/key.pem;
    ssl_protocols TLSv1.3;
    location / {{ default_type text/plain; return 200 "hello from backend\\n"; }}
  }}
}}
"""


def skiff_config(tmp, port, admin, backend, root, handshakes):
    text = (CONFIGS / "skiff.yaml").read_text()
    for k, v in {"listen_port": port, "admin_port": admin, "backend_port": backend}.items():
        text = text.replace("${" + k + "}", str(v))
    tls = ("    transport_socket:\n"
           "      name: envoy.transport_sockets.tls\n"
           "      typed_config:\n"
           "        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n"
           f"        sni: {SNI}\n"
           f"        max_session_keys: {0 if handshakes else 1}\n"
           "        common_tls_context:\n"
           "          tls_params: {tls_maximum_protocol_version: TLSv1_3}\n"
           f"          validation_context: {{trusted_ca: {{filename: \"{root}\"}}}}\n")
    if handshakes:
        tls += "    max_requests_per_connection: 1\n"
    assert "    type: STATIC\n" in text
    text = text.replace("    type: STATIC\n", "    type: STATIC\n" + tls, 1)
    path = tmp / f"skiff-orig-{int(handshakes)}.yaml"
    path.write_text(text)
    return path


def haproxy_config(tmp, port, backend, root, handshakes):
    text = (CONFIGS / "haproxy.cfg").read_text().replace("${listen_port}", str(port))
    server = (f"server backend1 127.0.0.1:{backend} ssl verify required ca-file {root} sni str({SNI}) "
              f"verifyhost {SNI} ssl-min-ver TLSv1.3")
    if handshakes:
        server += " no-ssl-reuse"
        text = text.replace("  http-reuse always\n", "  http-reuse never\n  option http-server-close\n")
    text = text.replace("server backend1 127.0.0.1:${backend_port}", server)
    path = tmp / f"haproxy-orig-{int(handshakes)}.cfg"
    path.write_text(text)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_proxy_args(p)
    p.add_argument("--rounds", type=int, default=1, help="repeat every row (alternating proxies)")
    args = p.parse_args()
    require_tools("wrk", "nginx", "haproxy")
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="skiff-tls-orig-bench-"))
    rows = []
    try:
        backend_cert, root = make_workload_cert(args.certs, tmp, "backend", "backend", SNI)
        backend = free_port()
        conf = tmp / "backend.conf"
        conf.write_text(nginx_tls_config(tmp, backend, backend_cert))
        nginx = procs.start(["nginx", "-p", str(tmp), "-c", str(conf)], tmp / "nginx.log", args.harness_cpu)
        wait_port(backend, nginx)
        for rnd in range(1, args.rounds + 1):
            for target in args.targets.split(","):
                for mode, handshakes, conns in (("keep-alive", False, args.connections),
                                                ("handshakes", True, args.handshake_connections)):
                    port = free_port()
                    if target == "skiff":
                        cfg = skiff_config(tmp, port, free_port(), backend, root, handshakes)
                        proc = procs.start([args.skiff, "-c", str(cfg), "--concurrency", "1", "-l", "warn"],
                                           tmp / "skiff.log", args.proxy_cpu)
                    elif target == "haproxy":
                        cfg = haproxy_config(tmp, port, backend, root, handshakes)
                        proc = procs.start(["haproxy", "-f", str(cfg), "-db"], tmp / "haproxy.log", args.proxy_cpu)
                    else:
                        sys.exit(f"unknown target {target}")
                    wait_port(port, proc)
                    warm = wrk_http(port, 2, conns, args.harness_cpu)
                    if warm.get("err_status", 0) or warm.get("requests", 0) == 0:
                        raise RuntimeError(f"{target} {mode}: warm-up failed {warm}; see {tmp}/{target}.log")
                    before = cpu_seconds(proc.pid)
                    r = wrk_http(port, args.duration, conns, args.harness_cpu)
                    cpu = cpu_seconds(proc.pid) - before
                    if proc.poll() is not None:
                        raise RuntimeError(f"{target} exited with {proc.returncode} during {mode}")
                    reqs = r.get("requests", 0)
                    rows.append((rnd, target, mode, reqs / args.duration, r.get("p50_us", 0) / 1000,
                                 r.get("p99_us", 0) / 1000, cpu / max(reqs, 1) * 10000,
                                 wrk_errors(r)))
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"TLS origination, {time.strftime('%Y-%m-%d %H:%M')} (`bench/tls_origination_bench.py -d "
             f"{args.duration} -c {args.connections} --rounds {args.rounds}`); load average "
             f"{os.getloadavg()[0]:.2f} at the end (shared machine: noisy)", "",
             "| round | proxy | upstream | req/s | p50 ms | p99 ms | proxy CPU-s / 10k req | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for rnd, t, mode, rps, p50, p99, cpu, err in rows:
        lines.append(f"| {rnd} | {t} | {mode} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.3f} | {err} |")
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
