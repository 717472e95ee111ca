#!/usr/bin/python3
"""TLS termination benchmark: Skiff vs HAProxy, one worker each, in front of the same nginx backend.

Two measurements per proxy (wrk over HTTPS to the proxy, plain HTTP keep-alive from the proxy to nginx):
  keep-alive  - `-c` connections reused for the whole run: TLS record cost only (req/s, p50/p99).
  handshakes  - every request on a new connection (`Connection: close`): full TLS handshakes
                (wrk makes no session resumption), so req/s = new handshakes/s.
Certificates: a skiff-certs CA and an EC P-256 workload certificate (the same for both proxies), TLS 1.3.
Proxy CPU seconds per 10k requests are read from /proc, like bench/run.py.

    bench/tls_bench.py                     # 10 s per row, prints a Markdown table
    bench/tls_bench.py -d 20 -c 50 --out bench/results/$(date +%F)-tls.md

The machine this was written on is shared (2 CPUs, other builds running): numbers from it are noisy;
re-run on a quiet machine for figures worth quoting. Every process runs in its own session and is killed
on exit; the temporary directory is removed. Only 127.0.0.1 is used.
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


def wrk_https(port, seconds, connections, close, cpu):
    return run_wrk(f"https://127.0.0.1:{port}/", seconds, connections, cpu,
                   headers=["Connection: close"] if close else ())


def skiff_config(tmp, port, admin, backend, cert_dir):
    text = (CONFIGS / "skiff.yaml").read_text()
    for k, v in {"listen_port": port, "admin_port": admin, "backend_port": backend}.items():
        text = text.replace("${" + k + "}", str(v))
    tls = (
        "    - transport_socket:\n"
        "        name: envoy.transport_sockets.tls\n"
        "        typed_config:\n"
        "          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n"
        "          common_tls_context:\n"
        "            alpn_protocols: [\"http/1.1\"]\n"
        "            tls_certificates:\n"
        f"            - certificate_chain: {{filename: \"{cert_dir}/cert-chain.pem\"}}\n"
        f"              private_key: {{filename: \"{cert_dir}/key.pem\"}}\n"
        "      filters:\n")
    assert "    - filters:\n" in text
    text = text.replace("    - filters:\n", tls, 1)
    path = tmp / "skiff-tls.yaml"
    path.write_text(text)
    return path


def haproxy_config(tmp, port, backend, cert_dir):
    pem = tmp / "haproxy.pem"
    pem.write_text((cert_dir / "cert-chain.pem").read_text() + (cert_dir / "key.pem").read_text())
    text = (CONFIGS / "haproxy.cfg").read_text()
    text = text.replace("bind 127.0.0.1:${listen_port}", f"bind 127.0.0.1:{port} ssl crt {pem} alpn http/1.1")
    text = text.replace("${backend_port}", str(backend))
    path = tmp / "haproxy-tls.cfg"
    path.write_text(text)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_proxy_args(p)
    args = p.parse_args()
    require_tools("wrk", "nginx", "haproxy")
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="skiff-tls-bench-"))
    rows = []
    try:
        server_cert, _ = make_workload_cert(args.certs, tmp, "server", "proxy", "localhost")
        backend = free_port()
        nginx_conf = tmp / "backend.conf"
        text = (CONFIGS / "backend-nginx.conf").read_text()
        nginx_conf.write_text(text.replace("${tmp}", str(tmp)).replace("${backend_port}", str(backend)))
        nginx = procs.start(["nginx", "-p", str(tmp), "-c", str(nginx_conf)], tmp / "nginx.log", args.harness_cpu)
        wait_port(backend, nginx)
        for target in args.targets.split(","):
            port = free_port()
            if target == "skiff":
                cfg = skiff_config(tmp, port, free_port(), backend, server_cert)
                proc = procs.start([args.skiff, "-c", str(cfg), "--concurrency", "1", "-l", "warn"],
                                   tmp / "skiff.log", args.proxy_cpu)
            elif target == "haproxy":
                cfg = haproxy_config(tmp, port, backend, server_cert)
                proc = procs.start(["haproxy", "-f", str(cfg), "-db"], tmp / "haproxy.log", args.proxy_cpu)
            else:
                sys.exit(f"unknown target {target}")
            wait_port(port, proc)
            for mode, close, conns in (("keep-alive", False, args.connections),
                                       ("handshakes", True, args.handshake_connections)):
                wrk_https(port, 2, conns, close, args.harness_cpu)  # warm-up
                before = cpu_seconds(proc.pid)
                r = wrk_https(port, args.duration, conns, close, args.harness_cpu)
                cpu = cpu_seconds(proc.pid) - before
                if proc.poll() is not None:
                    log = (tmp / f"{target}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{target} exited with {proc.returncode} during the {mode} run:\n{log}")
                reqs = r.get("requests", 0)
                rows.append((target, mode, reqs / args.duration, r.get("p50_us", 0) / 1000,
                             r.get("p99_us", 0) / 1000, cpu / max(reqs, 1) * 10000,
                             wrk_errors(r)))
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"TLS termination, {time.strftime('%Y-%m-%d %H:%M')} (`bench/tls_bench.py -d {args.duration} "
             f"-c {args.connections}`); load average {os.getloadavg()[0]:.2f} (shared machine: noisy)", "",
             "| proxy | mode | req/s | p50 ms | p99 ms | proxy CPU-s / 10k req | errors |",
             "|---|---|---|---|---|---|---|"]
    for t, mode, rps, p50, p99, cpu, err in rows:
        lines.append(f"| {t} | {mode} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.3f} | {err} |")
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
