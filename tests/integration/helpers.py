"""Helpers for the integration suite: ports, polling, HTTP over http.client and raw sockets, a skiff
process wrapper, config builders and tiny purpose-built backends."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

READY_TIMEOUT = 20.0


def free_port():
    """A port the kernel just handed out on 127.0.0.1 (closed again, so the caller can bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.05):
    """Polls predicate() until it returns a truthy value or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, http.client.HTTPException):
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---- HTTP clients -------------------------------------------------------------------------------------

def request(port, path, method="GET", headers=None, body=None, timeout=10.0, host="127.0.0.1"):
    """One request on a fresh connection: (status, {lower-case header: value}, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def http_status(port, path, timeout=2.0):
    return request(port, path, timeout=timeout)[0]


def raw_exchange(port, data, timeout=5.0):
    """Sends raw bytes, reads until the peer closes or the timeout; returns (bytes, closed_by_peer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return b"".join(chunks), False
            except ConnectionResetError:
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
        return b"".join(chunks), False


def status_of(raw):
    """Status code of the first response in raw bytes (None when there is none)."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


class ResponseReader:
    """Reads consecutive HTTP/1.1 responses from one socket (for pipelining and 100-continue)."""

    def __init__(self, sock):
        self.file = sock.makefile("rb")

    def read(self, head=False):
        line = self.file.readline()
        if not line:
            raise ConnectionError("connection closed before a response")
        version, status = line.split(b" ", 2)[:2]
        headers = {}
        while True:
            h = self.file.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        code = int(status)
        body = b""
        if head or code in (204, 304) or 100 <= code < 200:
            return code, headers, body
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.file.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.file.readline() not in (b"\r\n", b""):
                        pass
                    break
                parts.append(self.file.read(size))
                self.file.readline()
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self.file.read(int(headers["content-length"]))
        else:
            body = self.file.read()
        return code, headers, body


# ---- skiff --------------------------------------------------------------------------------------------

class Skiff:
    """One skiff process: writes its config, starts it, waits for /ready, talks to its admin API."""

    def __init__(self, binary, workdir, config, args=(), concurrency=2):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_port = free_port()
        self.args = list(args)
        if not any(a.startswith("--drain-time-s") for a in self.args):
            self.args += ["--drain-time-s", "2"]
        self.concurrency = concurrency
        self.proc = None
        self.stderr_path = self.workdir / "stderr.log"
        self.stdout_path = self.workdir / "stdout.log"
        self.config_path = self.workdir / ("envoy.yaml" if isinstance(config, str) else "envoy.json")
        self.config = config
        self.config_path.write_text(self._with_admin(config))

    def _with_admin(self, config):
        admin = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}}
        if isinstance(config, str):
            if re.search(r"^admin:", config, re.M):
                raise ValueError("config already has an admin block")
            return config.rstrip("\n") + "\nadmin:\n  address:\n    socket_address: { address: 127.0.0.1, " \
                f"port_value: {self.admin_port} }}\n"
        config = dict(config)
        config["admin"] = admin
        return json.dumps(config, indent=1)

    def start(self, wait_ready=True):
        cmd = [str(self.binary), "-c", str(self.config_path), "--concurrency", str(self.concurrency), *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=self.workdir)
        if wait_ready:
            ready = wait_until(lambda: self.proc.poll() is not None or self.admin_get("/ready")[0] == 200,
                               timeout=READY_TIMEOUT)
            if self.proc.poll() is not None and self._admin_port_taken():
                # free_port() closes the port it found; under parallel tests another process's outgoing
                # connection can take it before skiff binds. Another admin port, once (Skiff.start itself:
                # a subclass's start may have wrapped the binary already).
                self.stderr_path.replace(self.stderr_path.with_suffix(".first-attempt.log"))
                self.admin_port = free_port()
                self.config_path.write_text(self._with_admin(self.config))
                return Skiff.start(self, wait_ready)
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiff exited with {self.proc.returncode} during start-up:\n{self.logs}")
            if not ready:
                raise RuntimeError(f"skiff not ready within {READY_TIMEOUT}s:\n{self.logs}")
        return self

    def _admin_port_taken(self):
        if getattr(self, "_admin_retried", False):
            return False
        taken = f"admin on 127.0.0.1:{self.admin_port}" not in self.logs and "Address already in use" in self.logs
        self._admin_retried = taken
        return taken

    @property
    def pid(self):
        return self.proc.pid

    @property
    def logs(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def admin_request(self, method, path, timeout=5.0):
        status, headers, body = request(self.admin_port, path, method=method, timeout=timeout)
        return status, body.decode("utf-8", errors="replace")

    def admin_get(self, path, timeout=5.0):
        return self.admin_request("GET", path, timeout)

    def admin_post(self, path, timeout=5.0):
        return self.admin_request("POST", path, timeout)

    def stats(self):
        """Counters and gauges of /stats as {name: int}; histograms keep their text."""
        status, body = self.admin_get("/stats")
        assert status == 200, body
        out = {}
        for line in body.splitlines():
            name, sep, value = line.partition(": ")
            if not sep:
                continue
            out[name] = int(value) if re.fullmatch(r"-?\d+", value) else value
        return out

    def listener_port(self, name=None):
        status, body = self.admin_get("/listeners?format=json")
        assert status == 200, body
        for entry in json.loads(body)["listener_statuses"]:
            if name is None or entry["name"] == name:
                return entry["local_address"]["socket_address"]["port_value"]
        raise KeyError(f"no listener {name!r} in {body}")

    def worker_tids(self):
        """Thread ids of the worker threads (named wrk:worker_<n>)."""
        tids = {}
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                comm = (task / "comm").read_text().strip()
            except FileNotFoundError:
                continue
            if comm.startswith("wrk:worker_"):
                tids[comm] = int(task.name)
        return tids

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(10) is None:
                self.proc.kill()
                self.proc.wait()


def run_validate(binary, config_text, workdir, name="config.yaml", timeout=30):
    """skiff --mode validate on a config: (exit code, stdout + stderr)."""
    path = Path(workdir) / name
    path.write_text(config_text)
    proc = subprocess.run([str(binary), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


# ---- configs --------------------------------------------------------------------------------------------

def substitute(text, replacements):
    """Applies regex replacements, each of which must match (so a changed seed fails loudly)."""
    for pattern, repl in replacements:
        text, n = re.subn(pattern, repl, text, flags=re.M)
        assert n > 0, f"pattern {pattern!r} not found in the seed"
    return text


def httpbin_seed(seeds, port):
    """httpbin.envoy.yaml with only the backend address/port and the listener port changed."""
    return substitute((seeds / "httpbin.envoy.yaml").read_text(), [
        (r"address: host\.docker\.internal\b", "address: localhost"),
        (r"port_value: 8000\b", f"port_value: {port}"),
        (r"port_value: 15001\b", "port_value: 0"),
    ])


def replace_block(text, key, snippet):
    """Replaces the YAML block `key:` (its list items and deeper lines) with snippet, re-indented there."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == key:
            indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines):
                cur = lines[end]
                cur_indent = len(cur) - len(cur.lstrip())
                if cur.strip() and (cur_indent < indent or (cur_indent == indent and not cur.lstrip().startswith("-"))):
                    break
                end += 1
            new = [(" " * indent + s) if s.strip() else s for s in snippet.rstrip("\n").splitlines()]
            return "\n".join(lines[:i] + new + lines[end:]) + "\n"
    raise AssertionError(f"{key!r} not found")


def http_listener(name, routes_or_vhosts, *, http_filters=None, access_log_path=None, hcm_extra=None,
                  log_format="%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%\n"):
    """A listener on 127.0.0.1:0 with an HTTP connection manager (stat_prefix = name)."""
    vhosts = routes_or_vhosts
    if vhosts and "domains" not in vhosts[0]:
        vhosts = [{"name": "all", "domains": ["*"], "routes": routes_or_vhosts}]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": name,
        "route_config": {"name": name + "_route", "virtual_hosts": vhosts},
        "http_filters": http_filters or [{"name": "envoy.filters.http.router"}],
    }
    if access_log_path:
        hcm["access_log"] = [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(access_log_path),
                "log_format": {"text_format_source": {"inline_string": log_format}},
            },
        }]
    hcm.update(hcm_extra or {})
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }


def static_cluster(name, port, host="127.0.0.1", connect_timeout="1s", extra=None):
    cluster = {
        "name": name,
        "connect_timeout": connect_timeout,
        "type": "STATIC",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
    }
    cluster.update(extra or {})
    return cluster


def bootstrap(listeners, clusters):
    return {"static_resources": {"listeners": listeners, "clusters": clusters}}


# ---- purpose-built backends ---------------------------------------------------------------------------

class HttpBackend:
    """A threaded HTTP/1.1 test backend on 127.0.0.1:<free port>; subclasses pass their handler class."""

    def _serve(self, handler_class):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class CountingBackend(HttpBackend):
    """HTTP/1.1 backend counting requests per path; /status/<code> answers <code>, anything else 200."""

    def __init__(self):
        self.hits = {}
        self.headers = {}  # path -> headers of the last request
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with backend.lock:
                    backend.hits[self.path] = backend.hits.get(self.path, 0) + 1
                    backend.headers[self.path] = {k.lower(): v for k, v in self.headers.items()}
                m = re.fullmatch(r"/status/(\d{3})", self.path)
                code = int(m.group(1)) if m else 200
                body = f"{code}\n".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._serve(Handler)


class RawBackend:
    """A TCP backend whose behaviour is a function of each accepted socket ("reset" or "silent")."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held = []
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.behaviour == "reset":
                # Read what arrived, then close: the proxy sees the connection end without a response.
                conn.settimeout(1.0)
                try:
                    conn.recv(65536)
                except OSError:
                    pass
                conn.close()
            else:
                self.held.append(conn)  # silent: keep it open, never answer

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in self.held:
            c.close()


def read_access_log(path, count, timeout=10.0):
    """Waits until the access log has at least `count` lines (skiff flushes it periodically)."""
    path = Path(path)

    def lines():
        if not path.exists():
            return None
        got = [l for l in path.read_text().splitlines() if l.strip()]
        return got if len(got) >= count else None

    return wait_until(lines, timeout=timeout, interval=0.1) or (path.read_text().splitlines() if path.exists() else [])


def thread_cpu_ticks(pid, tid):
    """utime + stime of one thread in clock ticks."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def environ_with(**kw):
    env = dict(os.environ)
    env.update(kw)
    return env
