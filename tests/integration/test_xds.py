"""skiff fed over ADS by skiff-xds-server: CDS + EDS + RDS (SotW and Delta), route changes, NACKs,
control-plane loss and churn under load."""

import json
import socket
import threading
import time
import http.client
from pathlib import Path

import pytest

from conftest import SKIFF_BIN
from helpers import free_port, request, wait_until
from test_xds_server import Lines, SERVER, CDS, EDS, LDS, RDS

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def skiff_config(xds_port, delta, rds_timeout="10s", cds_timeout="10s", port=0):
    return {
        "node": {"id": "sidecar~127.0.0.1~xds-test.default~default.svc.cluster.local", "cluster": "xds-test"},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": cds_timeout},
        },
        "static_resources": {
            "clusters": [{
                "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}}]}]},
            }],
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM, "stat_prefix": "ingress",
                        "rds": {"route_config_name": "local_route",
                                "config_source": {"ads": {}, "resource_api_version": "V3",
                                                  "initial_fetch_timeout": rds_timeout}},
                        "http_filters": [{"name": "envoy.filters.http.router"}],
                    }}]}],
            }],
        },
    }


def snapshot(httpbin_port, route_tag="v1", endpoints=None):
    endpoints = endpoints or [httpbin_port]
    return json.dumps({
        "clusters": [{"name": "httpbin", "type": "EDS", "connect_timeout": "1s",
                      "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}}],
        "endpoints": [{"cluster_name": "httpbin", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in endpoints]}]}],
        "routes": [route_config(route_tag)],
    })


def route_config(tag, name="local_route"):
    return {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
        "match": {"prefix": "/"}, "route": {"cluster": "httpbin"},
        "response_headers_to_add": [{"header": {"key": "x-route-tag", "value": tag}}]}]}]}


@pytest.fixture
def xds_server():
    s = Lines([str(SERVER)])
    hello = s.read()
    assert hello["event"] == "listening"
    s.port = hello["port"]
    yield s
    s.close()


def load(server, path, text, command="load"):
    path.write_text(text)
    reply = server.command(f"{command} {path}")
    assert reply["ok"] and not reply.get("errors"), reply
    return reply


def requests_of(server, type_url):
    return [r for r in server.command("requests")["requests"] if r["type_url"] == type_url]


def acked(server, type_url, version, delta):
    """True once a request of type_url ACKs the response that carried `version`."""
    responses = [r for r in server.command("responses")["responses"]
                 if r["type_url"] == type_url and r["version"] == version]
    nonces = {r["nonce"] for r in responses}
    for r in requests_of(server, type_url):
        if r["response_nonce"] in nonces and r["error_detail"] is None:
            if delta or r["version_info"] == version:
                return True
    return False


def get_tag(port, path="/get"):
    status, headers, _ = request(port, path)
    return status, headers.get("x-route-tag")


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_cds_eds_rds_over_ads(xds_server, httpbin, skiff_factory, tmp_path, delta):
    v1 = load(xds_server, tmp_path / "v1.json", snapshot(httpbin, "v1"))
    skiff = skiff_factory(skiff_config(xds_server.port, delta))
    port = skiff.listener_port("ingress")
    assert get_tag(port) == (200, "v1")

    stats = skiff.stats()
    assert stats["control_plane.connected_state"] == 1
    assert stats["cluster_manager.cds.update_success"] >= 1
    assert stats["http.ingress.rds.local_route.config_reload"] == 1
    assert stats["cluster.httpbin.update_success"] >= 1
    assert wait_until(lambda: acked(xds_server, CDS, v1["version"], delta))

    # A route change takes effect for the next request.
    v2 = load(xds_server, tmp_path / "v2.json", json.dumps({"routes": [route_config("v2")]}), "push")
    assert wait_until(lambda: get_tag(port) == (200, "v2")), get_tag(port)
    assert wait_until(lambda: acked(xds_server, RDS, v2["version"], delta))

    # /config_dump shows the dynamic cluster, endpoints and route config with versions.
    status, body = skiff.admin_get("/config_dump?include_eds")
    assert status == 200
    dump = json.loads(body)["configs"]
    by_type = {c["@type"].rsplit(".", 1)[-1]: c for c in dump}
    active = by_type["ClustersConfigDump"]["dynamic_active_clusters"]
    assert [c["cluster"]["name"] for c in active] == ["httpbin"] and active[0]["version_info"]
    assert active[0]["last_updated"]
    routes = by_type["RoutesConfigDump"]["dynamic_route_configs"]
    assert routes[0]["route_config"]["name"] == "local_route" and routes[0]["version_info"]
    assert by_type["EndpointsConfigDump"]["dynamic_endpoint_configs"][0]["endpoint_config"]["cluster_name"] == \
        "httpbin"

    # The node carries Skiff's identity.
    first = requests_of(xds_server, CDS)[0]
    assert first["node_id"].startswith("sidecar~127.0.0.1~")


