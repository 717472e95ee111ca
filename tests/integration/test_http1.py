"""HTTP/1 behaviour through the proxy: versions, pipelining, chunked bodies, 100-continue, HEAD, big bodies, 404."""

import base64
import json
import os
import socket

import pytest

from helpers import (ResponseReader, bootstrap, http_listener, raw_exchange, read_access_log, request,
                     static_cluster, status_of)


@pytest.fixture
def proxy(httpbin, skiff_factory, tmp_path):
    """Two listeners in front of httpbin: 'plain' (routes only /api/* and /) and 'http10' (accept_http_10)."""
    log_path = tmp_path / "access.log"
    vhosts = [{"name": "only_api", "domains": ["*"], "routes": [
        {"match": {"prefix": "/api/"}, "route": {"cluster": "httpbin", "prefix_rewrite": "/"}},
        {"match": {"path": "/get"}, "route": {"cluster": "httpbin"}},
        {"match": {"prefix": "/post"}, "route": {"cluster": "httpbin"}},
        {"match": {"prefix": "/anything"}, "route": {"cluster": "httpbin"}},
        {"match": {"prefix": "/stream-bytes/"}, "route": {"cluster": "httpbin"}},
    ]}]
    plain = http_listener("plain", vhosts, access_log_path=log_path)
    http10 = http_listener("http10", vhosts, hcm_extra={"http_protocol_options": {"accept_http_10": True}})
    skiff = skiff_factory(bootstrap([plain, http10], [static_cluster("httpbin", httpbin)]))
    skiff.port = skiff.listener_port("plain")
    skiff.port10 = skiff.listener_port("http10")
    skiff.access_log = log_path
    skiff.backend_port = httpbin
    return skiff


def test_http10_rejected_by_default_as_envoy_does(proxy):
    data, _ = raw_exchange(proxy.port, b"GET /get HTTP/1.0\r\nHost: a\r\n\r\n")
    assert status_of(data) == 426, data[:300]


def test_http10_accepted_with_accept_http_10(proxy):
    data, closed = raw_exchange(proxy.port10, b"GET /get?v=10 HTTP/1.0\r\nHost: a\r\n\r\n")
    assert status_of(data) == 200, data[:300]
    assert closed, "an HTTP/1.0 request without keep-alive must end with the connection closed"
    head, _, body = data.partition(b"\r\n\r\n")
    assert json.loads(body)["args"] == {"v": "10"}


def test_pipelined_requests_answered_in_order(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"".join(b"GET /get?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in range(1, 6)))
        reader = ResponseReader(s)
        for n in range(1, 6):
            status, _, body = reader.read()
            assert status == 200
            assert json.loads(body)["args"] == {"n": str(n)}


def test_chunked_request_body_echoed(proxy):
    parts = [b"first-chunk;", b"x" * 5000, b";last"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"POST /post HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        s.sendall(body[:7])  # split mid-chunk-header to exercise the parser's resumption
        s.sendall(body[7:])
        status, _, resp = ResponseReader(s).read()
    assert status == 200, resp[:300]
    assert json.loads(resp)["data"] == b"".join(parts).decode()


def test_expect_100_continue(proxy):
    payload = b'{"hello": "continue"}'
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"POST /post HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(payload))
        reader = ResponseReader(s)
        status, _, _ = reader.read()
        assert status == 100
        s.sendall(payload)
        status, _, body = reader.read()
    assert status == 200
    assert json.loads(body)["json"] == {"hello": "continue"}


def test_head_then_get_on_one_connection(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"HEAD /get HTTP/1.1\r\nHost: a\r\n\r\nGET /get?after=head HTTP/1.1\r\nHost: a\r\n\r\n")
        reader = ResponseReader(s)
        status, headers, body = reader.read(head=True)
        assert status == 200
        assert body == b""
        assert int(headers.get("content-length", "1")) > 0
        status, _, body = reader.read()
        assert status == 200
        assert json.loads(body)["args"] == {"after": "head"}


def test_one_megabyte_bodies_intact(proxy):
    payload = base64.b64encode(os.urandom(786432)).decode()  # 1 MiB of text
    assert len(payload) == 1 << 20
    status, _, body = request(proxy.port, "/anything/big", method="POST", body=payload,
                              headers={"Content-Type": "text/plain"}, timeout=30)
    assert status == 200
    assert len(body) > 1 << 20
    assert json.loads(body)["data"] == payload


def test_chunked_response_intact(proxy):
    path = "/stream-bytes/102400?seed=7&chunk_size=1000"
    status, headers, via_proxy = request(proxy.port, path, timeout=30)
    assert status == 200
    _, _, direct = request(proxy.backend_port, path, timeout=30)
    assert len(via_proxy) == 102400
    assert via_proxy == direct


def test_unmatched_route_is_404(proxy):
    status, _, _ = request(proxy.port, "/not-routed")
    assert status == 404
    status, _, body = request(proxy.port, "/api/get?via=api")
    assert status == 200
    assert json.loads(body)["args"] == {"via": "api"}
    lines = read_access_log(proxy.access_log, 2)
    assert any(line.split()[:3] == ["404", "NR", "/not-routed"] for line in lines), lines
