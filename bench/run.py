#!/usr/bin/python3
"""Proxy benchmark: direct-to-backend vs Skiff vs HAProxy vs nginx, identical settings, one go.

Target skiff-lua is Skiff with one Lua filter (configs/lua/headers.lua) for the filter's overhead; with it,
a memory probe also compares plain Skiff with Skiff running an empty Lua script.

Standard library only. See bench/README.md for the method and how to read the results.
"""
import argparse
import datetime
import fcntl
import http.client
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(BENCH_DIR, "configs")
BODY = b"hello from backend\n"
TICK = os.sysconf("SC_CLK_TCK")
DEFAULT_TARGETS = ["direct", "skiff", "haproxy", "nginx"]
ALL_TARGETS = DEFAULT_TARGETS + ["skiff-lua", "skiff-wasm"]
LUA_GAUGE = "http.bench.lua.memory_bytes"  # stat_prefix "bench" in configs/skiff-lua.yaml


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--duration", type=int, default=10, help="seconds of load per target (default 10)")
    p.add_argument("-c", "--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("-t", "--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first (default 2)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the targets this many times, interleaved, and report each target's median "
                        "round by CPU per request (default 1; use 5+ to compare filters within a few %%)")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help="comma list of " + ",".join(ALL_TARGETS) + " (default " + ",".join(DEFAULT_TARGETS) + ")")
    p.add_argument("--skiff", default=os.path.join(BENCH_DIR, "..", "build", "bin", "skiff"),
                   help="skiff binary (default build/bin/skiff)")
    p.add_argument("--skiff-args", default="", help="extra arguments for skiff, e.g. '--log-level warn'")
    p.add_argument("--harness-cpu", default="0", help="CPU for wrk and the backend (default 0)")
    p.add_argument("--proxy-cpu", default="1", help="CPU for the proxy under test (default 1)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything with taskset")
    p.add_argument("--build-lock-wait", type=int, default=60,
                   help="seconds to wait for /tmp/skiff-build.lock so no build runs meanwhile; 0 = don't take it")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results"), help="results directory")
    p.add_argument("--name", default=datetime.date.today().isoformat(), help="results file stem (default today)")
    p.add_argument("--no-write", action="store_true", help="only print the table")
    a = p.parse_args()
    a.targets = [t for t in a.targets.split(",") if t]
    bad = [t for t in a.targets if t not in ALL_TARGETS]
    if bad:
        p.error("unknown target(s): " + ",".join(bad))
    if not (1 <= a.duration <= 300 and 0 <= a.warmup <= 60):
        p.error("duration must be 1..300 s and warmup 0..60 s")
    return a


# ---------------------------------------------------------------- processes

