"""HTTP/2 downstream per-stream timeouts (stream_idle_timeout, request_timeout, request_headers_timeout,
max_stream_duration) answer only the stream concerned while the connection's other streams go on;
max_requests_per_connection and max_connection_duration on HTTP/2, downstream (GOAWAY) and on upstream h2 pools
(a connection retires, a new one is opened)."""

import socket
import subprocess
import time

import pytest

from helpers import bootstrap, http_listener, request, static_cluster, wait_until
from http2_helpers import (CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, RST_STREAM,
                           QuickH2Server, RawH2, frame, h2_cluster_options, hpack_literal, request_block)

STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def status_of(block):
    """:status of a response header block as nghttp2 encodes it (static index, or a literal the first time)."""
    first = block[0]
    if first & 0x80:
        return STATIC_STATUS.get(first & 0x7F)
    if first in (0x48, 0x08, 0x18) and not block[1] & 0x80:  # literal, name ":status" (static index 8)
        return int(block[2:2 + block[1]])
    return None


class Streams:
    """Reads frames of a RawH2 connection and keeps, per stream, its status, end, reset and when."""

    def __init__(self, conn):
        self.conn = conn
        self.status, self.ended, self.reset, self.at = {}, {}, {}, {}
        self.headers = {}
        self.goaway = None
        self.closed = False

    def pump_until(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return predicate()
            f = self.conn.read_frame(timeout=min(left, 0.5))
            if f is None:
                if self.conn.buf == b"" and time.monotonic() < deadline and self._eof():
                    self.closed = True
                continue
            ftype, flags, sid, payload = f
            if ftype == HEADERS and sid not in self.status:
                self.status[sid] = status_of(payload)
                self.headers[sid] = payload
                self.at[sid] = time.monotonic()
            if ftype in (HEADERS, DATA) and flags & END_STREAM:
                self.ended[sid] = True
            if ftype == RST_STREAM:
                self.reset[sid] = int.from_bytes(payload[:4], "big")
                self.at.setdefault(sid, time.monotonic())
            if ftype == GOAWAY:
                self.goaway = (int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, int.from_bytes(payload[4:8], "big"))
        return True

    def _eof(self):
        try:
            self.conn.sock.settimeout(0.01)
            return self.conn.sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, socket.timeout):
            return False
        except OSError:  # reset
            return True


def get(path, sid, end_stream=True, extra=()):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, request_block(path, extra=extra))


def timeout_proxy(skiff_factory, httpbin, hcm_extra, name="t"):
    routes = [
        {"match": {"prefix": "/ok"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
        # Per-route overrides of the HCM's stream idle timeout and max stream duration.
        {"match": {"prefix": "/long/"}, "route": {"cluster": "httpbin", "prefix_rewrite": "/", "idle_timeout": "8s",
                                                   "max_stream_duration": {"max_stream_duration": "8s"}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "httpbin"}},
    ]
    skiff = skiff_factory(bootstrap([http_listener(name, routes, hcm_extra=hcm_extra)],
                                    [static_cluster("httpbin", httpbin)]), concurrency=1)
    skiff.port = skiff.listener_port(name)
    return skiff


def test_stream_idle_timeout_answers_only_that_stream(skiff_factory, httpbin):
    skiff = timeout_proxy(skiff_factory, httpbin, {"stream_idle_timeout": "1s"})
    conn = RawH2(skiff.port)
    started = time.monotonic()
    assert conn.send(get("/delay/4", 1) + get("/long/delay/2", 3))
    s = Streams(conn)
    assert s.pump_until(lambda: s.ended.get(1) and s.ended.get(3), timeout=10)
    assert s.status[1] == 408 and s.status[3] == 200
    assert 0.8 < s.at[1] - started < 2.5, "the idle stream is answered after stream_idle_timeout"
    assert s.at[3] > s.at[1], "the other stream went on after its neighbour timed out"
    # The connection still serves new streams.
    assert conn.send(get("/ok", 5))
    assert s.pump_until(lambda: s.ended.get(5)) and s.status[5] == 200
    assert s.goaway is None
    stats = skiff.stats()
    assert stats["http.t.downstream_rq_idle_timeout"] == 1
    assert stats["http.t.downstream_rq_4xx"] == 1
    conn.close()


def test_stream_idle_timeout_grpc_gets_grpc_status(skiff_factory, httpbin):
    skiff = timeout_proxy(skiff_factory, httpbin, {"stream_idle_timeout": "1s"})
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", "--max-time", "10",
                          "-H", "content-type: application/grpc", f"http://127.0.0.1:{skiff.port}/delay/4"],
                         capture_output=True, text=True, timeout=15).stdout.lower()
    # Trailers-only: 200 with grpc-status 2 (UNKNOWN, Envoy's mapping of 408) and the reason.
    assert out.startswith("http/2 200"), out
    assert "content-type: application/grpc" in out
    assert "grpc-status: 2" in out and "grpc-message: stream timeout" in out
    assert skiff.stats()["http.t.downstream_rq_idle_timeout"] == 1


