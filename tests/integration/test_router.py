"""Routing actions end to end: mirroring, circuit breaking, rewrites and header mutations, direct responses."""

import json
import threading

from helpers import (CountingBackend, bootstrap, http_listener, read_access_log, request, static_cluster,
                     wait_until)


def test_request_mirroring_sends_a_shadow_copy(skiff_factory):
    primary, mirror = CountingBackend(), CountingBackend()
    try:
        route = {"match": {"prefix": "/"},
                 "route": {"cluster": "primary",
                           "request_mirror_policies": [{"cluster": "mirror"}]}}
        skiff = skiff_factory(bootstrap([http_listener("mirrored", [route])],
                                        [static_cluster("primary", primary.port),
                                         static_cluster("mirror", mirror.port)]))
        port = skiff.listener_port()
        status, _, body = request(port, "/copied", headers={"Host": "svc.example:8080"})
        assert status == 200 and body == b"200\n"
        assert primary.hits.get("/copied") == 1
        # The shadow is fire-and-forget: wait for it to land.
        assert wait_until(lambda: mirror.hits.get("/copied") == 1, timeout=5)
        assert mirror.headers["/copied"]["host"] == "svc.example-shadow:8080"
        assert primary.headers["/copied"]["host"] == "svc.example:8080"
    finally:
        primary.close()
        mirror.close()


def test_circuit_breaker_overflow_answers_503_uo(httpbin, skiff_factory, tmp_path):
    log = tmp_path / "access.log"
    route = {"match": {"prefix": "/"}, "route": {"cluster": "slow"}}
    limits = {"circuit_breakers": {"thresholds": [
        {"max_connections": 1, "max_pending_requests": 1, "max_requests": 100}]}}
    skiff = skiff_factory(bootstrap([http_listener("cb", [route], access_log_path=log)],
                                    [static_cluster("slow", httpbin, extra=limits)]), concurrency=1)
    port = skiff.listener_port()

    results = []

    def call():
        results.append(request(port, "/delay/1", timeout=10)[0])

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One request holds the only connection, one waits for it; the rest overflow.
    assert sorted(results) == [200, 200, 503, 503], results
    stats = skiff.stats()
    assert stats["cluster.slow.upstream_rq_pending_overflow"] == 2
    assert stats["cluster.slow.upstream_cx_overflow"] >= 3
    assert stats["cluster.slow.upstream_cx_total"] == 1
    lines = read_access_log(log, 4)
    assert sum(1 for line in lines if line.startswith("503 UO ")) == 2, lines


def test_rewrites_and_header_mutations(httpbin, skiff_factory):
    route = {
        "match": {"prefix": "/api/"},
        "route": {"cluster": "bin", "prefix_rewrite": "/anything/",
                  "host_rewrite_literal": "rewritten.example"},
        "request_headers_to_add": [{"header": {"key": "x-route", "value": "r1"}}],
        "response_headers_to_add": [{"header": {"key": "x-served-by", "value": "skiff-test"}}],
        "response_headers_to_remove": ["access-control-allow-origin"],
    }
    vhost = {"name": "v", "domains": ["*"], "routes": [route],
             "request_headers_to_add": [{"header": {"key": "x-vhost", "value": "v1"}}]}
    skiff = skiff_factory(bootstrap([http_listener("rw", [vhost])], [static_cluster("bin", httpbin)]))
    status, headers, body = request(skiff.listener_port(), "/api/thing?x=1")
    assert status == 200
    echoed = json.loads(body)
    assert echoed["url"].endswith("/anything/thing?x=1")
    assert echoed["headers"]["Host"] == "rewritten.example"
    assert echoed["headers"]["X-Route"] == "r1"
    assert echoed["headers"]["X-Vhost"] == "v1"
    assert echoed["headers"]["X-Envoy-Original-Path"] == "/api/thing?x=1"
    assert headers["x-served-by"] == "skiff-test"
    assert "access-control-allow-origin" not in headers


