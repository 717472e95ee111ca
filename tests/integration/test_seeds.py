"""The seed configs, unchanged except for the backend address and the listener port, against real peers."""

import json
import re

from helpers import (CountingBackend, httpbin_seed, replace_block, request, substitute, wait_until)

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def echoed_headers(port, headers=None):
    status, _, body = request(port, "/headers?show_env=1", headers=headers)
    assert status == 200, body
    return json.loads(body)["headers"]


def test_httpbin_seed_adds_envoy_headers(seeds, httpbin, skiff_factory):
    skiff = skiff_factory(httpbin_seed(seeds, httpbin))
    port = skiff.listener_port("httpbin-demo")

    first = echoed_headers(port)
    assert UUID4.fullmatch(first["X-Request-Id"]), first
    assert first["X-Forwarded-Proto"] == "http"
    assert first["X-Envoy-Expected-Rq-Timeout-Ms"] == "15000"
    # auto_host_rewrite: Host becomes the LOGICAL_DNS endpoint's hostname.
    assert first["Host"] == "localhost"

    second = echoed_headers(port)
    assert second["X-Request-Id"] != first["X-Request-Id"]

    kept = echoed_headers(port, {"X-Request-Id": "client-chosen-id-42"})
    assert kept["X-Request-Id"] == "client-chosen-id-42"


def retry_config(seeds, port):
    snippet = (seeds / "httpbin-retry.route-snippet.yaml").read_text()
    return replace_block(httpbin_seed(seeds, port), "routes:", snippet)


def test_retry_snippet_against_httpbin(seeds, httpbin, skiff_factory):
    skiff = skiff_factory(retry_config(seeds, httpbin))
    port = skiff.listener_port()

    status, _, _ = request(port, "/status/500")
    assert status == 500

    def settled():
        s = skiff.stats()
        return s if s.get("cluster.httpbin_service.upstream_rq_total") == 4 else None

    stats = wait_until(settled, timeout=5) or skiff.stats()
    # The first try plus three retries reached httpbin.
    assert stats["cluster.httpbin_service.upstream_rq_total"] == 4
    assert stats["cluster.httpbin_service.upstream_rq_retry"] == 3
    assert stats["cluster.httpbin_service.retry.upstream_rq_500"] == 3
    assert stats["cluster.httpbin_service.retry.upstream_rq_5xx"] == 3
    assert stats["cluster.httpbin_service.retry.upstream_rq_completed"] == 3

    # A success is not retried.
    assert request(port, "/status/200")[0] == 200
    assert wait_until(lambda: skiff.stats()["cluster.httpbin_service.upstream_rq_total"] == 5, timeout=5)
    assert skiff.stats()["cluster.httpbin_service.upstream_rq_retry"] == 3


def test_retry_snippet_counted_by_backend(seeds, skiff_factory):
    backend = CountingBackend()
    try:
        skiff = skiff_factory(retry_config(seeds, backend.port))
        port = skiff.listener_port()
        assert request(port, "/status/500")[0] == 500
        assert backend.hits.get("/status/500") == 4
        assert request(port, "/status/503")[0] == 503
        assert backend.hits.get("/status/503") == 4
        assert request(port, "/status/404")[0] == 404
        assert backend.hits.get("/status/404") == 1
    finally:
        backend.close()


def test_native_backend_seed_strict_dns(seeds, httpbin, skiff_factory):
    config = substitute((seeds / "native-backend.envoy.yaml").read_text(), [
        (r"address: backend$", "address: localhost"),
        (r"port_value: 80$", f"port_value: {httpbin}"),
        (r"port_value: 10000$", "port_value: 0"),
    ])
    skiff = skiff_factory(config)
    port = skiff.listener_port("listener_0")
    status, _, body = request(port, "/get?seed=native")
    assert status == 200
    assert json.loads(body)["args"] == {"seed": "native"}
    stats = skiff.stats()
    assert stats["cluster.service_backend.upstream_rq_total"] >= 1
    assert stats["cluster.service_backend.membership_total"] >= 1
    clusters = skiff.admin_get("/clusters")[1]
    assert f"service_backend::127.0.0.1:{httpbin}::" in clusters