def test_invalid_cluster_is_nacked_and_traffic_keeps_flowing(xds_server, httpbin, skiff_factory, tmp_path):
    load(xds_server, tmp_path / "v1.json", snapshot(httpbin))
    skiff = skiff_factory(skiff_config(xds_server.port, False))
    port = skiff.listener_port("ingress")
    assert request(port, "/get")[0] == 200

    bad = xds_server.command(f"invalid {CDS} broken")
    assert wait_until(lambda: any(r["error_detail"] for r in requests_of(xds_server, CDS)))
    nack = [r for r in requests_of(xds_server, CDS) if r["error_detail"]][-1]
    assert "broken" in nack["error_detail"]["message"]
    responses = [r for r in xds_server.command("responses")["responses"]
                 if r["type_url"] == CDS and r["version"] == bad["version"]]
    assert nack["response_nonce"] in {r["nonce"] for r in responses}
    assert nack["version_info"] != bad["version"]  # the last accepted version
    assert request(port, "/get")[0] == 200
    assert wait_until(lambda: skiff.stats()["cluster_manager.cds.update_rejected"] >= 1)

    # A semantically bad cluster names the resource and the field.
    bad_eds = {"clusters": [{"name": "bad-eds", "type": "EDS", "connect_timeout": "1s",
                             "eds_cluster_config": {"eds_config": {"path": "/nonexistent"}}}]}
    xds_server.command(f"remove {CDS} broken")
    load(xds_server, tmp_path / "bad.json", json.dumps(bad_eds), "push")
    assert wait_until(lambda: any(r["error_detail"] and "bad-eds" in r["error_detail"]["message"]
                                  for r in requests_of(xds_server, CDS)))
    msg = [r for r in requests_of(xds_server, CDS) if r["error_detail"]][-1]["error_detail"]["message"]
    assert "eds_config" in msg, msg

    # A following good update is ACKed.
    good = xds_server.command(f"remove {CDS} bad-eds")
    assert wait_until(lambda: acked(xds_server, CDS, good["version"], False))
    assert skiff.stats()["cluster_manager.cds.update_rejected"] >= 2
    load(xds_server, tmp_path / "v3.json", snapshot(httpbin, "v3"))
    assert wait_until(lambda: get_tag(port) == (200, "v3"))


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_control_plane_loss_and_reconnect(xds_server, httpbin, skiff_factory, tmp_path, delta):
    load(xds_server, tmp_path / "v1.json", snapshot(httpbin))
    skiff = skiff_factory(skiff_config(xds_server.port, delta))
    port = skiff.listener_port("ingress")
    assert skiff.stats()["control_plane.connected_state"] == 1

    assert xds_server.command("stop")["ok"]
    assert wait_until(lambda: skiff.stats()["control_plane.connected_state"] == 0)
    for _ in range(20):
        assert request(port, "/get")[0] == 200  # the last good config keeps serving
    assert skiff.stats()["cluster_manager.cds.update_failure"] >= 1

    before = len(requests_of(xds_server, CDS))
    assert xds_server.command("start")["ok"]
    assert wait_until(lambda: skiff.stats()["control_plane.connected_state"] == 1, timeout=20)
    # It resubscribed: new requests on a new stream, with the version it has.
    assert wait_until(lambda: len(requests_of(xds_server, CDS)) > before)
    resub = requests_of(xds_server, CDS)[before]
    if delta:
        assert resub["initial_resource_versions"].get("httpbin"), resub  # what it already has
    else:
        assert resub["version_info"] != "", resub
    v2 = load(xds_server, tmp_path / "v2.json", json.dumps({"routes": [route_config("after")]}), "push")
    assert wait_until(lambda: get_tag(port) == (200, "after"))
    assert wait_until(lambda: acked(xds_server, RDS, v2["version"], delta))


