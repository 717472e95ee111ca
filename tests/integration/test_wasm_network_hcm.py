"""The Wasm network filter in front of an HTTP connection manager (envoy.filters.network.wasm, then
envoy.filters.network.http_connection_manager), as Envoy runs it: the plugin sees the connection's bytes
before the HCM parses them and the HCM's answers before the client does, and the HCM still serves HTTP.
tcp_filter.wasm upper-cases what the client sends (so the request path arrives upper-cased), turns '!' into
'?' in what comes back, counts connections, bytes and closes, closes on "close" and traps on "trap"."""

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler

from helpers import (CountingBackend, HttpBackend, bootstrap, http_listener, raw_exchange, request, static_cluster,
                     wait_until)
from test_wasm import module

NETWORK_WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"


def wasm_hcm_listener(name, fail_open=False, codec=None, hcm_extra=None):
    routes = [{"match": {"prefix": "/DIRECT"}, "direct_response": {"status": 200, "body": {"inline_string": "hi!"}}},
              {"match": {"prefix": "/DENY"}, "direct_response": {"status": 403, "body": {"inline_string": "no!"}}},
              {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    extra = dict(hcm_extra or {})
    if codec:
        extra["codec_type"] = codec
    listener = http_listener(name, routes, hcm_extra=extra or None)
    wasm = {"name": "envoy.filters.network.wasm", "typed_config": {"@type": NETWORK_WASM_TYPE, "config": {
        "name": "tcp-plugin", "fail_open": fail_open,
        "vm_config": {"vm_id": "tcp", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(module("tcp_filter"))}}}}}}
    listener["filter_chains"][0]["filters"].insert(0, wasm)
    return listener


def start(skiff_factory, backend, **kwargs):
    config = bootstrap([wasm_hcm_listener("wasm_hcm", **kwargs)], [static_cluster("backend", backend.port)])
    skiff = skiff_factory(config, concurrency=1)
    return skiff, skiff.listener_port("wasm_hcm")


def test_the_plugin_sees_both_directions_and_the_hcm_still_serves(skiff_factory):
    backend = CountingBackend()
    try:
        skiff, port = start(skiff_factory, backend)
        # Client → plugin (upper-cases) → HCM → router: the backend sees the rewritten path.
        status, _, body = request(port, "/hello/world")
        assert status == 200, body
        assert backend.hits.get("/HELLO/WORLD") == 1, backend.hits
        # HCM answer → plugin ('!' → '?') → client.
        status, _, body = request(port, "/direct")
        assert (status, body) == (200, b"hi?")
        # Keep-alive: several requests on one connection, one plugin context.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(3):
            conn.request("GET", f"/again/{i}")
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
        conn.close()
        assert all(backend.hits.get(f"/AGAIN/{i}") == 1 for i in range(3)), backend.hits
        assert wait_until(lambda: skiff.stats().get("tcp_downstream_closes") == 3), skiff.stats()
        stats = skiff.stats()
        assert stats["tcp_connections"] == 3
        assert stats["tcp_downstream_bytes"] > 0 and stats["tcp_upstream_bytes"] > 0
        # The HCM did the HTTP work (its stats), and no warning says the filter is skipped.
        assert stats["http.wasm_hcm.downstream_rq_total"] == 5
        assert "are not run" not in skiff.logs
    finally:
        backend.close()


def test_close_from_the_plugin_closes_before_the_hcm_sees_anything(skiff_factory):
    backend = CountingBackend()
    try:
        skiff, port = start(skiff_factory, backend)
        data, closed = raw_exchange(port, b"GET /close HTTP/1.1\r\nhost: a\r\n\r\n")
        assert closed and data == b""
        assert backend.hits == {}
        assert request(port, "/after")[0] == 200  # the next connection is served
    finally:
        backend.close()