def test_request_timeout_answers_only_the_incomplete_request(skiff_factory, httpbin):
    skiff = timeout_proxy(skiff_factory, httpbin, {"request_timeout": "1s"})
    conn = RawH2(skiff.port)
    started = time.monotonic()
    # Stream 1 never finishes its body; stream 3 is complete and takes longer than request_timeout upstream.
    block = b"\x83\x86" + hpack_literal(":path", "/post") + hpack_literal(":authority", "a")
    assert conn.send(frame(HEADERS, END_HEADERS, 1, block) + frame(DATA, 0, 1, b"partial") +
                     get("/long/delay/2", 3))
    s = Streams(conn)
    assert s.pump_until(lambda: s.ended.get(1) and s.ended.get(3), timeout=10)
    assert s.status[1] == 408 and s.status[3] == 200
    assert 0.8 < s.at[1] - started < 2.5
    assert s.goaway is None
    assert skiff.stats()["http.t.downstream_rq_timeout"] == 1
    conn.close()


def test_max_stream_duration_answers_only_that_stream(skiff_factory, httpbin):
    skiff = timeout_proxy(skiff_factory, httpbin,
                          {"common_http_protocol_options": {"max_stream_duration": "1s"}})
    conn = RawH2(skiff.port)
    started = time.monotonic()
    assert conn.send(get("/delay/4", 1) + get("/long/delay/2", 3))
    s = Streams(conn)
    assert s.pump_until(lambda: s.ended.get(1) and s.ended.get(3), timeout=10)
    assert s.status[1] == 408, "downstream duration timeout"
    assert s.status[3] == 200, "the route's max_stream_duration (8s) overrides the HCM's"
    assert 0.8 < s.at[1] - started < 2.5
    assert s.goaway is None
    assert skiff.stats()["http.t.downstream_rq_max_duration_reached"] == 1
    conn.close()


def test_request_headers_timeout(skiff_factory, httpbin):
    skiff = timeout_proxy(skiff_factory, httpbin, {"request_headers_timeout": "1s"})
    conn = RawH2(skiff.port)
    started = time.monotonic()
    block = request_block("/ok")
    assert conn.send(frame(HEADERS, END_STREAM, 1, block[:4]))  # no END_HEADERS: the block is unfinished
    s = Streams(conn)
    assert s.pump_until(lambda: 1 in s.status, timeout=10)
    assert s.status[1] == 408
    assert 0.8 < s.at[1] - started < 2.5
    assert wait_until(lambda: skiff.stats()["http.t.downstream_rq_header_timeout"] == 1)
    # The client finishes its block late; the connection goes on with new streams.
    assert conn.send(frame(CONTINUATION, END_HEADERS, 1, block[4:]) + get("/ok", 3))
    assert s.pump_until(lambda: s.ended.get(3)) and s.status[3] == 200
    assert s.goaway is None
    conn.close()


def test_timeouts_default_off_but_stream_idle_timeout(skiff_factory, httpbin):
    # Defaults: stream_idle_timeout 5 min; request_timeout, request_headers_timeout, max_stream_duration off.
    skiff = timeout_proxy(skiff_factory, httpbin, {})
    conn = RawH2(skiff.port)
    assert conn.send(get("/delay/2", 1))
    s = Streams(conn)
    assert s.pump_until(lambda: s.ended.get(1), timeout=10) and s.status[1] == 200
    conn.close()


