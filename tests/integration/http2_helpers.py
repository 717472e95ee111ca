"""HTTP/2 test helpers: raw frames over a socket (for abuse cases), HPACK literals, the gRPC Echo peers,
nghttpd, and cluster snippets that make a cluster speak HTTP/2 upstream."""

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

from helpers import wait_until

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

H2_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first_byte=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = [first_byte | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    name, value = name.encode(), value.encode() if isinstance(value, str) else value
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def request_block(path="/", authority="a", extra=()):
    """GET <path> http, as an HPACK block (static-table :method GET and :scheme http)."""
    block = b"\x82\x86" + hpack_literal(":path", path) + hpack_literal(":authority", authority)
    for name, value in extra:
        block += hpack_literal(name, value)
    return block


class RawH2:
    """A prior-knowledge HTTP/2 client speaking raw frames; reads frames with a deadline."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        """Sends; False once the peer has closed or reset the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            return False

    def read_frame(self, timeout=5.0):
        """(type, flags, stream, payload), or None at EOF / reset / timeout."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    ftype, flags = self.buf[3], self.buf[4]
                    stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                    payload = self.buf[9:9 + length]
                    self.buf = self.buf[9 + length:]
                    return ftype, flags, stream, payload
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def wait_goaway_or_close(self, timeout=10.0):
        """Reads until GOAWAY/EOF; returns (goaway_error_code or None, closed)."""
        deadline = time.monotonic() + timeout
        code = None
        while time.monotonic() < deadline:
            f = self.read_frame(timeout=max(0.1, deadline - time.monotonic()))
            if f is None:
                return code, True
            if f[0] == GOAWAY:
                code = int.from_bytes(f[3][4:8], "big")
        return code, False

    def close(self):
        self.sock.close()


def built_with_asan():
    """SKIFF_BIN is an ASan build (its memory figures include ASan's quarantine)."""
    binary = Path(os.environ.get("SKIFF_BIN", ""))
    return binary.is_file() and b"__asan_init" in binary.read_bytes()


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def h2_cluster_options(kind="explicit"):
    """typed_extension_protocol_options for a cluster: explicit h2, use_downstream, or auto."""
    body = {"@type": "type.googleapis.com/" + H2_OPTIONS_KEY}
    if kind == "explicit":
        body["explicit_http_config"] = {"http2_protocol_options": {}}
    elif kind == "downstream":
        body["use_downstream_protocol_config"] = {"http2_protocol_options": {}}
    else:
        body["auto_config"] = {"http2_protocol_options": {}}
    return {"typed_extension_protocol_options": {H2_OPTIONS_KEY: body}}


def build_bin(name):
    """A test binary from the build tree (next to skiff), or None."""
    skiff = os.environ.get("SKIFF_BIN")
    candidates = []
    if skiff:
        candidates.append(Path(skiff).parent / name)
    candidates.append(Path(__file__).resolve().parents[2] / "build" / "bin" / name)
    for c in candidates:
        if c.exists():
            return str(c)
    return None


class GrpcEchoServer:
    """skiff-grpc-test-server on a free port."""

    def __init__(self, binary, log_dir):
        self.log = open(Path(log_dir) / "grpc-server.log", "w+")
        self.proc = subprocess.Popen([binary, "--port", "0"], stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError("gRPC test server did not start: " + line)
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Nghttpd:
    """nghttpd (nghttp2-server) serving a directory over h2c prior knowledge on a free port."""

    def __init__(self, docroot, log_dir):
        self.binary = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
        self.log = open(Path(log_dir) / "nghttpd.log", "w+")
        for _ in range(5):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            self.proc = subprocess.Popen([self.binary, "--no-tls", "-a", "127.0.0.1", "-d", str(docroot),
                                          str(self.port)], stdout=self.log, stderr=self.log)
            if wait_until(lambda: self._listening() or self.proc.poll() is not None, timeout=5) and \
                    self.proc.poll() is None:
                return
        raise RuntimeError("nghttpd did not start")

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        self.log.close()


def curl_h2(port, path, *, prior_knowledge=True, method="GET", data=None, headers=(), timeout=10):
    """curl over h2c; returns (status, http_version, body bytes)."""
    cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code} %{http_version}", "--max-time", str(timeout)]
    cmd.append("--http2-prior-knowledge" if prior_knowledge else "--http2")
    if method != "GET":
        cmd += ["-X", method]
    if data is not None:
        cmd += ["--data-binary", "@-"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 5).stdout
    body, _, tail = out.rpartition(b"\n")
    code, version = tail.decode().split()
    return int(code), version, body


class RefusingH2Server:
    """A raw h2c server: refuses the first `refuse` streams (RST_STREAM REFUSED_STREAM), answers the others
    with 200 and an empty body. Counts streams seen."""

    def __init__(self, refuse=1):
        import threading
        self.refuse = refuse
        self.seen = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while len(buf) < len(PREFACE):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[len(PREFACE):]
            conn.sendall(frame(SETTINGS, 0, 0))
            while True:
                while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                    length = int.from_bytes(buf[:3], "big")
                    ftype, flags = buf[3], buf[4]
                    stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    buf = buf[9 + length:]
                    if ftype == SETTINGS and not flags & ACK:
                        conn.sendall(frame(SETTINGS, ACK, 0))
                    elif ftype == HEADERS:
                        self.seen += 1
                        if self.seen <= self.refuse:
                            conn.sendall(frame(RST_STREAM, 0, stream, (7).to_bytes(4, "big")))
                        else:
                            conn.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream, b"\x88"))  # :status 200
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        self.listener.close()


