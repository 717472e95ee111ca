"""HTTP/1 request_headers_timeout: it runs from a request's first byte to the end of its headers (as Envoy's),
so a slowloris client that trickles its headers gets 408 and a closed connection while an idle keep-alive
connection, a slow body and a client that is merely slow but in time are not affected."""

import re
import socket
import time

from helpers import bootstrap, http_listener, read_access_log, static_cluster, status_of


def headers_timeout_proxy(skiff_factory, tmp_path, timeout="1s", httpbin=None):
    routes = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]
    clusters = []
    if httpbin is not None:
        routes.insert(0, {"match": {"prefix": "/post"}, "route": {"cluster": "httpbin"}})
        clusters.append(static_cluster("httpbin", httpbin))
    log_path = tmp_path / "access.log"
    listener = http_listener("t", routes, access_log_path=log_path,
                             log_format="%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\n",
                             hcm_extra={"request_headers_timeout": timeout})
    skiff = skiff_factory(bootstrap([listener], clusters), concurrency=1)
    skiff.port = skiff.listener_port("t")
    skiff.access_log = log_path
    return skiff


def read_until_closed(sock, deadline):
    """Everything the peer sends until it closes (or the deadline): (bytes, closed, when the first byte came)."""
    chunks, first_at = [], None
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return b"".join(chunks), True, first_at
        if not chunk:
            return b"".join(chunks), True, first_at
        if first_at is None:
            first_at = time.monotonic()
        chunks.append(chunk)
    return b"".join(chunks), False, first_at


def trickle(sock, data, interval, stop_after):
    """Sends data one byte at a time; stops early (returns False) once the peer answered or closed."""
    deadline = time.monotonic() + stop_after
    for i in range(len(data)):
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return False
        sock.settimeout(interval)
        try:
            if sock.recv(1, socket.MSG_PEEK) is not None:
                return False
        except socket.timeout:
            pass
        if time.monotonic() > deadline:
            return False
    return True


def test_slowloris_headers_get_408_and_close(skiff_factory, tmp_path):
    skiff = headers_timeout_proxy(skiff_factory, tmp_path)
    head = b"GET /slow HTTP/1.1\r\nHost: a\r\n" + b"x-pad: " + b"y" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", skiff.port), timeout=10) as s:
        started = time.monotonic()
        finished = trickle(s, head, interval=0.05, stop_after=8)  # 200+ bytes at 50 ms: ~12 s if unanswered
        assert not finished, "the proxy never answered the trickled headers"
        data, closed, first_at = read_until_closed(s, time.monotonic() + 5)
    assert status_of(data) == 408, data[:200]
    assert b"connection: close" in data.lower()
    assert b"\r\nserver: " in data.lower(), "the codec's 408 carries the server header too"
    assert data.endswith(b"request header timeout")
    assert closed
    assert 0.8 < first_at - started < 3.0
    stats = skiff.stats()
    assert stats["http.t.downstream_rq_header_timeout"] == 1
    assert stats["http.t.downstream_rq_4xx"] == 1
    assert "408 request_header_timeout" in read_access_log(skiff.access_log, 1)


def test_timer_starts_at_first_byte_not_at_connect(skiff_factory, tmp_path):
    skiff = headers_timeout_proxy(skiff_factory, tmp_path)
    head = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
    with socket.create_connection(("127.0.0.1", skiff.port), timeout=10) as s:
        # Idle (no byte of a request yet) for longer than the timeout: nothing happens. The sleeps below are
        # the elapsed time under test, not synchronisation.
        s.settimeout(1.5)
        try:
            s.recv(1)
            raise AssertionError("the idle connection was answered or closed")
        except socket.timeout:
            pass
        # Then a request that is slow, but in time: answered normally, keep-alive.
        s.sendall(head[:10])
        time.sleep(0.5)
        s.sendall(head[10:])
        s.settimeout(5)
        data = s.recv(65536)
        assert status_of(data) == 200, data[:200]
        assert b"connection: close" not in data.lower()
        # A second request on the same connection after another idle stretch: its own timer.
        time.sleep(1.2)
        s.sendall(head)
        data = s.recv(65536)
        assert status_of(data) == 200, data[:200]
    assert skiff.stats().get("http.t.downstream_rq_header_timeout", 0) == 0


def test_slow_body_is_not_a_header_timeout(skiff_factory, httpbin, tmp_path):
    skiff = headers_timeout_proxy(skiff_factory, tmp_path, httpbin=httpbin)
    with socket.create_connection(("127.0.0.1", skiff.port), timeout=10) as s:
        s.sendall(b"POST /post HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\n")
        for part in (b"a", b"b", b"c", b"d"):
            time.sleep(0.5)  # the body takes 2 s, twice the headers timeout
            s.sendall(part)
        data = s.recv(65536)
        assert status_of(data) == 200, data[:200]
    assert skiff.stats().get("http.t.downstream_rq_header_timeout", 0) == 0


def test_stray_crlf_after_a_body_does_not_start_the_timer(skiff_factory, httpbin, tmp_path):
    # Clients may send an empty line after a request body (RFC 9112 2.2 lets the server ignore it); it is
    # not the start of a request, so an idle connection after it gets no 408.
    skiff = headers_timeout_proxy(skiff_factory, tmp_path, httpbin=httpbin)
    with socket.create_connection(("127.0.0.1", skiff.port), timeout=10) as s:
        s.sendall(b"POST /post HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\nabcd\r\n")
        s.settimeout(5)
        data = s.recv(65536)
        assert status_of(data) == 200, data[:200]
        assert b"connection: close" not in data.lower()
        # The response may come in pieces: read all of its Content-Length body.
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
        while len(body) < length:
            chunk = s.recv(65536)
            assert chunk, "closed mid-response"
            body += chunk
        # Idle for longer than the 1 s timeout (the elapsed time under test, not synchronisation).
        data, closed, _ = read_until_closed(s, time.monotonic() + 1.8)
        assert data == b"" and not closed, data[:200]
        s.sendall(b"\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        s.settimeout(5)
        data = s.recv(65536)
        assert status_of(data) == 200, data[:200]
    assert skiff.stats().get("http.t.downstream_rq_header_timeout", 0) == 0


LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"


def test_route_idle_timeout_holds_while_the_route_cache_is_cleared(skiff_factory, httpbin):
    # Envoy takes a route's idle_timeout when the route is resolved; a filter clearing the route cache (here
    # Lua, before a slow side call) does not bring back the HCM's 5 min default.
    code = """
function envoy_on_request(h)
  h:streamInfo():routeName()  -- resolves the route
  h:clearRouteCache()
  h:httpCall("httpbin", {[":method"] = "GET", [":path"] = "/delay/3", [":authority"] = "httpbin"}, "", 5000)
end
"""
    lua = {"name": "envoy.filters.http.lua",
           "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": code}}}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "httpbin", "idle_timeout": "0.5s"}}]
    listener = http_listener("t", routes, http_filters=[lua, {"name": "envoy.filters.http.router"}])
    skiff = skiff_factory(bootstrap([listener], [static_cluster("httpbin", httpbin)]), concurrency=1)
    with socket.create_connection(("127.0.0.1", skiff.listener_port("t")), timeout=10) as s:
        started = time.monotonic()
        s.sendall(b"GET /get HTTP/1.1\r\nHost: a\r\n\r\n")
        data, _, first_at = read_until_closed(s, started + 6)
    assert status_of(data) == 408, data[:200]
    assert first_at - started < 2.5, "the route's 0.5 s idle timeout, not the 3 s side call, ended the stream"
    assert skiff.stats()["http.t.downstream_rq_idle_timeout"] == 1
