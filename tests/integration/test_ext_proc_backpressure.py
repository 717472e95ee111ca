"""ext_proc back-pressure on the response side: a STREAMED response body through a slow processor makes the
router stop reading the upstream (instead of holding the body until the buffer limit resets the stream), so a
large response completes intact and skiff's memory stays bounded."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ext_helpers import ext_proc_filter, prefix_stats, proxy_config
from helpers import request
from http2_helpers import built_with_asan
from test_ext_proc_more import processor_factory, rss_kib  # noqa: F401 (a fixture, used by name)

STATS = "http.ingress.ext_proc."


class BigResponseBackend:
    """GET /bytes/<n>: n bytes of 'b' with a Content-Length, written as fast as the socket takes them."""

    def __init__(self):
        self.sent = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                n = int(self.path.rsplit("/", 1)[1])
                self.send_response(200)
                self.send_header("Content-Length", str(n))
                self.end_headers()
                piece = b"b" * (256 << 10)
                left = n
                try:
                    while left > 0:
                        chunk = piece[:min(left, len(piece))]
                        self.wfile.write(chunk)
                        left -= len(chunk)
                finally:
                    backend.sent.append(n - left)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def streamed_response_proxy(skiff_factory, processor_factory, backend):
    """skiff (one worker) with ext_proc STREAMED on the response body, to the slowbody processor: (skiff, port)."""
    p = processor_factory("slowbody", quiet=True)
    mode = {"request_header_mode": "SEND", "response_header_mode": "SEND", "response_body_mode": "STREAMED"}
    f = ext_proc_filter("ext_service", mode, message_timeout="5s")
    skiff = skiff_factory(proxy_config(backend.port, p.port, [f]), concurrency=1)
    return skiff, skiff.listener_port()


def read_whole_response(s):
    """One response (Content-Length or chunked, as ext_proc STREAMED may drop the length): (head, body
    bytes counted); a connection that ends early shows as a short count."""
    f = s.makefile("rb")
    lines = []
    while True:
        line = f.readline()
        assert line, f"connection closed before the response head: {lines!r}"
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line.rstrip(b"\r\n"))
    head = b"\r\n".join(lines)
    fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(b":") for l in lines[1:])}
    got = 0
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size_line = f.readline()
            if not size_line:
                return head, got
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                return head, got
            data = f.read(size + 2)
            got += max(0, len(data) - 2)
            if len(data) < size + 2:
                return head, got
    left = int(fields.get(b"content-length", b"0"))
    while left > 0:
        data = f.read(min(left, 1 << 20))
        if not data:
            break
        got += len(data)
        left -= len(data)
    return head, got


def test_streamed_response_through_a_slow_processor_pauses_the_upstream(skiff_factory, processor_factory):
    """16 MiB response, STREAMED to a processor taking 1 ms per chunk (the buffer limit is 1 MiB): without
    response-side back-pressure the held body outgrows the limit and the stream is reset."""
    backend = BigResponseBackend()
    try:
        skiff, port = streamed_response_proxy(skiff_factory, processor_factory, backend)
        status, _, body = request(port, "/bytes/10", headers={"x-ext-proc-delay-ms": "1"})
        assert status == 200 and body == b"b" * 10
        baseline = rss_kib(skiff.pid)
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(skiff.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        total = 16 << 20
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\nx-ext-proc-delay-ms: 1\r\n\r\n" % total)
                head, got = read_whole_response(s)
        finally:
            done.set()
            sampler.join()
        assert head.startswith(b"HTTP/1.1 200"), head
        assert got == total, f"got {got} of {total} bytes"
        grown_mib = (peak[0] - baseline) / 1024
        print(f"rss baseline {baseline / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB, grown {grown_mib:.1f} MiB")
        if not built_with_asan():  # ASan's quarantine keeps freed memory resident
            assert grown_mib < 12, f"skiff grew {grown_mib:.1f} MiB for a {total >> 20} MiB streamed response"
        stats = prefix_stats(skiff, STATS)
        assert stats["stream_msgs_sent"] > 10
        assert skiff.stats().get("http.ingress.downstream_rq_tx_reset", 0) == 0
    finally:
        backend.close()


def test_small_streamed_response_is_unaffected(skiff_factory, processor_factory):
    backend = BigResponseBackend()
    try:
        skiff, port = streamed_response_proxy(skiff_factory, processor_factory, backend)
        for n in (1, 1000, 300000):
            status, _, body = request(port, f"/bytes/{n}", headers={"x-ext-proc-delay-ms": "0"})
            assert status == 200 and body == b"b" * n
    finally:
        backend.close()