def test_direct_response_and_redirect(skiff_factory):
    routes = [
        {"match": {"path": "/health"},
         "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}},
        {"match": {"prefix": "/old/"},
         "redirect": {"prefix_rewrite": "/new/", "response_code": "PERMANENT_REDIRECT"}},
    ]
    skiff = skiff_factory(bootstrap([http_listener("local", routes)], []))
    port = skiff.listener_port()
    status, _, body = request(port, "/health")
    assert (status, body) == (200, b"ok\n")
    status, headers, _ = request(port, "/old/page", headers={"Host": "example.com"})
    assert status == 308
    assert headers["location"] == "http://example.com/new/page"
    stats = skiff.stats()
    assert stats["http.local.rq_direct_response"] == 1
    assert stats["http.local.rq_redirect"] == 1


def test_stream_idle_and_request_timeouts(skiff_factory, tmp_path):
    from helpers import RawBackend, raw_exchange
    silent = RawBackend("silent")
    log = tmp_path / "access.log"
    try:
        routes = [
            # The route's idle_timeout wins over the HCM's stream_idle_timeout.
            {"match": {"prefix": "/idle"}, "route": {"cluster": "silent", "timeout": "0s", "idle_timeout": "0.3s"}},
            {"match": {"prefix": "/"}, "route": {"cluster": "silent", "timeout": "0s"}},
        ]
        listener = http_listener("to", routes, access_log_path=log,
                                 hcm_extra={"request_timeout": "0.4s", "stream_idle_timeout": "30s"})
        skiff = skiff_factory(bootstrap([listener], [static_cluster("silent", silent.port)]))
        port = skiff.listener_port()
        # No byte either way for 0.3 s: 408 with the SI flag.
        status, _, body = request(port, "/idle")
        assert (status, body) == (408, b"stream timeout")
        # A body that never finishes: request_timeout answers 408.
        reply, closed = raw_exchange(port, b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert reply.startswith(b"HTTP/1.1 408"), reply[:60]
        assert closed
        lines = read_access_log(log, 2)
        assert any(line.startswith("408 SI /idle") for line in lines), lines
        stats = skiff.stats()
        assert stats["http.to.downstream_rq_idle_timeout"] == 1
        assert stats["http.to.downstream_rq_timeout"] == 1
    finally:
        silent.close()


def test_use_remote_address_appends_xff_and_marks_internal(httpbin, skiff_factory):
    route = {"match": {"prefix": "/"}, "route": {"cluster": "bin"}}
    listener = http_listener("edge", [route], hcm_extra={"use_remote_address": True})
    skiff = skiff_factory(bootstrap([listener], [static_cluster("bin", httpbin)]))
    status, _, body = request(skiff.listener_port(), "/headers?show_env=1", headers={"X-Forwarded-For": "10.1.2.3"})
    assert status == 200
    echoed = json.loads(body)["headers"]
    # The peer (loopback) is appended, and a loopback peer is internal.
    assert echoed["X-Forwarded-For"] == "10.1.2.3,127.0.0.1"
    assert echoed["X-Envoy-Internal"] == "true"
    assert echoed["X-Forwarded-Proto"] == "http"


def test_xff_trusted_hops_pick_the_downstream_address(httpbin, skiff_factory, tmp_path):
    log = tmp_path / "access.log"
    route = {"match": {"prefix": "/"}, "route": {"cluster": "bin"}}
    listener = http_listener("mesh", [route], access_log_path=log,
                             log_format="%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%\n",
                             hcm_extra={"xff_num_trusted_hops": 1})
    skiff = skiff_factory(bootstrap([listener], [static_cluster("bin", httpbin)]))
    status, _, _ = request(skiff.listener_port(), "/get", headers={"X-Forwarded-For": "198.51.100.7, 10.0.0.2"})
    assert status == 200
    # One trusted hop (10.0.0.2) in front of us: the client is the entry before it.
    assert read_access_log(log, 1)[0] == "198.51.100.7:0 127.0.0.1"


def test_response_body_streams_without_buffering(httpbin, skiff_factory):
    import socket
    import time
    route = {"match": {"prefix": "/"}, "route": {"cluster": "bin"}}
    skiff = skiff_factory(bootstrap([http_listener("stream", [route])], [static_cluster("bin", httpbin)]))
    with socket.create_connection(("127.0.0.1", skiff.listener_port()), timeout=10) as s:
        # httpbin drips 2 bytes one second apart: the first must reach us before the second exists.
        s.sendall(b"GET /drip?duration=2&numbytes=2&delay=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 1:
            received += s.recv(4096)
        first_seen = time.monotonic()
        assert len(received.split(b"\r\n\r\n", 1)[1]) == 1, received
        while len(received.split(b"\r\n\r\n", 1)[1]) < 2:
            chunk = s.recv(4096)
            assert chunk, received
            received += chunk
        # The second byte came a drip interval later, so the first was not held back for it.
        assert time.monotonic() - first_seen > 0.5


def test_timeout_headers_and_respect_expected_rq_timeout(skiff_factory):
    from helpers import RawBackend
    silent = RawBackend("silent")
    try:
        router = {"name": "envoy.filters.http.router",
                  "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                                   "respect_expected_rq_timeout": True}}
        route = {"match": {"prefix": "/"}, "route": {"cluster": "silent", "timeout": "30s"}}
        skiff = skiff_factory(bootstrap([http_listener("exp", [route], http_filters=[router])],
                                        [static_cluster("silent", silent.port)]))
        port = skiff.listener_port()
        # x-envoy-upstream-rq-timeout-ms overrides the route's 30 s.
        status, _, body = request(port, "/a", headers={"x-envoy-upstream-rq-timeout-ms": "200"})
        assert (status, body) == (504, b"upstream request timeout")
        # With respect_expected_rq_timeout, the downstream hop's expected timeout bounds ours.
        status, _, _ = request(port, "/b", headers={"x-envoy-expected-rq-timeout-ms": "200"})
        assert status == 504
        assert skiff.stats()["cluster.silent.upstream_rq_timeout"] == 2
    finally:
        silent.close()
