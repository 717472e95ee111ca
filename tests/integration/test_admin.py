"""The admin API of a skiff running the httpbin seed."""

import json
import re

import pytest

from helpers import httpbin_seed, request, wait_until


@pytest.fixture
def seeded(seeds, httpbin, skiff_factory):
    skiff = skiff_factory(httpbin_seed(seeds, httpbin))
    skiff.port = skiff.listener_port("httpbin-demo")
    skiff.backend_port = httpbin
    assert request(skiff.port, "/get")[0] == 200
    assert wait_until(lambda: skiff.stats()["cluster.httpbin_service.upstream_rq_total"] == 1, timeout=5)
    return skiff


def test_stats_text_filter_and_json(seeded):
    status, body = seeded.admin_get("/stats")
    assert status == 200
    assert re.search(r"^cluster\.httpbin_service\.upstream_rq_total: 1$", body, re.M), body[:2000]
    assert re.search(r"^http\.ingress_http\.downstream_rq_total: 1$", body, re.M)

    status, body = seeded.admin_get("/stats?filter=upstream_rq_total")
    assert status == 200
    lines = body.splitlines()
    assert "cluster.httpbin_service.upstream_rq_total: 1" in lines
    assert all("upstream_rq_total" in line for line in lines), lines

    status, body = seeded.admin_get("/stats?format=json")
    assert status == 200
    values = {s["name"]: s.get("value") for s in json.loads(body)["stats"] if "name" in s}
    assert values["cluster.httpbin_service.upstream_rq_total"] == 1


def test_stats_prometheus(seeded):
    status, body = seeded.admin_get("/stats/prometheus")
    assert status == 200
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in body
    assert re.search(r'^envoy_cluster_upstream_rq_total\{[^}]*envoy_cluster_name="httpbin_service"[^}]*\} 1$',
                     body, re.M), body[:2000]


def test_clusters(seeded):
    status, body = seeded.admin_get("/clusters")
    assert status == 200
    assert f"httpbin_service::127.0.0.1:{seeded.backend_port}::rq_total::1" in body, body


def test_config_dump(seeded):
    status, body = seeded.admin_get("/config_dump")
    assert status == 200
    configs = json.loads(body)["configs"]
    boot = [c for c in configs if c["@type"] == "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"]
    assert len(boot) == 1, [c["@type"] for c in configs]
    assert boot[0]["bootstrap"]["static_resources"]["clusters"][0]["name"] == "httpbin_service"


def test_listeners_ready_server_info(seeded):
    status, body = seeded.admin_get("/listeners")
    assert status == 200
    assert f"httpbin-demo::0.0.0.0:{seeded.port}" in body.splitlines()

    assert seeded.admin_get("/ready") == (200, "LIVE\n")

    status, body = seeded.admin_get("/server_info")
    assert status == 200
    info = json.loads(body)
    assert info["state"] == "LIVE"
    assert info["command_line_options"]["concurrency"] == 2


def test_logging_level_change(seeded):
    debug_line = re.compile(r"^\[[^\]]+\]\[\d+\]\[debug\]", re.M)
    assert not debug_line.search(seeded.logs)
    status, body = seeded.admin_post("/logging")
    assert status == 200
    assert re.search(r"^\s*router: info$", body, re.M), body

    # A GET cannot change levels (mutating admin calls need POST) ...
    assert seeded.admin_get("/logging?level=debug")[0] == 405
    assert re.search(r"^\s*router: info$", seeded.admin_post("/logging")[1], re.M)

    # ... a POST can; listing (GET, as skiff allows, or POST) shows the new level.
    status, _ = seeded.admin_post("/logging?level=debug")
    assert status == 200
    for status, body in (seeded.admin_get("/logging"), seeded.admin_post("/logging")):
        assert status == 200
        assert re.search(r"^\s*router: debug$", body, re.M), body
        assert re.search(r"^\s*pool: debug$", body, re.M), body

    assert request(seeded.port, "/get")[0] == 200
    assert wait_until(lambda: debug_line.search(seeded.logs), timeout=5), "no debug line after /logging?level=debug"


def test_get_on_post_only_endpoint_is_rejected(seeded):
    # Envoy answers 405 ("Method GET not allowed, POST required.") and does nothing.
    for path in ("/healthcheck/fail", "/quitquitquit", "/reset_counters"):
        status, body = seeded.admin_get(path)
        assert status == 405, (path, status, body)
        assert "POST required" in body
    assert seeded.admin_get("/ready") == (200, "LIVE\n")
    assert seeded.stats()["cluster.httpbin_service.upstream_rq_total"] == 1
    assert seeded.running()


def test_healthcheck_fail_then_ok(seeded):
    assert seeded.admin_post("/healthcheck/fail")[0] == 200
    # Envoy reports an initialized server that fails its health checks as DRAINING.
    assert seeded.admin_get("/ready") == (503, "DRAINING\n")
    assert json.loads(seeded.admin_get("/server_info")[1])["state"] == "DRAINING"
    assert request(seeded.port, "/get")[0] == 200  # traffic is still proxied
    assert seeded.admin_post("/healthcheck/ok")[0] == 200
    assert seeded.admin_get("/ready") == (200, "LIVE\n")


def test_quitquitquit(seeded):
    status, _ = seeded.admin_post("/quitquitquit")
    assert status == 200
    assert seeded.wait_exit(10) == 0, seeded.logs


def test_component_log_level_flag(httpbin, skiff_factory):
    from helpers import bootstrap, http_listener, static_cluster
    route = {"match": {"prefix": "/"}, "route": {"cluster": "bin"}}
    skiff = skiff_factory(bootstrap([http_listener("cl", [route])], [static_cluster("bin", httpbin)]),
                          args=["--component-log-level", "pool:debug,upstream:warning"])
    status, body = skiff.admin_get("/logging")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else body
    assert "pool: debug" in text and "upstream: warning" in text and "router: info" in text