class QuickH2Server:
    """A raw h2c server that answers every request as soon as its HEADERS arrive (200, then `body` with
    END_STREAM), without reading the request body. Advertises SETTINGS_MAX_CONCURRENT_STREAMS when
    `max_streams` is set. Records the RST_STREAM codes it receives and the streams it saw."""

    def __init__(self, body=b"", max_streams=None, close_first_after=None):
        import threading
        self.body = body
        self.close_first_after = close_first_after  # first connection: close after that many HEADERS
        self.max_streams = max_streams
        self.seen = 0
        self.resets = []
        self.connections = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections == 1), daemon=True).start()

    def _answer(self, conn, stream):
        if not self.body:
            conn.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream, b"\x88"))  # :status 200
            return
        out = frame(HEADERS, END_HEADERS, stream, b"\x88")
        for off in range(0, len(self.body), 16384):
            chunk = self.body[off:off + 16384]
            out += frame(DATA, END_STREAM if off + 16384 >= len(self.body) else 0, stream, chunk)
        conn.sendall(out)

    def _serve(self, conn, first=False):
        buf = b""
        held = 0
        try:
            while len(buf) < len(PREFACE):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[len(PREFACE):]
            settings = b""
            if self.max_streams is not None:
                settings = struct.pack(">HI", 3, self.max_streams)  # SETTINGS_MAX_CONCURRENT_STREAMS
            conn.sendall(frame(SETTINGS, 0, 0, settings))
            while True:
                while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                    length = int.from_bytes(buf[:3], "big")
                    ftype, flags = buf[3], buf[4]
                    stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    payload = buf[9:9 + length]
                    buf = buf[9 + length:]
                    if ftype == SETTINGS and not flags & ACK:
                        conn.sendall(frame(SETTINGS, ACK, 0))
                    elif ftype == HEADERS:
                        self.seen += 1
                        if first and self.close_first_after is not None:
                            held += 1
                            if held >= self.close_first_after:
                                return  # closes without answering
                            continue
                        self._answer(conn, stream)
                    elif ftype == RST_STREAM:
                        self.resets.append((stream, int.from_bytes(payload[:4], "big")))
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        self.listener.close()
