"""Bad traffic from both sides: malformed requests (raw sockets) and broken upstreams; the proxy keeps serving."""

import json
import time

import pytest

from helpers import (CountingBackend, RawBackend, bootstrap, free_port, http_listener, raw_exchange, read_access_log, request,
                     static_cluster, status_of)


@pytest.fixture
def edge(httpbin, skiff_factory, tmp_path):
    """skiff in front of httpbin (/), a counting backend (/count), a resetting upstream (/reset), a refused port (/refused) and a silent
    upstream (/slow, route timeout 0.5s), with a file access log."""
    counting = CountingBackend()
    reset = RawBackend("reset")
    silent = RawBackend("silent")
    log_path = tmp_path / "access.log"
    routes = [
        {"match": {"prefix": "/count"}, "route": {"cluster": "counting"}},
        {"match": {"prefix": "/reset"}, "route": {"cluster": "reset"}},
        {"match": {"prefix": "/refused"}, "route": {"cluster": "refused"}},
        {"match": {"prefix": "/slow"}, "route": {"cluster": "silent", "timeout": "0.5s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "httpbin"}},
    ]
    config = bootstrap([http_listener("edge", routes, access_log_path=log_path)], [
        static_cluster("httpbin", httpbin),
        static_cluster("counting", counting.port),
        static_cluster("reset", reset.port),
        static_cluster("refused", free_port()),
        static_cluster("silent", silent.port),
    ])
    skiff = skiff_factory(config)
    skiff.port = skiff.listener_port("edge")
    skiff.access_log = log_path
    skiff.counting = counting
    yield skiff
    counting.close()
    reset.close()
    silent.close()


def still_serving(skiff):
    status, _, body = request(skiff.port, "/get?after=1")
    return status == 200 and json.loads(body)["args"] == {"after": "1"}


def expect_rejected(skiff, raw, code, must_close):
    data, closed = raw_exchange(skiff.port, raw)
    assert status_of(data) == code, data[:300]
    if must_close:
        assert closed, "the connection stayed open after a framing error"
    assert still_serving(skiff)


def test_malformed_request_line(edge):
    expect_rejected(edge, b"GARBAGE\r\n\r\n", 400, must_close=True)
    expect_rejected(edge, b"GET /get HTTP/9.9x\r\nHost: a\r\n\r\n", 400, must_close=True)


def test_malformed_header(edge):
    expect_rejected(edge, b"GET /get HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n", 400, must_close=True)
    expect_rejected(edge, b"GET /get HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400, must_close=True)


def test_content_length_and_transfer_encoding(edge):
    raw = (b"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    data, closed = raw_exchange(edge.port, raw)
    assert status_of(data) == 400, data[:300]
    assert closed
    assert data.count(b"HTTP/1.1 ") == 1, "the smuggled request was answered"
    assert still_serving(edge)


def test_two_differing_content_lengths(edge):
    raw = b"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    expect_rejected(edge, raw, 400, must_close=True)


def test_bad_chunk_size(edge):
    raw = b"POST /post HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    expect_rejected(edge, raw, 400, must_close=True)


def test_obs_fold(edge):
    raw = b"GET /get HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n  two\r\n\r\n"
    expect_rejected(edge, raw, 400, must_close=True)


def test_bare_lf(edge):
    expect_rejected(edge, b"GET /get HTTP/1.1\nHost: a\n\n", 400, must_close=True)
    expect_rejected(edge, b"GET /get HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400, must_close=True)


def test_headers_over_60_kib(edge):
    big = b"a" * (61 * 1024)
    expect_rejected(edge, b"GET /get HTTP/1.1\r\nHost: a\r\nX-Big: " + big + b"\r\n\r\n", 431, must_close=True)
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(62))
    expect_rejected(edge, b"GET /get HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n", 431, must_close=True)
    # Just under the limit is fine (httpbin's gunicorn refuses long header lines, so a plain backend answers).
    status, _, _ = request(edge.port, "/count/big", headers={"X-Big": "c" * (50 * 1024)})
    assert status == 200
    assert edge.counting.hits.get("/count/big") == 1


def logged(edge, path):
    lines = read_access_log(edge.access_log, 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hits = [line for line in lines if line.endswith(" " + path)]
        if hits:
            return hits[-1]
        time.sleep(0.1)
        lines = read_access_log(edge.access_log, 1)
    raise AssertionError(f"{path} not in the access log: {lines}")


def test_upstream_reset_is_503_uc(edge):
    status, _, _ = request(edge.port, "/reset/a")
    assert status == 503
    assert logged(edge, "/reset/a").split()[:2] == ["503", "UC"]
    assert still_serving(edge)


def test_upstream_refused_is_503_uf(edge):
    status, _, _ = request(edge.port, "/refused/a")
    assert status == 503
    assert logged(edge, "/refused/a").split()[:2] == ["503", "UF"]
    assert edge.stats()["cluster.refused.upstream_cx_connect_fail"] >= 1
    assert still_serving(edge)


def test_upstream_timeout_is_504_ut(edge):
    started = time.monotonic()
    status, _, _ = request(edge.port, "/slow/a", timeout=10)
    elapsed = time.monotonic() - started
    assert status == 504
    assert 0.4 <= elapsed < 5, elapsed
    assert logged(edge, "/slow/a").split()[:2] == ["504", "UT"]
    assert edge.stats()["cluster.silent.upstream_rq_timeout"] == 1
    assert still_serving(edge)
