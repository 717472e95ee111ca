"""Churn: 1000 xDS updates (routes, clusters, endpoints, listeners) at >= 10/s over ADS while clients load
two listeners (keep-alive on one whose route config churns, a connection per request on one that LDS keeps
replacing): no request fails and every update is ACKed with its version and nonce."""

import http.client
import json
import threading
import time

import pytest

from helpers import free_port, request, wait_until
from test_xds import (lds_config, lds_listener, lds_snapshot, load, route_config, get_tag, xds_server)  # noqa: F401
from test_xds_server import SERVER, CDS, EDS, LDS, RDS

pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")


UPDATES = 1000


def spare_cluster(httpbin, i):
    return {"name": "spare", "type": "STATIC", "connect_timeout": f"{1 + i / 10000:.4f}s",
            "load_assignment": {"cluster_name": "spare", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": httpbin}}}}]}]}}


def update(httpbin, churn_port, i):
    """The i-th update: a route, cluster, endpoint or listener change, in turn."""
    kind = i % 4
    if kind == 0:
        return RDS, {"routes": [route_config(f"churn{i}")]}
    if kind == 1:
        return CDS, {"clusters": [spare_cluster(httpbin, i)]}
    if kind == 2:
        return EDS, {"endpoints": [{"cluster_name": "httpbin", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": httpbin}},
                          "hostname": f"h{i}"}}]}]}]}
    return LDS, {"listeners": [lds_listener(churn_port, name="churn", tag=f"t{i}", stat_prefix="churn")]}


def test_1000_mixed_updates_under_load(xds_server, httpbin, skiff_factory, tmp_path):  # noqa: F811
    port, churn_port = free_port(), free_port()
    snap = json.loads(lds_snapshot(httpbin, [lds_listener(port),
                                             lds_listener(churn_port, name="churn", tag="t", stat_prefix="churn")]))
    snap["clusters"].append(spare_cluster(httpbin, 0))
    load(xds_server, tmp_path / "v0.json", json.dumps(snap))
    skiff = skiff_factory(lds_config(xds_server.port, False), concurrency=2, args=["--drain-time-s", "5"])
    assert request(port, "/get")[0] == 200 and request(churn_port, "/get")[0] == 200

    stop = threading.Event()
    lock = threading.Lock()
    results = {"ok": 0, "failed": []}

    def client(target, keep_alive):
        conn = http.client.HTTPConnection("127.0.0.1", target, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/status/200", headers={} if keep_alive else {"connection": "close"})
                resp = conn.getresponse()
                resp.read()
                with lock:
                    if resp.status == 200:
                        results["ok"] += 1
                    else:
                        results["failed"].append((target, "keep-alive" if keep_alive else "close", resp.status))
            except Exception as e:  # noqa: BLE001 - any failure counts
                with lock:
                    results["failed"].append((target, "keep-alive" if keep_alive else "close", repr(e)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", target, timeout=10)
        conn.close()

    # The LDS-replaced listener gets a keep-alive client and one opening a connection per request: a draining
    # listener answers with "connection: close" and keeps idle connections for the HCM's drain_timeout, so
    # neither sees a reset.
    threads = [threading.Thread(target=client, args=a)
               for a in ((port, True), (port, True), (churn_port, True), (churn_port, False))]
    for t in threads:
        t.start()
    pushed = {}
    started = time.monotonic()
    try:
        for i in range(1, UPDATES + 1):
            type_url, body = update(httpbin, churn_port, i)
            reply = load(xds_server, tmp_path / f"u{i % 8}.json", json.dumps(body), "push")
            pushed[reply["version"]] = type_url
            time.sleep(0.02)  # pacing the pushes, not synchronisation
        elapsed = time.monotonic() - started
        assert wait_until(lambda: get_tag(port) == (200, f"churn{UPDATES}"))
        assert wait_until(lambda: request(churn_port, "/get")[1].get("x-listener-tag") == f"t{UPDATES - 1}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    rate = UPDATES / elapsed
    print(f"ports: route churn {port}, LDS churn {churn_port}")
    print(f"churn: {UPDATES} updates in {elapsed:.1f}s ({rate:.1f}/s), {results['ok']} requests OK, "
          f"{len(results['failed'])} failed")
    assert rate >= 10, f"{UPDATES} updates in {elapsed:.1f}s"
    assert results["failed"] == [], results["failed"][:10]
    assert results["ok"] > 1000

    # Every pushed response was ACKed (no error_detail) with its version and nonce.
    def unacked():
        responses = [r for r in xds_server.command("responses")["responses"] if r["version"] in pushed]
        acks = {(r["type_url"], r["response_nonce"]): r for r in xds_server.command("requests")["requests"]
                if r["response_nonce"]}
        missing = []
        for resp in responses:
            ack = acks.get((resp["type_url"], resp["nonce"]))
            if ack is None or ack["error_detail"] is not None or ack["version_info"] != resp["version"]:
                missing.append((resp, ack))
        return missing, {resp["version"] for resp in responses}

    assert wait_until(lambda: not unacked()[0])
    missing, answered = unacked()
    assert answered == set(pushed), f"{len(set(pushed) - answered)} pushed versions never sent"
    stats = skiff.stats()
    assert stats["listener_manager.listener_modified"] >= UPDATES // 4
    assert stats["listener_manager.lds.update_rejected"] == 0
    assert stats["cluster_manager.cds.update_rejected"] == 0