def test_not_ready_before_first_fetch(xds_server, httpbin, skiff_factory, tmp_path):
    # Nothing to serve yet: CDS has no response; /ready stays 503 until the control plane answers.
    port = free_port()
    skiff = skiff_factory(skiff_config(xds_server.port, False, cds_timeout="0s", rds_timeout="0s", port=port),
                          wait_ready=False)
    assert wait_until(lambda: skiff.running() and skiff.admin_get("/ready")[0] in (200, 503))
    assert wait_until(lambda: len(requests_of(xds_server, CDS)) > 0)
    assert skiff.admin_get("/ready")[0] == 503
    # The listener warms on its route config (initial_fetch_timeout 0s: no timeout): not bound yet.
    assert skiff.stats()["listener_manager.total_listeners_warming"] == 1
    assert refused(port)
    load(xds_server, tmp_path / "v1.json", snapshot(httpbin))
    assert wait_until(lambda: skiff.admin_get("/ready")[0] == 200)
    # Workers apply the cluster a moment after the main thread goes LIVE (posted to their loops).
    assert wait_until(lambda: request(port, "/get")[0] == 200)


def test_rds_initial_fetch_timeout_makes_ready(xds_server, httpbin, skiff_factory, tmp_path):
    # The route config never comes: the listener warms (connections refused) until initial_fetch_timeout,
    # then the server goes LIVE and the listener answers 404 NR.
    load(xds_server, tmp_path / "v1.json", json.dumps({"clusters": []}))
    port = free_port()
    started = time.monotonic()
    skiff = skiff_factory(skiff_config(xds_server.port, False, rds_timeout="3s", port=port), wait_ready=False)
    assert wait_until(lambda: skiff.running() and skiff.admin_get("/ready")[0] == 503)
    assert skiff.stats()["listener_manager.total_listeners_warming"] == 1
    assert refused(port)
    assert wait_until(lambda: not refused(port), timeout=15)
    assert time.monotonic() - started >= 2.5  # not before the timeout
    assert wait_until(lambda: skiff.admin_get("/ready")[0] == 200)
    stats = skiff.stats()
    assert stats["http.ingress.rds.local_route.init_fetch_timeout"] == 1
    assert stats["listener_manager.total_listeners_warming"] == 0
    assert stats["listener_manager.total_listeners_active"] == 1
    status, headers, _ = request(port, "/get")
    assert status == 404