class Procs:
    """Every process we start, in its own session, so cleanup can kill whole groups by id."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path, cpu=None):
        if cpu is not None:
            argv = ["taskset", "-c", cpu] + argv
        log = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(self.procs):
            self.stop(proc)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_pids(root):
    """root and all its descendants (nginx master + worker)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(read_stat(int(d))[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def read_stat(pid):
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, ...]."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            f = read_stat(pid)
            total += int(f[11]) + int(f[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / TICK


def mem_kb(pids, key):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def machine_busy_seconds():
    """CPU-seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICK


def get(port, timeout=1.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def keepalive_problem(port):
    """The benchmark is about keep-alive: check that two requests in a row share one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        for i in range(2):
            conn.request("GET", "/")
            r = conn.getresponse()
            if r.status != 200 or r.read() != BODY or r.will_close:
                return f"request {i + 1} on one connection: HTTP {r.status}, will_close={r.will_close}"
        return None
    except OSError as e:
        return f"second request on a kept-alive connection failed ({e})"
    finally:
        conn.close()


def wait_ready(port, proc, deadline_s=10):
    """Poll until a GET through `port` returns the backend's body; None or an error string."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return f"exited with status {proc.returncode}"
        try:
            status, body = get(port)
            if status == 200 and body == BODY:
                return None
            last = f"HTTP {status} {body[:60]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    return "not ready: " + last


# ---------------------------------------------------------------- configs and targets

def render(template, out_path, **values):
    with open(os.path.join(CONFIGS, template)) as f:
        text = f.read()

    def sub(m):
        if m.group(1) not in values:
            raise KeyError(f"{template}: no value for ${{{m.group(1)}}}")
        return str(values[m.group(1)])

    with open(out_path, "w") as f:
        f.write(re.sub(r"\$\{(\w+)\}", sub, text))
    return out_path


def proxy_argv(target, args, tmp, ports):
    """Command line for a proxy target, or None if it is not available."""
    if target == "haproxy":
        cfg = render("haproxy.cfg", f"{tmp}/haproxy.cfg", **ports)
        return ["haproxy", "-db", "-f", cfg]
    if target == "nginx":
        cfg = render("nginx-proxy.conf", f"{tmp}/nginx-proxy.conf", tmp=tmp, **ports)
        return ["nginx", "-p", tmp, "-c", cfg, "-e", f"{tmp}/nginx-proxy-error.log"]
    if target == "skiff":
        return skiff_argv(args, render("skiff.yaml", f"{tmp}/skiff.yaml", **ports))
    if target == "skiff-lua":
        return skiff_argv(args, render("skiff-lua.yaml", f"{tmp}/skiff-lua.yaml",
                                       lua_file=os.path.join(CONFIGS, "lua", "headers.lua"), **ports))
    if target == "skiff-wasm":  # the documents' filter, built by CMake into <build>/wasm
        wasm = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.skiff))), "wasm",
                            "demo_filter.wasm")
        if not os.path.exists(wasm):
            return None
        return skiff_argv(args, render("skiff-wasm.yaml", f"{tmp}/skiff-wasm.yaml", wasm_file=wasm, **ports))
    raise ValueError(target)


def skiff_argv(args, cfg):
    if not os.access(args.skiff, os.X_OK):
        return None
    return [os.path.abspath(args.skiff), "-c", cfg, "--concurrency", "1"] + args.skiff_args.split()


def admin_stat(port, name):
    """One counter or gauge from Skiff's admin /stats ("name: value" lines), or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/stats")
        body = conn.getresponse().read().decode(errors="replace")
    except OSError:
        return None
    finally:
        conn.close()
    m = re.search(r"^" + re.escape(name) + r": (-?\d+)$", body, re.M)
    return int(m.group(1)) if m else None


def lua_header_problem(port, header="x-bench-lua", value="1"):
    """skiff-lua/-wasm must really run their filter: the response carries the header it adds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        return None if r.getheader(header) == value else f"response lacks {header} (filter not run?)"
    except OSError as e:
        return f"header check failed ({e})"
    finally:
        conn.close()


def run_wrk(args, port, seconds, cpu):
    argv = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
            "--timeout", "5s", "-s", os.path.join(CONFIGS, "report.lua"), f"http://127.0.0.1:{port}/"]
    if cpu is not None:
        argv = ["taskset", "-c", cpu] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    m = re.search(r"^BENCH (.*)$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


class RssSampler(threading.Thread):
    """Samples the summed VmRSS of a process tree while the load runs."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root, self.peak_kb, self.stop = root, 0, threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            self.peak_kb = max(self.peak_kb, mem_kb(tree_pids(self.root), "VmRSS"))


def bench_target(target, args, tmp, procs, backend_port, backend_pids):
    """One row of results. The proxy is started, probed, loaded, measured and stopped."""
    row = {"target": target, "status": "ok"}
    harness_cpu = None if args.no_pin else args.harness_cpu
    proxy_cpu = None if args.no_pin else args.proxy_cpu
    proc = None
    if target == "direct":
        port = backend_port
    else:
        ports = {"listen_port": free_port(), "backend_port": backend_port, "admin_port": free_port()}
        argv = proxy_argv(target, args, tmp, ports)
        if argv is None:
            row["status"] = "not built"
            return row
        port = ports["listen_port"]
        log = f"{tmp}/{target}.log"
        proc = procs.start(argv, log, proxy_cpu)
        err = wait_ready(port, proc)
        if err:
            row["status"] = "failed: " + err
            row["log"] = tail(log)
            procs.stop(proc)
            return row
    problem = keepalive_problem(port)
    if not problem and target == "skiff-lua":
        problem = lua_header_problem(port)
    if not problem and target == "skiff-wasm":
        problem = lua_header_problem(port, "x-proxy-wasm", "my-wasm-filter")
    if problem:
        row["status"] = "warning: " + problem
    try:
        pids = tree_pids(proc.pid) if proc else []
        row["rss_idle_kb"] = mem_kb(pids, "VmRSS") if proc else None
        if args.warmup:
            run_wrk(args, port, args.warmup, harness_cpu)
        sampler = RssSampler(proc.pid) if proc else None
        if sampler:
            sampler.start()
        pids = tree_pids(proc.pid) if proc else []
        cpu0, back0, busy0 = cpu_seconds(pids), cpu_seconds(backend_pids), machine_busy_seconds()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w = run_wrk(args, port, args.duration, harness_cpu)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1, back1, busy1 = cpu_seconds(pids), cpu_seconds(backend_pids), machine_busy_seconds()
        if sampler:
            sampler.stop.set()
            sampler.join()
        n = max(w["requests"], 1)
        row.update(
            requests=w["requests"], rps=w["requests"] / (w["duration_us"] / 1e6),
            p50_ms=w["p50_us"] / 1000, p99_ms=w["p99_us"] / 1000,
            errors=w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"],
            proxy_cpu_s=(cpu1 - cpu0) if proc else None,
            # Below 0.1 CPU-s the 10 ms clock tick makes the ratio meaningless.
            cpu_per_10k=(cpu1 - cpu0) / n * 10000 if proc and cpu1 - cpu0 >= 0.1 else None,
            backend_cpu_s=back1 - back0,
            wrk_cpu_s=(ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            busy_s=busy1 - busy0,
            rss_peak_kb=max(sampler.peak_kb, mem_kb(pids, "VmHWM")) if proc else None)
        # CPU the rest of the machine used meanwhile: contention from builds etc.
        row["other_cpu_s"] = max(0.0, row["busy_s"] - row["backend_cpu_s"] - row["wrk_cpu_s"]
                                 - (row["proxy_cpu_s"] or 0))
        if target == "skiff-lua":
            row["lua_bytes"] = admin_stat(ports["admin_port"], LUA_GAUGE)
        if proc and proc.poll() is not None:
            row["status"] = f"exited during load ({proc.returncode})"
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        row["status"] = "failed: " + " ".join(str(e).split())[:200]
        if proc:
            row["log"] = tail(f"{tmp}/{target}.log")
    finally:
        if proc:
            procs.stop(proc)
    return row


def median_round(rows):
    """The round with the median CPU per request; interleaved rounds spread slow phases of a shared machine
    over every target instead of penalising whichever ran during them."""
    ok = [r for r in rows if r.get("cpu_per_10k") is not None and r["status"] == "ok"]
    if len(rows) == 1 or not ok:
        return rows[0]
    ok.sort(key=lambda r: r["cpu_per_10k"])
    row = dict(ok[len(ok) // 2])
    row["rounds"] = [round(r["cpu_per_10k"], 3) for r in ok]
    return row


def lua_memory_probe(args, tmp, procs, backend_port):
    """Memory of one Lua state: plain skiff vs skiff with an empty script, both after the same warm-up.

    With --concurrency 1 there is one worker, hence one interpreter, so the filter's memory_bytes gauge
    is the heap of exactly one Lua state. The RSS difference adds what the gauge does not see (the
    filter's C++ objects, allocator slack)."""
    out = {}
    empty = os.path.join(CONFIGS, "lua", "empty.lua")
    for key, template in (("plain", "skiff.yaml"), ("empty_lua", "skiff-lua.yaml")):
        ports = {"listen_port": free_port(), "backend_port": backend_port, "admin_port": free_port()}
        cfg = render(template, f"{tmp}/probe-{key}.yaml", lua_file=empty, **ports)
        argv = skiff_argv(args, cfg)
        if argv is None:
            return None
        proc = procs.start(argv, f"{tmp}/probe-{key}.log", None if args.no_pin else args.proxy_cpu)
        try:
            err = wait_ready(ports["listen_port"], proc)
            if err:
                out["error"] = f"{key}: {err}"
                return out
            if key == "empty_lua":  # after the single readiness request: a fresh state, little garbage
                out["empty_lua_first_bytes"] = admin_stat(ports["admin_port"], LUA_GAUGE)
            run_wrk(args, ports["listen_port"], max(args.warmup, 1), None if args.no_pin else args.harness_cpu)
            out[key + "_rss_kb"] = mem_kb(tree_pids(proc.pid), "VmRSS")
            if key == "empty_lua":
                out["empty_lua_bytes"] = admin_stat(ports["admin_port"], LUA_GAUGE)
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
            out["error"] = f"{key}: " + " ".join(str(e).split())[:200]
            return out
        finally:
            procs.stop(proc)
    return out


def lua_summary(rows, probe):
    """Lines about the Lua filter's cost: CPU overhead vs plain skiff, memory per Lua state."""
    by = {r["target"]: r for r in rows}
    base, lua = by.get("skiff", {}), by.get("skiff-lua", {})
    lines = []
    if base.get("cpu_per_10k") and lua.get("cpu_per_10k"):
        pct = (lua["cpu_per_10k"] / base["cpu_per_10k"] - 1) * 100
        lines.append(f"- Lua filter CPU overhead: {pct:+.1f} % proxy CPU per request "
                     f"({base['cpu_per_10k']:.3f} -> {lua['cpu_per_10k']:.3f} CPU-s / 10k req, "
                     "script adds one request and one response header)")
    if base.get("rps") and lua.get("rps"):
        lines.append(f"- req/s: {base['rps']:,.0f} -> {lua['rps']:,.0f} "
                     f"({(lua['rps'] / base['rps'] - 1) * 100:+.1f} %)")
    if lua.get("lua_bytes") is not None:
        lines.append(f"- Lua state heap with the header script after load (`{LUA_GAUGE}`): "
                     f"{lua['lua_bytes'] / 1024:.1f} KiB")
    if probe:
        if probe.get("empty_lua_bytes") is not None:
            lines.append(f"- memory per Lua state, empty script (configs/lua/empty.lua, `{LUA_GAUGE}` after "
                         f"warm-up, 1 worker = 1 state): {probe['empty_lua_bytes'] / 1024:.1f} KiB"
                         + ("" if probe.get("empty_lua_first_bytes") is None else
                            f" (after the first request: {probe['empty_lua_first_bytes'] / 1024:.1f} KiB; "
                            "the difference is garbage not yet collected)"))
        if probe.get("plain_rss_kb") and probe.get("empty_lua_rss_kb"):
            d = probe["empty_lua_rss_kb"] - probe["plain_rss_kb"]
            lines.append(f"- RSS after warm-up: plain skiff {probe['plain_rss_kb'] / 1024:.1f} MB, "
                         f"with empty Lua script {probe['empty_lua_rss_kb'] / 1024:.1f} MB, "
                         f"difference {d:+d} KiB")
        if probe.get("error"):
            lines.append(f"- memory probe failed: {probe['error']}")
    return lines


def tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------- output

def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def table(rows):
    head = ["target", "req/s", "p50 ms", "p99 ms", "proxy CPU-s / 10k req", "RSS idle MB",
            "RSS peak MB", "errors", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mb = lambda k: None if r.get(k) is None else r[k] / 1024
        lines.append("| " + " | ".join([
            r["target"], fmt(r.get("rps"), ",.0f"), fmt(r.get("p50_ms"), ".2f"), fmt(r.get("p99_ms"), ".2f"),
            fmt(r.get("cpu_per_10k"), ".3f"), fmt(mb("rss_idle_kb"), ".1f"), fmt(mb("rss_peak_kb"), ".1f"),
            fmt(r.get("errors"), "d"), r["status"].replace("|", "/").replace("\n", " ")]) + " |")
    return "\n".join(lines)


def context_table(rows):
    head = ["target", "requests", "proxy CPU-s", "backend CPU-s", "wrk CPU-s", "other CPU-s (not ours)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "requests" in r:
            lines.append("| " + " | ".join([
                r["target"], str(r["requests"]), fmt(r["proxy_cpu_s"], ".2f"), fmt(r["backend_cpu_s"], ".2f"),
                fmt(r["wrk_cpu_s"], ".2f"), fmt(r["other_cpu_s"], ".2f")]) + " |")
    return "\n".join(lines)


def svg(rows):
    """Two bar charts side by side: req/s (higher is better) and CPU-s/10k req (lower is better)."""
    panels = [("requests/s (higher is better)", "rps", ",.0f"),
              ("proxy CPU-s per 10k requests (lower is better)", "cpu_per_10k", ".3f")]
    colors = {"direct": "#999999", "skiff": "#1f77b4", "skiff-lua": "#6baed6", "haproxy": "#2ca02c",
              "nginx": "#d62728"}
    bar_h, gap, label_w, panel_w, top = 22, 8, 70, 250, 40
    height = top + len(rows) * (bar_h + gap) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * (label_w + panel_w + 60)}" height="{height}" '
           'font-family="sans-serif" font-size="12">', '<rect width="100%" height="100%" fill="white"/>']
    for i, (title, key, spec) in enumerate(panels):
        x0 = i * (label_w + panel_w + 60)
        vmax = max([r.get(key) or 0 for r in rows] + [1e-9])
        out.append(f'<text x="{x0 + 5}" y="20" font-weight="bold">{title}</text>')
        for j, r in enumerate(rows):
            y = top + j * (bar_h + gap)
            v = r.get(key)
            out.append(f'<text x="{x0 + 5}" y="{y + 15}">{r["target"]}</text>')
            if v is None:
                note = "n/a" if r["target"] == "direct" and key == "cpu_per_10k" else r["status"][:30]
                out.append(f'<text x="{x0 + label_w}" y="{y + 15}" fill="#888">{note}</text>')
                continue
            w = max(1, v / vmax * panel_w)
            out.append(f'<rect x="{x0 + label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="{colors.get(r["target"], "#555")}"/>')
            out.append(f'<text x="{x0 + label_w + w + 4:.1f}" y="{y + 15}">{format(v, spec)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        text = (out.stdout + out.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not available"


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def report(args, rows, info, versions, lock_note, started, lua_lines):
    pin = ("not pinned" if args.no_pin else
           f"wrk + backend on CPU {args.harness_cpu}, proxy on CPU {args.proxy_cpu} (taskset)")
    md = [f"# Proxy benchmark {args.name}", "",
          f"Run {started:%Y-%m-%d %H:%M} with `bench/run.sh` (method: bench/README.md).", "",
          table(rows), "", f"![req/s and CPU per 10k requests]({args.name}.svg)", "",
          *(["## Lua filter", ""] + lua_lines + [""] if lua_lines else []),
          "## Settings", "",
          f"- load: wrk, {args.threads} thread(s), {args.connections} keep-alive connections, "
          f"GET / ({len(BODY)}-byte body), {args.warmup} s warm-up then {args.duration} s measured, per target",
          *([f"- {args.rounds} interleaved rounds; each row is the target's median round by CPU per request "
             "(all rounds' CPU-s / 10k req: "
             + "; ".join(f"{r['target']} {', '.join(str(x) for x in r['rounds'])}" for r in rows if r.get("rounds"))
             + ")"] if args.rounds > 1 else []),
          "- each proxy with one worker: skiff `--concurrency 1`, haproxy `nbthread 1`, nginx `worker_processes 1`",
          "- backend: separate nginx, 1 worker, `return 200`; proxies keep connections to it alive",
          f"- pinning: {pin}",
          f"- build lock: {lock_note}", "",
          "## Machine", "",
          f"- {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}, load average at start "
          f"{' '.join(info['loadavg'])}",
          *[f"- {k}: {v}" for k, v in versions.items()], "",
          "## CPU accounting during the measured window", "",
          "`other` is CPU the rest of the machine used meanwhile; when it is large, req/s and latency are",
          "depressed by contention, while CPU-s per 10k requests still compares the proxies fairly.", "",
          context_table(rows), ""]
    for r in rows:
        if r.get("log"):
            md += [f"### {r['target']} log tail", "", "```", r["log"].rstrip(), "```", ""]
    return "\n".join(md)


# ---------------------------------------------------------------- main

def take_build_lock(wait_s):
    if wait_s <= 0:
        return None, "not taken (--build-lock-wait 0)"
    f = open("/tmp/skiff-build.lock", "a")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f, "held during the run (no builds ran meanwhile)"
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                return None, f"busy for {wait_s} s, ran without it (builds may have competed for CPU)"
            time.sleep(0.5)


def main():
    args = parse_args()
    for tool in ("wrk", "nginx") + (("taskset",) if not args.no_pin else ()):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (apt-get install wrk nginx-light haproxy util-linux)")
    cpus = os.sched_getaffinity(0)
    if not args.no_pin and not {int(args.harness_cpu), int(args.proxy_cpu)} <= cpus:
        print(f"bench: CPUs {args.harness_cpu},{args.proxy_cpu} not all available, not pinning", file=sys.stderr)
        args.no_pin = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="skiff-bench-")
    os.chmod(tmp, 0o755)  # nginx workers may run as nobody
    started = datetime.datetime.now()
    info = machine_info()
    versions = {"wrk": first_line(["wrk", "--version"]), "haproxy": first_line(["haproxy", "-v"]),
                "nginx": first_line(["nginx", "-v"]),
                "skiff": (first_line([args.skiff, "--version"]) if os.access(args.skiff, os.X_OK)
                          else "not built")}
    lock, lock_note = take_build_lock(args.build_lock_wait)
    rows, probe = [], None
    try:
        backend_port = free_port()
        cfg = render("backend-nginx.conf", f"{tmp}/backend.conf", tmp=tmp, backend_port=backend_port)
        backend = procs.start(["nginx", "-p", tmp, "-c", cfg, "-e", f"{tmp}/backend-error.log"],
                              f"{tmp}/backend.log", None if args.no_pin else args.harness_cpu)
        err = wait_ready(backend_port, backend)
        if err:
            sys.exit(f"bench: backend nginx {err}\n{tail(tmp + '/backend.log')}")
        backend_pids = tree_pids(backend.pid)
        rounds = {t: [] for t in args.targets}
        for r in range(max(args.rounds, 1)):
            for target in args.targets:
                label = f" (round {r + 1}/{args.rounds})" if args.rounds > 1 else ""
                print(f"bench: {target}{label} ...", file=sys.stderr, flush=True)
                rounds[target].append(bench_target(target, args, tmp, procs, backend_port, backend_pids))
        rows = [median_round(rounds[t]) for t in args.targets]
        if "skiff-lua" in args.targets:
            print("bench: Lua memory probe ...", file=sys.stderr, flush=True)
            probe = lua_memory_probe(args, tmp, procs, backend_port)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if lock:
            lock.close()
        shutil.rmtree(tmp, ignore_errors=True)

    lua_lines = lua_summary(rows, probe)
    if not args.no_write:
        os.makedirs(args.out, exist_ok=True)
        md_path = os.path.join(args.out, args.name + ".md")
        with open(md_path, "w") as f:
            f.write(report(args, rows, info, versions, lock_note, started, lua_lines))
        with open(os.path.join(args.out, args.name + ".svg"), "w") as f:
            f.write(svg(rows))
        print(f"bench: wrote {md_path} and {args.name}.svg", file=sys.stderr)
    print(table(rows))
    print()
    print(context_table(rows))
    if lua_lines:
        print()
        print("\n".join(lua_lines))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["mesh"]:  # interception cost over the netns mesh: bench/mesh_bench.py
        sys.path.insert(0, BENCH_DIR)
        import mesh_bench
        sys.exit(mesh_bench.main(sys.argv[2:]))
    sys.exit(main())
