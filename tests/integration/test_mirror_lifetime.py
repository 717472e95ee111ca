"""Mirrored requests (request_mirror_policies) that get no answer: the copy ends at the route's timeout, as in
Envoy (counted as the mirror cluster's upstream_rq_timeout, its connection closed), and copies still in
flight when skiff stops are released with the worker instead of leaking (checked by LeakSanitizer in the
ASan run; skiff_factory fails a test on any sanitizer report)."""

import signal

import pytest

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster, wait_until
from holding_backend import HoldingBackend


@pytest.fixture
def backends():
    primary, mirror = CountingBackend(), HoldingBackend()
    yield primary, mirror
    primary.close()
    mirror.close()


def mirrored_config(primary, mirror, timeout):
    route = {"match": {"prefix": "/"}, "route": {"cluster": "primary", "timeout": timeout,
                                                 "request_mirror_policies": [{"cluster": "mirror"}]}}
    return bootstrap([http_listener("mirrored", [route])],
                     [static_cluster("primary", primary.port), static_cluster("mirror", mirror.port)])


def test_unanswered_copy_ends_at_the_route_timeout(skiff_factory, backends):
    primary, mirror = backends
    skiff = skiff_factory(mirrored_config(primary, mirror, "3s"))
    assert request(skiff.listener_port(), "/copied")[0] == 200
    assert wait_until(lambda: mirror.received == ["/copied"], timeout=5)
    stats = lambda: skiff.stats()  # noqa: E731
    assert stats()["cluster.mirror.upstream_rq_timeout"] == 0
    assert wait_until(lambda: stats()["cluster.mirror.upstream_rq_timeout"] == 1, timeout=5)
    assert wait_until(lambda: stats()["cluster.mirror.upstream_cx_active"] == 0, timeout=5)
    assert stats()["cluster.primary.upstream_rq_timeout"] == 0


@pytest.mark.parametrize("timeout", ["0s", "30s"])
def test_copies_in_flight_at_shutdown_are_released(skiff_factory, backends, timeout):
    primary, mirror = backends
    skiff = skiff_factory(mirrored_config(primary, mirror, timeout), args=["--drain-time-s", "1"])
    for i in range(3):
        assert request(skiff.listener_port(), f"/r{i}")[0] == 200
    assert wait_until(lambda: sorted(mirror.received) == ["/r0", "/r1", "/r2"], timeout=5)
    skiff.proc.send_signal(signal.SIGTERM)
    assert skiff.wait_exit(15) == 0, skiff.logs