def test_churn_under_load(xds_server, httpbin, skiff_factory, tmp_path):
    """>= 200 EDS/RDS updates at >= 10/s while a keep-alive client loops: no failed request, all ACKed."""
    second = []
    load(xds_server, tmp_path / "v0.json", snapshot(httpbin))
    skiff = skiff_factory(skiff_config(xds_server.port, False), concurrency=2)
    port = skiff.listener_port("ingress")
    assert request(port, "/get")[0] == 200

    stop = threading.Event()
    results = {"ok": 0, "failed": []}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/status/200")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    results["ok"] += 1
                else:
                    results["failed"].append(resp.status)
            except Exception as e:  # noqa: BLE001 - any failure counts
                results["failed"].append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    versions = []
    updates = 200
    started = time.monotonic()
    try:
        for i in range(updates):
            if i % 2:
                text = json.dumps({"routes": [route_config(f"churn{i}")]})
            else:
                text = json.dumps({"endpoints": [{"cluster_name": "httpbin", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": httpbin}},
                                  "hostname": f"h{i}"}}]}]}]})
            reply = load(xds_server, tmp_path / f"u{i}.json", text, "push")
            versions.append((RDS if i % 2 else EDS, reply["version"]))
            time.sleep(0.05)  # pacing the pushes (~15/s), not synchronisation
        elapsed = time.monotonic() - started
        assert wait_until(lambda: get_tag(port) == (200, f"churn{updates - 1}"))
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"churn: {updates} updates in {elapsed:.1f}s ({updates / elapsed:.1f}/s), "
          f"{results['ok']} requests OK, {len(results['failed'])} failed")
    assert updates / elapsed >= 10, f"{updates} updates in {elapsed:.1f}s"
    assert results["failed"] == [], results["failed"][:10]
    assert results["ok"] > 100

    # Every response was ACKed with its version and nonce.
    responses = [r for r in xds_server.command("responses")["responses"] if r["type_url"] in (EDS, RDS)]
    reqs = [r for r in xds_server.command("requests")["requests"] if r["type_url"] in (EDS, RDS)]
    acks = {(r["type_url"], r["response_nonce"]): r for r in reqs if r["response_nonce"]}
    pushed = {v for _, v in versions}
    checked = 0
    for resp in responses:
        if resp["version"] not in pushed:
            continue
        ack = acks.get((resp["type_url"], resp["nonce"]))
        assert ack is not None, f"no ACK for {resp}"
        assert ack["error_detail"] is None, ack
        assert ack["version_info"] == resp["version"], (ack, resp)
        checked += 1
    assert checked >= updates, (checked, updates)


# ---- LDS: listeners over ADS ------------------------------------------------------------------------

def lds_config(xds_port, delta):
    """A sidecar with only the xds-grpc cluster static: listeners, routes, clusters and endpoints over ADS."""
    config = skiff_config(xds_port, delta)
    config["dynamic_resources"]["lds_config"] = {"ads": {}, "resource_api_version": "V3",
                                                 "initial_fetch_timeout": "10s"}
    del config["static_resources"]["listeners"]
    return config


def lds_listener(port, name="dyn", route="local_route", tag=None, stat_prefix="dyn"):
    """An HTTP listener on 127.0.0.1:port using RDS `route`, or an inline route adding x-listener-tag."""
    hcm = {"@type": HCM, "stat_prefix": stat_prefix, "http_filters": [{"name": "envoy.filters.http.router"}]}
    if tag is None:
        hcm["rds"] = {"route_config_name": route, "config_source": {"ads": {}, "resource_api_version": "V3"}}
    else:
        hcm["route_config"] = {"name": "inline", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
            "match": {"prefix": "/"}, "route": {"cluster": "httpbin", "timeout": "30s"},
            "response_headers_to_add": [{"header": {"key": "x-listener-tag", "value": tag}}]}]}]}
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def lds_snapshot(httpbin_port, listeners, route_tag="v1"):
    snap = json.loads(snapshot(httpbin_port, route_tag))
    snap["listeners"] = listeners
    return json.dumps(snap)


def refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_lds_listener_proxies(xds_server, httpbin, skiff_factory, tmp_path, delta):
    port = free_port()
    v1 = load(xds_server, tmp_path / "v1.json", lds_snapshot(httpbin, [lds_listener(port)]))
    skiff = skiff_factory(lds_config(xds_server.port, delta))
    assert skiff.listener_port("dyn") == port
    assert get_tag(port) == (200, "v1")
    assert wait_until(lambda: acked(xds_server, LDS, v1["version"], delta))
    stats = skiff.stats()
    assert stats["listener_manager.listener_added"] == 1
    assert stats["listener_manager.listener_create_success"] == 2  # one per worker
    assert stats["listener_manager.total_listeners_active"] == 1
    assert stats["listener_manager.lds.update_success"] >= 1

    status, body = skiff.admin_get("/config_dump")
    by_type = {c["@type"].rsplit(".", 1)[-1]: c for c in json.loads(body)["configs"]}
    dynamic = by_type["ListenersConfigDump"]["dynamic_listeners"]
    assert [d["name"] for d in dynamic] == ["dyn"] and dynamic[0]["active_state"]["version_info"]

    # An identical listener in a new response changes nothing.
    load(xds_server, tmp_path / "same.json", json.dumps({"clusters": [{"name": "other", "type": "STATIC",
                                                                         "connect_timeout": "1s"}]}), "push")
    assert get_tag(port) == (200, "v1")
    assert skiff.stats()["listener_manager.listener_modified"] == 0


