#!/usr/bin/env python3
"""xDS scale benchmark: skiff-xds-server pushes N EDS clusters with E endpoints each to one skiff over ADS.

Measures (see bench/xds_scale.md):
  * time from the CDS/EDS response leaving the server to its ACK arriving back (server's steady clock),
  * skiff's RSS before and after, bytes per cluster and per endpoint,
  * an EDS change on one cluster of the set: time from the push until traffic reaches the new endpoint.

Usage: bench/xds_scale.py [--clusters 10000] [--endpoints 5] [--concurrency 2] [--delta] [--runs 3]
Standard library only; needs build/bin/skiff and build/bin/skiff-xds-server.
"""

import argparse
import http.client
import http.server
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lines:
    """skiff-xds-server driven over stdin/stdout, one JSON line per command."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.out = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.out.put(line)

    def read(self, timeout=60.0):
        return json.loads(self.out.get(timeout=timeout))

    def command(self, text, timeout=120.0):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def close(self):
        try:
            self.command("quit", timeout=5)
        except Exception:
            pass
        stop(self.proc)


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def wait_until(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return pred()


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def heap_bytes(admin_port):
    """Live malloc'd bytes of skiff, every arena (admin /memory "allocated", glibc mallinfo2): unlike RSS
    it does not move with free memory an arena keeps, so it says where the growth comes from."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
        conn.request("GET", "/memory")
        body = json.loads(conn.getresponse().read())
        conn.close()
        return int(body["allocated"])
    except (OSError, ValueError, KeyError):
        return None


def per(delta, count):
    return None if delta is None or not count else round(delta / count)


def diff(a, b):
    return None if a is None or b is None else b - a


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def skiff_pid(proc, binary):
    """The pid of skiff itself: under --wrap (heaptrack, valgrind...) the process we started is the wrapper,
    whose RSS says nothing about skiff's."""
    name = Path(binary).name[:15]  # /proc/<pid>/comm is truncated to 15 characters
    todo = [proc.pid]
    while todo:
        pid = todo.pop(0)
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                return pid
        except OSError:
            continue
        todo += children(pid)
    return proc.pid


def settled_rss(pid, seconds=1.0):
    """RSS once it stopped moving (two reads `seconds` apart within 1%), at most 10 s."""
    last = rss_kib(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = rss_kib(pid)
        if abs(now - last) <= last / 100:
            return now
        last = now
    return last


class Backend:
    """A loopback HTTP server answering every GET with its tag."""

    def __init__(self, tag):
        body = tag.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def bootstrap(xds_port, listener_port, admin_port, delta, shift_cluster):
    return {
        "node": {"id": "sidecar~127.0.0.1~bench.default~default.svc.cluster.local", "cluster": "bench"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if delta else "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                           "set_node_on_first_message_only": True},
            "cds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
        },
        "static_resources": {
            "clusters": [{
                "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}}]}]},
            }],
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM, "stat_prefix": "bench",
                        "route_config": {"name": "local", "virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": shift_cluster}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router"}],
                    }}]}],
            }],
        },
    }