def test_a_trap_closes_when_fail_closed_and_passes_untouched_when_fail_open(skiff_factory):
    backend = CountingBackend()
    try:
        skiff, port = start(skiff_factory, backend)
        data, closed = raw_exchange(port, b"GET /trap HTTP/1.1\r\nhost: a\r\n\r\n")
        assert closed and data == b""
        assert "/trap" not in backend.hits and "/TRAP" not in backend.hits
        assert request(port, "/next")[0] == 200  # a fresh VM for the next connection
    finally:
        backend.close()
    backend = CountingBackend()
    try:
        skiff, port = start(skiff_factory, backend, fail_open=True)
        status, _, _ = request(port, "/trap")
        assert status == 200
        assert backend.hits.get("/trap") == 1, backend.hits  # not rewritten: the plugin is bypassed
    finally:
        backend.close()


def test_a_request_in_small_pieces_and_a_sniffed_codec(skiff_factory):
    """AUTO codec: the HCM sniffs for the HTTP/2 preface; bytes trickling in one at a time still make one
    HTTP/1 request (and do not spin the sniffer)."""
    backend = CountingBackend()
    try:
        skiff, port = start(skiff_factory, backend, codec="AUTO")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n":
                s.sendall(bytes([b]))
            got = b""
            while not got.endswith(b"\r\n\r\n200\n"):  # CountingBackend's body
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got
        assert backend.hits.get("/SLOW") == 1, backend.hits
    finally:
        backend.close()


class BigBackend(HttpBackend):
    """Answers every GET with `size` bytes, written in pieces (a write the proxy stops taking just blocks)."""

    def __init__(self, size):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                piece = b"b" * 65536
                try:
                    for _ in range(size // len(piece)):
                        self.wfile.write(piece)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self._serve(Handler)


def test_a_client_that_never_reads_does_not_pin_the_connection_after_the_hcm_gave_up(skiff_factory):
    """The HCM's stream_idle_timeout gives up on a response the client never reads and closes its end; the
    relay (holding its buffer limit of the answer, not reading the HCM) notices and closes the client's
    connection after the delayed-close time, instead of keeping it, its descriptors and buffers forever."""
    backend = BigBackend(64 * 1024 * 1024)
    try:
        skiff, port = start(skiff_factory, backend, hcm_extra={"stream_idle_timeout": "0.5s"})
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.settimeout(10)
        client.connect(("127.0.0.1", port))
        try:
            client.sendall(b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n")
            # Never read: the connection must still end (the plugin's onClose counts it).
            assert wait_until(lambda: skiff.stats().get("tcp_downstream_closes") == 1, timeout=15), skiff.stats()
            assert skiff.stats().get("http.wasm_hcm.downstream_rq_idle_timeout", 0) >= 1, skiff.stats()
            # And the client sees it end (EOF or reset) once it reads what was sent.
            ended = False
            try:
                while client.recv(1 << 20):
                    pass
                ended = True
            except ConnectionResetError:
                ended = True
            assert ended
        finally:
            client.close()
    finally:
        backend.close()


def test_an_early_answer_during_a_large_upload_reaches_the_client(skiff_factory):
    """A 403 sent (with connection: close) before the request body is in: the HCM stops reading, the relay's
    next write to it fails, and the client must still receive the 403 rather than a reset."""
    backend = CountingBackend()
    try:
        skiff, port = start(skiff_factory, backend)
        size = 64 * 1024 * 1024
        client = socket.create_connection(("127.0.0.1", port), timeout=10)

        def upload():
            try:
                client.sendall(b"POST /deny HTTP/1.1\r\nhost: a\r\ncontent-length: %d\r\n\r\n" % size)
                piece = b"a" * 65536
                for _ in range(size // len(piece)):
                    client.sendall(piece)
            except OSError:
                pass  # the proxy closes once it answered

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        got = b""
        try:
            while b"no?" not in got:
                chunk = client.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        assert got.startswith(b"HTTP/1.1 403"), got
        assert b"no?" in got, got
        assert b"connection: close" in got.lower(), got
        client.close()
        sender.join(timeout=10)
        assert backend.hits == {}
        assert request(port, "/next")[0] == 200  # the listener still serves
    finally:
        backend.close()
