"""HTTP/2 through the proxy: h2c prior knowledge downstream to an HTTP/1.1 backend, Upgrade: h2c refused (served
as HTTP/1.1), h2 upstream to nghttpd (explicit, legacy http2_protocol_options, use_downstream_protocol_config),
protocol translation both ways, multiplexing, h2load, GOAWAY on drain."""

import json
import shutil
import subprocess

import pytest

from helpers import bootstrap, http_listener, request, static_cluster, wait_until
from http2_helpers import (GOAWAY, HEADERS, RawH2, END_HEADERS, END_STREAM, curl_h2, frame,
                           h2_cluster_options, request_block)

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is required")


def routes(cluster):
    return [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]


@pytest.fixture
def h1_backend_proxy(httpbin, skiff_factory, tmp_path):
    log = tmp_path / "access.log"
    listener = http_listener("h2front", routes("httpbin"), access_log_path=log,
                             log_format="%PROTOCOL% %RESPONSE_CODE% %REQ(:PATH)%\n")
    skiff = skiff_factory(bootstrap([listener], [static_cluster("httpbin", httpbin)]))
    skiff.port = skiff.listener_port("h2front")
    skiff.log = log
    return skiff


def test_h2c_prior_knowledge_to_http1_backend(h1_backend_proxy):
    code, version, body = curl_h2(h1_backend_proxy.port, "/anything/x?q=1", method="POST", data=b"payload-123",
                                  headers=["x-custom: v", "content-type: application/octet-stream"])
    assert (code, version) == (200, "2")
    echoed = json.loads(body)
    assert echoed["data"] == "payload-123"
    assert echoed["args"] == {"q": "1"}
    assert echoed["headers"]["X-Custom"] == "v"
    stats = h1_backend_proxy.stats()
    assert stats["http.h2front.downstream_cx_http2_total"] >= 1
    assert stats["http.h2front.downstream_rq_http2_total"] >= 1


def test_h2c_large_response_streams_with_flow_control(h1_backend_proxy):
    code, version, body = curl_h2(h1_backend_proxy.port, "/bytes/102400")
    assert (code, version) == (200, "2")
    assert len(body) == 102400


def test_upgrade_h2c_is_served_as_http11(h1_backend_proxy):
    # curl --http2 over cleartext sends "Upgrade: h2c" + HTTP2-Settings; as Envoy, the upgrade is ignored.
    code, version, body = curl_h2(h1_backend_proxy.port, "/get", prior_knowledge=False)
    assert (code, version) == (200, "1.1")
    assert "Upgrade" not in json.loads(body)["headers"]
    # Plain HTTP/1.1 on the same AUTO listener still works.
    status, _, _ = request(h1_backend_proxy.port, "/get")
    assert status == 200


def test_h2load_through_proxy_to_http1_backend(h1_backend_proxy):
    if shutil.which("h2load") is None:
        pytest.skip("h2load (nghttp2-client) is not installed")
    out = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "8", f"http://127.0.0.1:{h1_backend_proxy.port}/get"],
                         capture_output=True, text=True, timeout=120).stdout
    assert "400 succeeded" in out, out
    assert "status codes: 400 2xx" in out, out


def test_codec_type_http2_rejects_http1(httpbin, skiff_factory):
    listener = http_listener("h2only", routes("httpbin"), hcm_extra={"codec_type": "HTTP2"})
    skiff = skiff_factory(bootstrap([listener], [static_cluster("httpbin", httpbin)]))
    port = skiff.listener_port("h2only")
    assert curl_h2(port, "/get")[:2] == (200, "2")
    with pytest.raises(Exception):
        status, _, _ = request(port, "/get", timeout=3)
        assert status != 200


