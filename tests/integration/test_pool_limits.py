"""Connection limits across workers (circuit_breakers max_connections): each worker has its own pools, so a
worker whose pool has no connection to a host opens one even when the other worker holds every connection
the limit allows, as Envoy does. Requests queued there are served, not left waiting for a slot another
worker will never hand over. Istio's circuit-breaking task has this shape: maxConnections 1 under
concurrent clients."""

import pytest

from helpers import bootstrap, http_listener, request, static_cluster, wait_until
from holding_backend import send_requests
from http2_helpers import h2_cluster_options


@pytest.mark.parametrize("requests_per_connection", [0, 1])
def test_waiters_on_every_worker_are_served(skiff_factory, held, requests_per_connection):
    route = {"cluster": "held", "timeout": "0s"}
    extra = {"circuit_breakers": {"thresholds": [
        {"max_connections": 1, "max_pending_requests": 100, "max_requests": 100}]}}
    if requests_per_connection:
        extra["max_requests_per_connection"] = requests_per_connection  # each exchange closes its connection
    config = bootstrap([http_listener("front", [{"match": {"prefix": "/"}, "route": route}])],
                       [static_cluster("held", held.port, extra=extra)])
    skiff = skiff_factory(config, concurrency=2)
    count = 8  # on their own connections: both workers get some unless all 8 hash to one (1 in 128)
    threads, results = send_requests(skiff.listener_port(), count, timeout=20)

    def settled():
        pending = skiff.stats().get("cluster.held.upstream_rq_pending_active", 0)
        return len(held.received) >= 1 and len(held.received) + pending == count

    assert wait_until(settled, timeout=10), (held.received, skiff.stats())
    # At most one connection per worker: the limit, plus the first connection of a worker that had none.
    assert 1 <= len(held.received) <= 2, held.received
    held.release()
    for t in threads:
        t.join(timeout=25)
    assert results == [200] * count, results
    stats = skiff.stats()
    assert stats["cluster.held.upstream_rq_pending_active"] == 0
    assert stats["cluster.held.upstream_cx_overflow"] >= 1
    if not requests_per_connection:
        assert stats["cluster.held.upstream_cx_total"] <= 2  # kept alive and handed from waiter to waiter
    assert sorted(held.received) == sorted(f"/r{i}" for i in range(count))


def test_http2_upstream_opens_a_connection_per_worker_at_the_limit(skiff_factory, nghttpd):
    extra = dict(h2_cluster_options("explicit"))
    extra["circuit_breakers"] = {"thresholds": [{"max_connections": 1}]}
    config = bootstrap([http_listener("front", [{"match": {"prefix": "/"}, "route": {"cluster": "h2"}}])],
                       [static_cluster("h2", nghttpd.port, extra=extra)])
    skiff = skiff_factory(config, concurrency=2)
    # One downstream connection each: both workers serve some (unless all 12 hash to one, 1 in 2048).
    statuses = [request(skiff.listener_port(), "/index.html")[0] for _ in range(12)]
    assert statuses == [200] * 12, statuses
    stats = skiff.stats()
    assert 1 <= stats["cluster.h2.upstream_cx_http2_total"] <= 2
    assert stats["cluster.h2.upstream_rq_pending_overflow"] == 0