def test_lds_update_drains_in_flight_and_new_connections_get_new_config(xds_server, httpbin, skiff_factory,
                                                                         tmp_path):
    port = free_port()
    load(xds_server, tmp_path / "v1.json", lds_snapshot(httpbin, [lds_listener(port, tag="a")]))
    skiff = skiff_factory(lds_config(xds_server.port, False), args=["--drain-time-s", "20"])
    assert request(port, "/get")[1].get("x-listener-tag") == "a"

    result = {}

    def slow():
        result["response"] = request(port, "/delay/2", timeout=15)

    t = threading.Thread(target=slow)
    t.start()
    assert wait_until(lambda: skiff.stats().get("http.dyn.downstream_rq_active", 0) == 1)

    load(xds_server, tmp_path / "v2.json", json.dumps({"listeners": [lds_listener(port, tag="b")]}), "push")
    assert wait_until(lambda: skiff.stats()["listener_manager.listener_modified"] == 1)
    # New connections are served by the new listener while the old one still has a request in flight.
    assert request(port, "/get")[1].get("x-listener-tag") == "b"
    assert skiff.stats()["listener_manager.total_listeners_draining"] == 1
    t.join(timeout=20)
    status, headers, _ = result["response"]
    assert status == 200 and headers.get("x-listener-tag") == "a"
    assert headers.get("connection") == "close"  # the draining listener's connection ends with it
    # The drained connection closes once idle, well before the 20 s drain time.
    assert wait_until(lambda: skiff.stats()["listener_manager.total_listeners_draining"] == 0, timeout=5)
    assert skiff.stats()["listener_manager.total_listeners_active"] == 1


def test_lds_remove_refuses_new_connections(xds_server, httpbin, skiff_factory, tmp_path):
    port, other = free_port(), free_port()
    load(xds_server, tmp_path / "v1.json",
         lds_snapshot(httpbin, [lds_listener(port), lds_listener(other, name="other", stat_prefix="other")]))
    skiff = skiff_factory(lds_config(xds_server.port, True))
    assert get_tag(port) == (200, "v1")
    removed = xds_server.command(f"remove {LDS} dyn")
    assert wait_until(lambda: acked(xds_server, LDS, removed["version"], True))
    assert wait_until(lambda: refused(port))
    assert get_tag(other) == (200, "v1")
    stats = skiff.stats()
    assert stats["listener_manager.listener_removed"] == 1
    assert stats["listener_manager.total_listeners_active"] == 1
    with pytest.raises(KeyError):
        skiff.listener_port("dyn")


def test_lds_invalid_listener_is_nacked_and_old_keeps_serving(xds_server, httpbin, skiff_factory, tmp_path):
    port = free_port()
    load(xds_server, tmp_path / "v1.json", lds_snapshot(httpbin, [lds_listener(port)]))
    skiff = skiff_factory(lds_config(xds_server.port, False))
    assert get_tag(port) == (200, "v1")

    bad = lds_listener(port)
    bad["filter_chains"] = []
    load(xds_server, tmp_path / "bad.json", json.dumps({"listeners": [bad]}), "push")
    assert wait_until(lambda: any(r["error_detail"] for r in requests_of(xds_server, LDS)))
    msg = [r for r in requests_of(xds_server, LDS) if r["error_detail"]][-1]["error_detail"]["message"]
    assert "dyn" in msg and "filter_chains" in msg, msg
    assert get_tag(port) == (200, "v1")
    assert skiff.stats()["listener_manager.lds.update_rejected"] >= 1

    # A listener whose address is taken by another process cannot bind: NACKed, nothing changes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = lds_listener(s.getsockname()[1], name="taken", stat_prefix="taken")
        load(xds_server, tmp_path / "taken.json", json.dumps({"listeners": [lds_listener(port), taken]}), "push")
        assert wait_until(lambda: any(r["error_detail"] and "taken" in r["error_detail"]["message"]
                                      for r in requests_of(xds_server, LDS)))
    assert get_tag(port) == (200, "v1")


