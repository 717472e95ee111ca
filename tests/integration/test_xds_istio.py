"""Istio's config dump (../shared/fixtures/istio, Istio 1.10, lowerCamelCase JSON) served over ADS by
skiff-xds-server to a sidecar bootstrapped with only dynamic_resources + the xDS cluster.

Without an allow-list, listeners naming Istio-private HTTP filters are NACKed (Envoy's rule); with the
runtime key skiff.allow_unknown_extensions they are skipped (logged once per listener) and every
listener, route, cluster and endpoint is ACKed. Traffic then goes through one of the dump's outbound
HTTP listeners (rebound to loopback) to the service whose endpoints were rewritten to a local backend."""

import json

import pytest

from helpers import CountingBackend, free_port, request, wait_until
from test_xds import acked, lds_config, xds_server  # noqa: F401
from test_xds_server import ISTIO, SERVER, CDS, EDS, LDS, RDS

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")

DUMP = ISTIO / "sidecar-1.10-full-dump/configdump.json"
# Istio-private filters (and Envoy filters Skiff does not implement) that Istio puts on every HCM.
ALLOW = ["istio.metadata_exchange", "istio.stats", "istio.alpn", "istio_authn", "envoy.filters.http.cors",
         "envoy.filters.http.fault", "envoy.filters.http.grpc_stats"]


def nacks(server, type_url):
    return [r["error_detail"]["message"] for r in server.command("requests")["requests"]
            if r["type_url"] == type_url and r["error_detail"]]


def dump_section(kind):
    for config in json.loads(DUMP.read_text())["configs"]:
        if config["@type"].endswith("." + kind):
            return config
    raise KeyError(kind)


@pytest.fixture
def dump():
    if not DUMP.exists():
        pytest.skip(f"no Istio fixtures at {ISTIO}")
    return DUMP


def test_istio_listeners_with_private_filters_are_nacked_without_allow_list(xds_server, skiff_factory,  # noqa: F811
                                                                            dump):
    loaded = xds_server.command(f"load {dump}")
    assert loaded["ok"] and loaded["errors"] == [], loaded
    skiff_factory(lds_config(xds_server.port, False), wait_ready=False)
    assert wait_until(lambda: nacks(xds_server, LDS), timeout=15)
    msg = nacks(xds_server, LDS)[0]
    # Envoy's rule: an unknown, non-optional HTTP filter rejects the listener, naming the field.
    # istio.metadata_exchange (http_filters[0], a null-VM Wasm in a TypedStruct) is built; istio.alpn is not.
    assert "0.0.0.0_9080: listener.filter_chains[0].filters[0].typed_config.http_filters[1]: unknown HTTP " \
           "filter 'type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig'" in msg, msg
    assert wait_until(lambda: acked(xds_server, CDS, loaded["version"], False))


def test_istio_dump_acked_with_allow_list_and_traffic_reaches_backend(xds_server, skiff_factory,  # noqa: F811
                                                                      tmp_path, dump):
    loaded = xds_server.command(f"load {dump}")
    assert loaded["ok"] and loaded["errors"] == [], loaded
    version = loaded["version"]
    config = lds_config(xds_server.port, False)
    config["layered_runtime"] = {"layers": [{"name": "skiff", "static_layer": {
        "skiff.allow_unknown_extensions": ",".join(ALLOW)}}]}
    skiff = skiff_factory(config, wait_ready=False)
    for type_url in (CDS, LDS, RDS):
        assert wait_until(lambda t=type_url: acked(xds_server, t, version, False), timeout=15), \
            (type_url, nacks(xds_server, type_url))
    # The dump has no endpoints and Istio's EDS sources have initial_fetch_timeout 0s (wait for ever):
    # the sidecar stays not ready until each EDS cluster has an assignment, as Envoy does.
    assert skiff.admin_get("/ready")[0] == 503
    eds = [c["cluster"] for c in dump_section("ClustersConfigDump")["dynamicActiveClusters"]
           if c["cluster"].get("type") == "EDS"]
    names = [c.get("edsClusterConfig", {}).get("serviceName", c["name"]) for c in eds]
    (tmp_path / "eds.json").write_text(json.dumps({"endpoints": [{"cluster_name": n} for n in names]}))
    eds_version = xds_server.command(f"push {tmp_path / 'eds.json'}")["version"]
    assert wait_until(lambda: acked(xds_server, EDS, eds_version, False), timeout=15), nacks(xds_server, EDS)
    assert wait_until(lambda: skiff.admin_get("/ready")[0] == 200, timeout=20)
    for type_url in (CDS, EDS, LDS, RDS):
        assert nacks(xds_server, type_url) == [], type_url
    stats = skiff.stats()
    assert stats["listener_manager.lds.update_rejected"] == 0
    assert stats["cluster_manager.cds.update_rejected"] == 0
    # The dump's 16 dynamic listeners, 23 dynamic clusters and 6 route configs are in.
    assert stats["listener_manager.total_listeners_active"] == loaded["counts"][LDS]
    names = {l["name"] for l in json.loads(skiff.admin_get("/listeners?format=json")[1])["listener_statuses"]}
    assert {"virtualOutbound", "virtualInbound", "0.0.0.0_9080"} <= names
    # istiod 1.10 wraps istio.stats (a null-VM Wasm filter) in a TypedStruct; it is unwrapped and built.
    assert "HTTP filter 'istio.stats' is not supported" not in skiff.logs

    # Traffic: the outbound 9080 listener (RDS "9080") rebound to loopback; one of its services'
    # endpoints rewritten to a local backend.
    listener = next(d["activeState"]["listener"] for d in dump_section("ListenersConfigDump")["dynamicListeners"]
                    if d["name"] == "0.0.0.0_9080")
    route = next(r["routeConfig"] for r in dump_section("RoutesConfigDump")["dynamicRouteConfigs"]
                 if r["routeConfig"]["name"] == "9080")
    vhost = next(v for v in route["virtualHosts"] if v["routes"][0].get("route", {}).get("cluster", "")
                 .startswith("outbound|9080||"))
    cluster = vhost["routes"][0]["route"]["cluster"]
    port = free_port()
    listener["address"] = {"socketAddress": {"address": "127.0.0.1", "portValue": port}}
    listener.pop("deprecatedV1", None)
    listener["bindToPort"] = True
    backend = CountingBackend()
    try:
        push = {"listeners": [listener], "endpoints": [{"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": backend.port}}}}]}]}]}
        (tmp_path / "push.json").write_text(json.dumps(push))
        pushed = xds_server.command(f"push {tmp_path / 'push.json'}")
        assert pushed["ok"] and not pushed.get("errors"), pushed
        assert wait_until(lambda: acked(xds_server, LDS, pushed["version"], False), timeout=15), \
            nacks(xds_server, LDS)
        host = vhost["domains"][0]
        assert wait_until(lambda: request(port, "/productpage", headers={"host": host})[0] == 200), \
            (cluster, host, request(port, "/productpage", headers={"host": host}))
        assert backend.hits.get("/productpage"), backend.hits
        # The outbound listener's istio.stats reported the request.
        prometheus = skiff.admin_get("/stats/prometheus")[1]
        assert wait_until(lambda: 'istio_requests_total{reporter="source"' in skiff.admin_get("/stats/prometheus")[1]), \
            prometheus[-2000:]
    finally:
        backend.close()
