"""Shutdown while requests wait in the upstream pool for the cluster's connection limit (circuit breaker
max_connections): the in-flight request and the waiting ones end one way or the other (answered when the
upstream answers within the drain time, reset when the drain time runs out), and skiff exits 0 with
nothing for the sanitizers to report (waiters own timers bound to the worker's event loop)."""

import signal
import time

import pytest

from helpers import bootstrap, http_listener, static_cluster, wait_until
from holding_backend import send_requests


def config_for(backend):
    route = {"cluster": "held", "timeout": "0s"}  # no route timeout: only the drain time ends them
    cluster = static_cluster("held", backend.port, extra={"circuit_breakers": {"thresholds": [
        {"max_connections": 1, "max_pending_requests": 100, "max_requests": 100}]}})
    return bootstrap([http_listener("front", [{"match": {"prefix": "/"}, "route": route}])], [cluster])


def start_and_queue(skiff, held, count, timeout):
    """Sends `count` requests and waits until each is at the backend or waits in the pool: one at the backend
    per worker that got requests (a worker's pool may open its first connection over the limit)."""
    threads, results = send_requests(skiff.listener_port(), count, timeout)

    def queued():
        pending = skiff.stats().get("cluster.held.upstream_rq_pending_active", 0)
        return len(held.received) >= 1 and len(held.received) + pending == count

    assert wait_until(queued, timeout=10), \
        (held.received, {k: v for k, v in skiff.stats().items() if k.startswith("cluster.held.upstream_")})
    return threads, results


def test_sigterm_answers_waiting_requests_once_the_upstream_answers(skiff_factory, held):
    # One worker: the freed connection slot is handed to waiters of the same worker's pool only.
    skiff = skiff_factory(config_for(held), args=["--drain-time-s", "20"], concurrency=1)
    threads, results = start_and_queue(skiff, held, 3, timeout=30)

    skiff.proc.send_signal(signal.SIGTERM)
    # Draining: the listener closes, the requests keep waiting.
    assert wait_until(lambda: skiff.admin_get("/server_info")[1].find('"DRAINING"') >= 0, timeout=5)
    assert all(t.is_alive() for t in threads), results

    held.release()
    for t in threads:
        t.join(timeout=15)
    # One connection at a time: the waiters get it in turn and are answered.
    assert results == [200, 200, 200], results
    assert sorted(held.received) == ["/r0", "/r1", "/r2"]
    assert skiff.wait_exit(10) == 0, skiff.logs


@pytest.mark.parametrize("concurrency", [1, 2])
def test_drain_time_over_resets_in_flight_and_waiting_requests(skiff_factory, held, concurrency):
    skiff = skiff_factory(config_for(held), args=["--drain-time-s", "1"], concurrency=concurrency)
    threads, results = start_and_queue(skiff, held, 3, timeout=30)

    signalled = time.monotonic()
    skiff.proc.send_signal(signal.SIGTERM)
    code = skiff.wait_exit(15)
    assert code == 0, skiff.logs
    # The upstream never answered: the drain time ran out and every downstream connection was closed, the
    # one whose request was at the upstream and the ones whose requests still waited for a connection.
    assert time.monotonic() - signalled < 10
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads), results
    assert all(isinstance(r, Exception) for r in results), results
    assert 1 <= len(held.received) <= concurrency, held.received