def test_lds_inbound_only_drain_keeps_inbound_listeners_stopped(xds_server, httpbin, skiff_factory, tmp_path):
    inbound_port, outbound_port = free_port(), free_port()
    inbound = lds_listener(inbound_port, name="inbound", stat_prefix="inbound")
    inbound["traffic_direction"] = "INBOUND"
    outbound = lds_listener(outbound_port, name="outbound", stat_prefix="outbound")
    load(xds_server, tmp_path / "v1.json", lds_snapshot(httpbin, [inbound, outbound]))
    skiff = skiff_factory(lds_config(xds_server.port, False))
    assert get_tag(inbound_port) == (200, "v1")

    assert skiff.admin_post("/drain_listeners?inboundonly")[0] == 200
    assert wait_until(lambda: refused(inbound_port))
    assert get_tag(outbound_port) == (200, "v1")
    # As in Envoy, a stopped inbound listener can no longer be modified: NACKed, and it stays stopped.
    inbound["per_connection_buffer_limit_bytes"] = 65536
    load(xds_server, tmp_path / "v2.json", json.dumps({"listeners": [inbound, outbound]}), "push")
    assert wait_until(lambda: any(r["error_detail"] and "inboundonly" in r["error_detail"]["message"]
                                  for r in requests_of(xds_server, LDS)))
    assert skiff.stats()["listener_manager.listener_modified"] == 0
    assert refused(inbound_port)
    assert get_tag(outbound_port) == (200, "v1")


def dynamic_listeners(skiff):
    status, body = skiff.admin_get("/config_dump")
    assert status == 200
    by_type = {c["@type"].rsplit(".", 1)[-1]: c for c in json.loads(body)["configs"]}
    return {d["name"]: d for d in by_type["ListenersConfigDump"].get("dynamic_listeners", [])}


def test_lds_listener_warms_until_its_route_config_arrives(xds_server, httpbin, skiff_factory, tmp_path):
    port, late_port = free_port(), free_port()
    load(xds_server, tmp_path / "v1.json", lds_snapshot(httpbin, [lds_listener(port)]))
    skiff = skiff_factory(lds_config(xds_server.port, False))
    assert get_tag(port) == (200, "v1")

    # A new listener naming a route config the server does not have: warming, not accepting.
    late = lds_listener(late_port, name="late", route="late_route", stat_prefix="late")
    v2 = load(xds_server, tmp_path / "v2.json", json.dumps({"listeners": [lds_listener(port), late]}), "push")
    assert wait_until(lambda: acked(xds_server, LDS, v2["version"], False))
    assert wait_until(lambda: skiff.stats()["listener_manager.total_listeners_warming"] == 1)
    assert refused(late_port)
    dump = dynamic_listeners(skiff)
    assert "warming_state" in dump["late"] and "active_state" not in dump["late"], dump["late"]
    assert "active_state" in dump["dyn"]

    # The replaced listener keeps serving on its old config while the new one warms.
    moved = lds_listener(port, route="late_route")
    load(xds_server, tmp_path / "v3.json", json.dumps({"listeners": [moved, late]}), "push")
    assert wait_until(lambda: skiff.stats()["listener_manager.total_listeners_warming"] == 2)
    for _ in range(5):
        assert get_tag(port) == (200, "v1")
    assert skiff.stats()["listener_manager.listener_modified"] == 0

    # The route config arrives: both go active and serve it.
    load(xds_server, tmp_path / "v4.json", json.dumps({"routes": [route_config("late", "late_route")]}), "push")
    assert wait_until(lambda: get_tag(late_port) == (200, "late"))
    assert wait_until(lambda: get_tag(port) == (200, "late"))
    stats = skiff.stats()
    assert stats["listener_manager.total_listeners_warming"] == 0
    assert stats["listener_manager.total_listeners_active"] == 2
    assert stats["listener_manager.listener_modified"] == 1
    assert "active_state" in dynamic_listeners(skiff)["late"]