def cla_file(directory, cluster, port, name):
    path = Path(directory) / name
    path.write_text(json.dumps({"endpoints": [{"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}]}))
    return path


def answered(server, type_url, version):
    """The timing entry of the last response of type_url with `version` once it is ACKed, else None."""
    entries = [t for t in server.command("timing")["timing"]
               if t["type_url"] == type_url and t["version"] == version]
    if entries and entries[-1]["answer_us"] is not None:
        if entries[-1]["nack"]:
            raise RuntimeError(f"{type_url} version {version} was NACKed")
        return entries[-1]
    return None


def get(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        conn.close()
        return resp.status, body
    except OSError as e:
        return 0, str(e)


class Run:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.server = Lines([str(args.server)])
        hello = self.server.read()
        if hello.get("event") != "listening":
            raise RuntimeError(f"skiff-xds-server: {hello}")
        self.listener_port = free_port()
        self.admin_port = free_port()
        config = Path(tmp) / "skiff.json"
        shift = args.prefix + "0"
        config.write_text(json.dumps(bootstrap(hello["port"], self.listener_port, self.admin_port, args.delta,
                                               shift)))
        self.log = open(Path(tmp) / "skiff.log", "w")
        self.skiff = subprocess.Popen(
            args.wrap.split() + [str(args.skiff), "-c", str(config), "--concurrency", str(args.concurrency), "-l", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(lambda: self.server.command("status")["streams"] == 1, 60):
            raise RuntimeError(f"skiff did not connect; log in {self.log.name}")
        self.pid = skiff_pid(self.skiff, args.skiff)
        if not wait_until(lambda: any(t["type_url"] == CDS and t["answer_us"] is not None
                                      for t in self.server.command("timing")["timing"]), 20):
            raise RuntimeError("the initial (empty) CDS response was not ACKed")

    def generate(self, clusters, endpoints, timeout):
        """Pushes the generated set; returns the CDS and EDS timing entries (CDS None when unchanged)."""
        before = {(t["type_url"], t["nonce"]) for t in self.server.command("timing")["timing"]}
        reply = self.server.command(f"generate {clusters} {endpoints} {self.args.prefix}", timeout=timeout)
        version = reply["version"]
        sent = [t for t in self.server.command("timing")["timing"] if (t["type_url"], t["nonce"]) not in before]
        cds = None
        if any(t["type_url"] == CDS for t in sent):
            cds = wait_until(lambda: answered(self.server, CDS, version), timeout, 0.05)
            if not cds:
                raise RuntimeError("CDS not ACKed in time")
        # EDS follows the CDS ACK (skiff subscribes to the new names); wait for an EDS response carrying
        # every cluster and its ACK.
        def eds_done():
            entries = [t for t in self.server.command("timing")["timing"]
                       if t["type_url"] == EDS and (t["type_url"], t["nonce"]) not in before]
            total = sum(t["resources"] for t in entries)
            if not entries or entries[-1]["answer_us"] is None:
                return None
            if entries[-1]["nack"]:
                raise RuntimeError("EDS NACKed")
            full = entries[-1]["resources"] >= clusters or (self.args.delta and total >= clusters)
            return entries if full else None
        eds = wait_until(eds_done, timeout, 0.05)
        if not eds:
            raise RuntimeError("EDS not ACKed in time")
        return cds, eds

    def shift(self, backend_a, backend_b, timeout=30):
        cluster = self.args.prefix + "0"
        a = cla_file(self.tmp, cluster, backend_a.port, "a.json")
        b = cla_file(self.tmp, cluster, backend_b.port, "b.json")
        self.server.command(f"push {a}")
        if not wait_until(lambda: get(self.listener_port) == (200, "A"), timeout):
            raise RuntimeError(f"traffic never reached backend A: {get(self.listener_port)}")
        start = time.monotonic()
        self.server.command(f"push {b}")  # replies once the response has been written to the stream
        pushed = time.monotonic()
        if not wait_until(lambda: get(self.listener_port) == (200, "B"), timeout, 0.001):
            raise RuntimeError("traffic never reached backend B")
        done = time.monotonic()
        return (done - start) * 1000, (pushed - start) * 1000

    def close(self):
        # SIGKILL under a heap profiler: what is still allocated shows as "leaked" (the live set).
        stop(self.skiff, signal.SIGKILL if self.args.wrap else signal.SIGTERM)
        self.log.close()
        self.server.close()


def ms(entry):
    return (entry["answer_us"] - entry["sent_us"]) / 1000


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusters", type=int, default=10000)
    p.add_argument("--endpoints", type=int, default=5, help="endpoints per cluster")
    p.add_argument("--concurrency", type=int, default=2, help="skiff worker threads")
    p.add_argument("--delta", action="store_true", help="DELTA_GRPC instead of SotW")
    p.add_argument("--prefix", default="bench-")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--skiff", type=Path, default=ROOT / "build/bin/skiff")
    p.add_argument("--server", type=Path, default=ROOT / "build/bin/skiff-xds-server")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--wrap", default="", help="command prefix for skiff, e.g. 'heaptrack -o /tmp/skiff.ht'")
    p.add_argument("--no-split", action="store_true", help="skip the second run (per cluster / per endpoint)")
    p.add_argument("--runs", type=int, default=3, help="repetitions of the split run (median reported)")
    args = p.parse_args()
    for binary in (args.skiff, args.server):
        if not binary.exists():
            sys.exit(f"{binary} is missing: build it first")

    n, e = args.clusters, args.endpoints
    result = {"clusters": n, "endpoints": n * e, "concurrency": args.concurrency,
              "mode": "delta" if args.delta else "sotw"}
    backend_a, backend_b = Backend("A"), Backend("B")
    try:
        # 1. Everything at once: time to ACK, RSS before/after.
        with tempfile.TemporaryDirectory(prefix="skiff-xds-bench-") as tmp:
            run = Run(args, tmp)
            try:
                rss0 = settled_rss(run.pid)
                t0 = time.monotonic()
                cds, eds = run.generate(n, e, args.timeout)
                wall = (time.monotonic() - t0) * 1000
                rss1 = settled_rss(run.pid)
                result.update({
                    "cds_ack_ms": round(ms(cds), 1),
                    "eds_ack_ms": round(sum(ms(t) for t in eds), 1),
                    "apply_total_ms": round((eds[-1]["answer_us"] - cds["sent_us"]) / 1000, 1),
                    "wall_ms": round(wall, 1),
                    "rss_before_kib": rss0, "rss_after_kib": rss1,
                    "bytes_per_cluster_with_endpoints": round((rss1 - rss0) * 1024 / n),
                })
                shift_ms, push_ms = run.shift(backend_a, backend_b)
                result["eds_shift_ms"] = round(shift_ms, 1)
                result["eds_shift_push_ms"] = round(push_ms, 1)
            finally:
                run.close()
        # 2. Clusters first (empty assignments), then the endpoints: bytes per cluster and per endpoint. RSS
        # moves with what malloc arenas keep (gRPC's threads), so this is repeated and the median reported.
        if not args.no_split:
            runs = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory(prefix="skiff-xds-bench-") as tmp:
                    run = Run(args, tmp)
                    try:
                        rss0, heap0 = settled_rss(run.pid), heap_bytes(run.admin_port)
                        run.generate(n, 0, args.timeout)
                        rss1, heap1 = settled_rss(run.pid), heap_bytes(run.admin_port)
                        _, eds = run.generate(n, e, args.timeout)
                        rss2, heap2 = settled_rss(run.pid), heap_bytes(run.admin_port)
                        runs.append({
                            "bytes_per_cluster": round((rss1 - rss0) * 1024 / n),
                            "bytes_per_endpoint": round((rss2 - rss1) * 1024 / (n * e)) if e else None,
                            "heap_bytes_per_cluster": per(diff(heap0, heap1), n),
                            "heap_bytes_per_endpoint": per(diff(heap1, heap2), n * e),
                            "eds_only_ack_ms": round(sum(ms(t) for t in eds), 1),
                        })
                    finally:
                        run.close()
            for key in runs[0]:
                result[key] = median(r[key] for r in runs)
                if len(runs) > 1:
                    result[key + "_runs"] = [r[key] for r in runs]
    finally:
        backend_a.close()
        backend_b.close()

    if args.json:
        print(json.dumps(result))
        return
    goals = {"apply_total_ms": 1000, "bytes_per_cluster": 2048, "bytes_per_endpoint": 200}
    for key, value in result.items():
        goal = goals.get(key)
        mark = "" if goal is None or not isinstance(value, (int, float)) else ("  (goal <= %d: %s)" % (goal, "met" if value <= goal
                                                                                  else "MISSED"))
        print(f"{key:36} {value}{mark}")


if __name__ == "__main__":
    main()
