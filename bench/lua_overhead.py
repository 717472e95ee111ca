#!/usr/bin/python3
"""Lua filter overhead, A/B with both proxies loaded at once.

Two Skiff processes (A and B, one worker each) proxy to one nginx backend; each gets its own wrk (keep-alive,
small GET) and both loads run at the same time, so both proxies see the same machine contention. Proxy CPU
per request is utime+stime from /proc/<pid>/stat around the round divided by the requests wrk completed.
The overhead of a round is B's CPU per request over A's; the figure to quote is the median over rounds.

Default: A = no filter, B = configs/lua/headers.lua (one header added per direction), same binary.
`--a-skiff old/skiff --b-skiff build/bin/skiff --b-filter none` instead compares two binaries on the plain
path (did a core-path change make it slower?).

`--instructions` instead runs each proxy in turn under valgrind's callgrind and reports user-space
instructions per request (deterministic: no other process changes them; the kernel's share is not counted,
and A and B make the same system calls per request).

On a shared machine the CPU figures are noisy (other processes take turns on the same cores): use several
rounds and read the spread, and rerun on a quiet machine for figures to publish. Standard library only.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import run  # noqa: E402  (bench/run.py: process handling, configs, wrk)


def parse_args(argv):
    root = os.path.dirname(BENCH_DIR)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a-skiff", default=os.path.join(root, "build", "bin", "skiff"))
    p.add_argument("--b-skiff", default=None, help="default: the same binary as A")
    p.add_argument("--a-filter", default="none", help="'none' or a Lua script for A")
    p.add_argument("--b-filter", default=os.path.join(run.CONFIGS, "lua", "headers.lua"),
                   help="'none' or a Lua script for B (default configs/lua/headers.lua)")
    p.add_argument("-d", "--duration", type=int, default=8, help="seconds per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("-c", "--connections", type=int, default=50, help="per wrk")
    p.add_argument("--skiff-args", default="-l warn")
    p.add_argument("--instructions", action="store_true",
                   help="callgrind: user-space instructions per request instead of CPU time (needs valgrind)")
    a = p.parse_args(argv)
    a.b_skiff = a.b_skiff or a.a_skiff
    a.threads = 1
    return a


class Wrk:
    """One wrk run in the background (run.run_wrk's command line)."""

    def __init__(self, args, port, seconds):
        argv = ["wrk", "-t1", "-c", str(args.connections), "-d", f"{seconds}s", "--timeout", "5s",
                "-s", os.path.join(run.CONFIGS, "report.lua"), f"http://127.0.0.1:{port}/"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self, seconds):
        out, _ = self.proc.communicate(timeout=seconds + 30)
        for line in out.splitlines():
            if line.startswith("BENCH "):
                return {k: int(v) for k, v in (kv.split("=") for kv in line[6:].split())}
        raise RuntimeError("wrk failed: " + out[-300:])


def user_seconds(pid):
    """utime of one process (run.cpu_seconds is utime+stime)."""
    try:
        return int(run.read_stat(pid)[11]) / run.TICK
    except (OSError, IndexError):
        return 0.0


def start_proxy(args, procs, tmp, label, binary, script, backend_port, prefix=()):
    ports = {"listen_port": run.free_port(), "admin_port": run.free_port(), "backend_port": backend_port}
    if script == "none":
        cfg = run.render("skiff.yaml", f"{tmp}/{label}.yaml", **ports)
    else:
        cfg = run.render("skiff-lua.yaml", f"{tmp}/{label}.yaml", lua_file=os.path.abspath(script), **ports)
    argv = list(prefix) + [os.path.abspath(binary), "-c", cfg, "--concurrency", "1"] + args.skiff_args.split()
    proc = procs.start(argv, f"{tmp}/{label}.log")
    err = run.wait_ready(ports["listen_port"], proc, deadline_s=60 if prefix else 10)
    if err:
        raise RuntimeError(f"proxy {label} ({binary}): {err}; log: {run.tail(f'{tmp}/{label}.log')}")
    if script != "none":
        err = run.lua_header_problem(ports["listen_port"])
        if err and os.path.basename(script) == "headers.lua":
            raise RuntimeError(f"proxy {label}: {err}")
    return proc, ports["listen_port"], ports["admin_port"]


RQ_TOTAL = "http.bench.downstream_rq_total"  # stat_prefix "bench" in configs/skiff*.yaml


def instructions_per_request(args, procs, tmp, label, binary, script, backend_port):
    """Runs one proxy under callgrind; instrumentation is on only around a measured wrk run."""
    out = f"{tmp}/callgrind.{label}"
    prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no"]
    proc, port, admin = start_proxy(args, procs, tmp, label, binary, script, backend_port, prefix)
    ctl = lambda *a: subprocess.run(["callgrind_control", *a, str(proc.pid)], capture_output=True, check=True)
    Wrk(args, port, 2).result(2)  # warm, uninstrumented
    ctl("-i", "on")
    Wrk(args, port, 2).result(2)  # warm, instrumented (valgrind translates the hot code)
    ctl("-z")
    before = run.admin_stat(admin, RQ_TOTAL)
    Wrk(args, port, args.duration).result(args.duration)
    after = run.admin_stat(admin, RQ_TOTAL)
    ctl("-d")
    dumps = sorted((f for f in os.listdir(tmp) if f.startswith(f"callgrind.{label}.")),
                   key=lambda f: int(f.rsplit(".", 1)[1]))
    total = None
    with open(os.path.join(tmp, dumps[-1])) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
                break
    procs.stop(proc)
    requests = after - before  # admin /stats requests are not proxied, so not counted
    return total / requests, requests


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for tool in ["wrk", "nginx"] + (["valgrind", "callgrind_control"] if args.instructions else []):
        if shutil.which(tool) is None:
            print(f"lua_overhead: {tool} not found (Debian: wrk, nginx-light, valgrind)", file=sys.stderr)
            return 2
    procs = run.Procs()
    tmp = tempfile.mkdtemp(prefix="skiff-lua-ab-")
    try:
        backend_port = run.free_port()
        cfg = run.render("backend-nginx.conf", f"{tmp}/backend.conf", tmp=tmp, backend_port=backend_port)
        backend = procs.start(["nginx", "-p", tmp, "-c", cfg, "-e", f"{tmp}/backend-error.log"],
                              f"{tmp}/backend.log")
        deadline = time.monotonic() + 10
        while True:
            try:
                run.get(backend_port)
                break
            except OSError:
                if time.monotonic() > deadline or backend.poll() is not None:
                    raise RuntimeError("backend nginx did not start")
                time.sleep(0.05)
        print(f"A: {args.a_skiff} filter={args.a_filter}\nB: {args.b_skiff} filter={args.b_filter}")
        if args.instructions:
            print(f"callgrind, {args.rounds} round(s) of {args.duration} s, wrk -t1 -c{args.connections}, "
                  f"one worker; user-space instructions per request")
            ratios = []
            for r in range(args.rounds):
                ia, na = instructions_per_request(args, procs, tmp, f"A{r}", args.a_skiff, args.a_filter,
                                                  backend_port)
                ib, nb = instructions_per_request(args, procs, tmp, f"B{r}", args.b_skiff, args.b_filter,
                                                  backend_port)
                ratios.append(ib / ia - 1)
                print(f"round {r + 1}: A {ia:.0f} instr/req ({na} requests) | B {ib:.0f} instr/req "
                      f"({nb} requests) | B over A {ratios[-1] * 100:+.1f} % (+{ib - ia:.0f})")
            print(f"median B over A: {statistics.median(ratios) * 100:+.1f} %")
            return 0
        a, a_port, _ = start_proxy(args, procs, tmp, "A", args.a_skiff, args.a_filter, backend_port)
        b, b_port, _ = start_proxy(args, procs, tmp, "B", args.b_skiff, args.b_filter, backend_port)
        print(f"{args.rounds} rounds x {args.duration} s, wrk -t1 -c{args.connections} on each at once, "
              f"one worker each; CPU = utime+stime per request")
        if args.warmup > 0:
            wa, wb = Wrk(args, a_port, args.warmup), Wrk(args, b_port, args.warmup)
            wa.result(args.warmup), wb.result(args.warmup)
        rows = []
        for r in range(args.rounds):
            ca, cb = run.cpu_seconds([a.pid]), run.cpu_seconds([b.pid])
            ua = user_seconds(a.pid)
            # Which load starts first alternates, so neither side always gets the head start.
            if r % 2 == 0:
                wa, wb = Wrk(args, a_port, args.duration), Wrk(args, b_port, args.duration)
            else:
                wb, wa = Wrk(args, b_port, args.duration), Wrk(args, a_port, args.duration)
            ra, rb = wa.result(args.duration), wb.result(args.duration)
            ca, cb = run.cpu_seconds([a.pid]) - ca, run.cpu_seconds([b.pid]) - cb
            ua = user_seconds(a.pid) - ua
            row = {
                "a_us": ca * 1e6 / max(ra["requests"], 1), "b_us": cb * 1e6 / max(rb["requests"], 1),
                "a_rps": ra["requests"] * 1e6 / ra["duration_us"], "b_rps": rb["requests"] * 1e6 / rb["duration_us"],
                "errors": sum(v for k, v in list(ra.items()) + list(rb.items()) if k.startswith("err")),
            }
            row["ratio"] = row["b_us"] / row["a_us"] - 1
            row["a_user"] = ua / ca if ca > 0 else 0.0
            rows.append(row)
            print(f"round {r + 1}: A {row['a_us']:.2f} us/req {row['a_rps']:.0f} req/s | "
                  f"B {row['b_us']:.2f} us/req {row['b_rps']:.0f} req/s | B/A CPU {row['ratio'] * 100:+.1f} % | "
                  f"A user share {row['a_user'] * 100:.0f} %"
                  + (f" | {row['errors']} wrk errors" if row["errors"] else ""))
        med = {k: statistics.median(r[k] for r in rows)
               for k in ("a_us", "b_us", "a_rps", "b_rps", "ratio", "a_user")}
        print(f"median: A {med['a_us']:.2f} us/req {med['a_rps']:.0f} req/s | B {med['b_us']:.2f} us/req "
              f"{med['b_rps']:.0f} req/s | CPU/request B over A {med['ratio'] * 100:+.1f} % "
              f"(+{med['b_us'] - med['a_us']:.2f} us), req/s B over A {(med['b_rps'] / med['a_rps'] - 1) * 100:+.1f} %")
        # With --instructions' user-space ratio R, B's CPU overhead is about R x this share, since A and B
        # make the same system calls per request.
        print(f"A's user-space share of its CPU: {med['a_user'] * 100:.0f} % (median)")
        return 0
    finally:
        procs.stop_all()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
