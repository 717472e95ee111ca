"""What the bench scripts share: ports, starting and stopping processes, waiting for a port, CPU seconds from
/proc, and running wrk (through bench/configs/report.lua) and h2load with their output parsed.

Every process starts in its own session so stop_all() takes its children too; only 127.0.0.1 is used."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "bin"
CONFIGS = ROOT / "bench" / "configs"


def free_port():
    """A port the kernel just handed out on 127.0.0.1 (closed again, for the caller to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, deadline_s=10):
    """Waits until 127.0.0.1:port accepts connections; raises if `proc` exits or the deadline passes."""
    end = time.time() + deadline_s
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening")


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads) from /proc/<pid>/stat; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def pinned(argv, cpu):
    """argv run on CPU `cpu` (taskset) when one is given and taskset exists."""
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + list(argv)
    return list(argv)


class Procs:
    """The processes a bench started; stop_all() ends them (and their session) however the run went."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log=None, cpu=None, **popen_kw):
        """Starts argv in its own session; output goes to the file `log` if given, else as popen_kw say."""
        if log is not None:
            popen_kw.setdefault("stdout", open(log, "wb"))
            popen_kw.setdefault("stderr", subprocess.STDOUT)
        p = subprocess.Popen(pinned(argv, cpu), start_new_session=True, **popen_kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)


def run_wrk(url, seconds, connections, cpu=None, headers=()):
    """One wrk run (one thread) with bench/configs/report.lua; returns its BENCH line as {key: int}
    (requests, p50_us, p99_us, err_*...)."""
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
            "-s", str(CONFIGS / "report.lua")]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    out = subprocess.run(pinned(argv, cpu), capture_output=True, text=True, timeout=seconds + 30)
    m = re.search(r"^BENCH (.*)$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def wrk_errors(result):
    return sum(v for k, v in result.items() if k.startswith("err_"))


def parse_h2load(out):
    """(req/s, requests succeeded) from h2load's summary (0 when it did not finish)."""
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    return (float(m.group(1)) if m else 0.0), (int(done.group(3)) if done else 0)


def run_h2load(url, duration, clients, streams):
    """One h2load run (prior knowledge for http://): (req/s, requests succeeded, raw output)."""
    out = subprocess.run(["h2load", "-D", str(duration), "-c", str(clients), "-m", str(streams), "-t", "1", url],
                         capture_output=True, text=True).stdout
    rps, ok = parse_h2load(out)
    return rps, ok, out


def add_proxy_args(parser):
    """The options of the wrk-vs-HAProxy benches: duration, connections, binaries, targets, CPU pinning, --out."""
    parser.add_argument("-d", "--duration", type=int, default=10)
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("--handshake-connections", type=int, default=20)
    parser.add_argument("--skiff", default=str(BIN / "skiff"))
    parser.add_argument("--certs", default=str(BIN / "skiff-certs"))
    parser.add_argument("--targets", default="skiff,haproxy")
    parser.add_argument("--harness-cpu", default="0")
    parser.add_argument("--proxy-cpu", default="1")
    parser.add_argument("--out", help="also write the Markdown report here")


def require_tools(*tools):
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")


def make_workload_cert(certs_bin, tmp, name, sa, dns):
    """A skiff-certs CA in tmp/ca (made once) and a workload certificate for `dns` in tmp/<name>; returns
    (certificate directory, root certificate path)."""
    ca = Path(tmp) / "ca"
    if not (ca / "root-cert.pem").exists():
        subprocess.run([certs_bin, "ca", "init", "--out", ca], check=True, capture_output=True)
    out = Path(tmp) / name
    subprocess.run([certs_bin, "workload", "--ca-dir", ca, "--out", out, "--ns", "bench", "--sa", sa, "--dns", dns],
                   check=True, capture_output=True)
    return out, ca / "root-cert.pem"


def write_report(text, out=None):
    """Prints the Markdown report and, with --out, writes it there too."""
    print(text)
    if out:
        Path(out).write_text(text)