def test_max_requests_per_connection_sends_goaway(skiff_factory, httpbin):
    skiff = timeout_proxy(skiff_factory, httpbin,
                          {"common_http_protocol_options": {"max_requests_per_connection": 2}})
    conn = RawH2(skiff.port)
    assert conn.send(get("/ok", 1) + get("/ok", 3))
    s = Streams(conn)
    assert s.pump_until(lambda: s.ended.get(1) and s.ended.get(3) and s.goaway is not None)
    assert s.status[1] == 200 and s.status[3] == 200
    assert s.goaway == (3, 0), "graceful GOAWAY naming the last stream served"
    # A stream after the GOAWAY is not processed (safe for the client to retry elsewhere).
    conn.send(get("/ok", 5))
    s.pump_until(lambda: s.closed, timeout=5)
    assert 5 not in s.status
    assert s.closed, "the connection closes once its streams are done"
    stats = skiff.stats()
    assert stats["http.t.downstream_cx_max_requests_reached"] == 1
    assert stats["http.t.downstream_rq_2xx"] == 2
    conn.close()


def test_max_connection_duration_drains_h2_connection(skiff_factory, httpbin):
    skiff = timeout_proxy(skiff_factory, httpbin,
                          {"common_http_protocol_options": {"max_connection_duration": "1s"}})
    conn = RawH2(skiff.port)
    assert conn.send(get("/long/delay/2", 1))
    s = Streams(conn)
    assert s.pump_until(lambda: s.goaway is not None, timeout=5)
    # The stream in flight is finished, then the connection closes.
    assert s.pump_until(lambda: s.ended.get(1) and s.closed, timeout=10)
    assert s.status[1] == 200
    assert skiff.stats()["http.t.downstream_cx_max_duration_reached"] == 1
    conn.close()


@pytest.fixture
def quick_server():
    servers = []

    def make(**kw):
        s = QuickH2Server(**kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def h2_upstream_proxy(skiff_factory, port, common):
    extra = h2_cluster_options("explicit")
    extra["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["common_http_protocol_options"] = common
    listener = http_listener("up", [{"match": {"prefix": "/"}, "route": {"cluster": "h2up"}}])
    skiff = skiff_factory(bootstrap([listener], [static_cluster("h2up", port, extra=extra)]), concurrency=1)
    skiff.port = skiff.listener_port("up")
    return skiff


def test_upstream_h2_max_requests_per_connection(skiff_factory, quick_server):
    server = quick_server()
    skiff = h2_upstream_proxy(skiff_factory, server.port, {"max_requests_per_connection": 2})
    for i in range(5):
        assert request(skiff.port, f"/r{i}")[0] == 200
    assert server.connections == 3, "two streams per connection, then a new one"
    stats = skiff.stats()
    assert stats["cluster.h2up.upstream_cx_max_requests"] == 2
    # Retired connections close once their streams are done.
    assert wait_until(lambda: skiff.stats()["cluster.h2up.upstream_cx_active"] == 1)


def test_upstream_h2_max_requests_with_concurrent_streams(skiff_factory, quick_server):
    # Several streams at once on a connection that reaches its limit: all are answered.
    server = quick_server()
    skiff = h2_upstream_proxy(skiff_factory, server.port, {"max_requests_per_connection": 3})
    conn = RawH2(skiff.port)
    assert conn.send(b"".join(get(f"/c{i}", 1 + 2 * i) for i in range(10)))
    s = Streams(conn)
    assert s.pump_until(lambda: all(s.ended.get(1 + 2 * i) for i in range(10)), timeout=10)
    assert all(s.status[1 + 2 * i] == 200 for i in range(10))
    assert server.connections >= 4
    conn.close()


def test_upstream_h2_max_connection_duration(skiff_factory, quick_server):
    server = quick_server()
    skiff = h2_upstream_proxy(skiff_factory, server.port, {"max_connection_duration": "1s"})
    assert request(skiff.port, "/a")[0] == 200
    assert server.connections == 1
    assert wait_until(lambda: skiff.stats()["cluster.h2up.upstream_cx_max_duration_reached"] == 1, timeout=5)
    assert wait_until(lambda: skiff.stats()["cluster.h2up.upstream_cx_active"] == 0)
    assert request(skiff.port, "/b")[0] == 200
    assert server.connections == 2