@pytest.fixture
def h2_upstream_proxy(nghttpd, skiff_factory):
    explicit = static_cluster("h2explicit", nghttpd.port, extra=h2_cluster_options("explicit"))
    legacy = static_cluster("h2legacy", nghttpd.port, extra={"http2_protocol_options": {}})
    downstream = static_cluster("h2downstream", nghttpd.port, extra=h2_cluster_options("downstream"))
    vhosts = [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/legacy/"}, "route": {"cluster": "h2legacy", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/downstream/"}, "route": {"cluster": "h2downstream", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "h2explicit"}},
    ]}]
    skiff = skiff_factory(bootstrap([http_listener("h2back", vhosts)], [explicit, legacy, downstream]),
                          concurrency=1)
    skiff.port = skiff.listener_port("h2back")
    return skiff


def test_http1_client_to_h2_upstream(h2_upstream_proxy):
    status, _, body = request(h2_upstream_proxy.port, "/index.html")
    assert status == 200
    assert body == b"hello from nghttpd\n"
    assert h2_upstream_proxy.stats()["cluster.h2explicit.upstream_cx_http2_total"] == 1


def test_h2_client_to_h2_upstream_large_body(h2_upstream_proxy):
    code, version, body = curl_h2(h2_upstream_proxy.port, "/big.bin")
    assert (code, version) == (200, "2")
    assert body == bytes(range(256)) * 2000


def test_legacy_cluster_http2_protocol_options(h2_upstream_proxy):
    status, _, body = request(h2_upstream_proxy.port, "/legacy/index.html")
    assert status == 200 and body == b"hello from nghttpd\n"
    assert h2_upstream_proxy.stats()["cluster.h2legacy.upstream_cx_http2_total"] == 1


def test_use_downstream_protocol_config_follows_the_client(h2_upstream_proxy):
    # An HTTP/2 client makes the upstream request HTTP/2 (nghttpd speaks only h2 on this port).
    code, version, body = curl_h2(h2_upstream_proxy.port, "/downstream/index.html")
    assert (code, version, body) == (200, "2", b"hello from nghttpd\n")
    assert h2_upstream_proxy.stats()["cluster.h2downstream.upstream_cx_http2_total"] == 1


def test_h2_upstream_multiplexes_streams(h2_upstream_proxy):
    if shutil.which("h2load") is None:
        pytest.skip("h2load (nghttp2-client) is not installed")
    out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "20",
                          f"http://127.0.0.1:{h2_upstream_proxy.port}/index.html"],
                         capture_output=True, text=True, timeout=120).stdout
    assert "2000 succeeded" in out, out
    stats = h2_upstream_proxy.stats()
    assert stats["cluster.h2explicit.upstream_rq_total"] >= 2000
    # One worker: all streams share a connection or two (never one per request).
    assert stats["cluster.h2explicit.upstream_cx_http2_total"] <= 2


def test_goaway_on_drain(h1_backend_proxy):
    conn = RawH2(h1_backend_proxy.port)
    assert conn.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, request_block("/get")))
    got_headers = False
    while not got_headers:
        f = conn.read_frame()
        assert f is not None
        got_headers = f[0] == HEADERS and f[2] == 1
    status, _ = h1_backend_proxy.admin_post("/drain_listeners?graceful&skip_exit")
    assert status == 200
    code, _ = conn.wait_goaway_or_close()
    assert code == 0  # NO_ERROR
    assert wait_until(lambda: h1_backend_proxy.stats()["http2.goaway_sent"] >= 1)
    conn.close()


@pytest.mark.parametrize("retry_on,expected", [("refused-stream", 200), ("", 503)])
def test_refused_stream_retry(skiff_factory, retry_on, expected):
    from http2_helpers import RefusingH2Server
    server = RefusingH2Server(refuse=1)
    try:
        route = {"cluster": "refusing"}
        if retry_on:
            route["retry_policy"] = {"retry_on": retry_on, "num_retries": 2}
        cluster = static_cluster("refusing", server.port, extra=h2_cluster_options("explicit"))
        skiff = skiff_factory(bootstrap([http_listener("refuse", [{"match": {"prefix": "/"}, "route": route}])],
                                        [cluster]))
        status, _, _ = request(skiff.listener_port("refuse"), "/r")
        assert status == expected
        assert skiff.stats()["cluster.refusing.upstream_rq_retry"] == (1 if retry_on else 0)
    finally:
        server.stop()
