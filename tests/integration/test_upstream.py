"""Upstream connection handling: idle keep-alive connections the upstream closes are noticed and replaced."""

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster, wait_until


def test_upstream_closing_idle_connection(skiff_factory):
    backend = CountingBackend()
    # The backend drops keep-alive connections idle for 0.3 s (as gunicorn, nginx, ... do after a while).
    backend.server.RequestHandlerClass.timeout = 0.3
    try:
        config = bootstrap([http_listener("idle", [{"match": {"prefix": "/"}, "route": {"cluster": "b"}}])],
                           [static_cluster("b", backend.port)])
        skiff = skiff_factory(config, concurrency=1)
        port = skiff.listener_port()
        assert request(port, "/first")[0] == 200
        assert skiff.stats()["cluster.b.upstream_cx_total"] == 1

        # The pool notices the close without waiting for the next request.
        assert wait_until(lambda: skiff.stats()["cluster.b.upstream_cx_active"] == 0, timeout=5), \
            "the upstream's close of an idle connection went unnoticed"
        stats = skiff.stats()
        assert stats["cluster.b.upstream_cx_destroy_remote"] == 1

        # The next request gets a fresh connection and succeeds.
        assert request(port, "/second")[0] == 200
        stats = skiff.stats()
        assert stats["cluster.b.upstream_cx_total"] == 2
        assert stats["cluster.b.upstream_rq_total"] == 2
        assert backend.hits == {"/first": 1, "/second": 1}
    finally:
        backend.close()
