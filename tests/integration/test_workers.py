"""--concurrency 2: both workers serve keep-alive traffic, and upstream connections are reused."""

import http.client
import re
from collections import Counter

from helpers import bootstrap, http_listener, static_cluster, wait_until

CONNECTIONS = 16
REQUESTS_PER_CONNECTION = 13  # 208 requests in all


def test_two_workers_share_keepalive_traffic(httpbin, skiff_factory):
    config = bootstrap([http_listener("workers", [{"match": {"prefix": "/"}, "route": {"cluster": "httpbin"}}])],
                       [static_cluster("httpbin", httpbin)])
    # pool:debug logs one line per upstream response, tagged with the worker's thread id.
    skiff = skiff_factory(config, concurrency=2, args=["--component-log-level", "pool:debug"])
    port = skiff.listener_port()
    workers = skiff.worker_tids()
    assert sorted(workers) == ["wrk:worker_0", "wrk:worker_1"], workers

    # All connections are open at once, so SO_REUSEPORT spreads them over both workers' sockets.
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(CONNECTIONS)]
    for c in conns:
        c.connect()
    for i in range(REQUESTS_PER_CONNECTION):
        for n, c in enumerate(conns):
            c.request("GET", f"/get?c={n}&i={i}")
            resp = c.getresponse()
            body = resp.read()
            assert resp.status == 200, body
            assert resp.getheader("Connection", "").lower() != "close"
    for c in conns:
        c.close()

    total = CONNECTIONS * REQUESTS_PER_CONNECTION
    assert wait_until(lambda: skiff.stats()["cluster.httpbin.upstream_rq_total"] >= total, timeout=5)
    stats = skiff.stats()
    # Envoy names listener stats after the configured address, port 0 included.
    assert stats["listener.127.0.0.1_0.downstream_cx_total"] == CONNECTIONS
    assert stats["http.workers.downstream_rq_total"] == total
    assert stats["cluster.httpbin.upstream_rq_total"] == total
    # Connection reuse: a handful of upstream connections carried all requests.
    assert stats["cluster.httpbin.upstream_cx_total"] <= total // 4, stats["cluster.httpbin.upstream_cx_total"]

    def per_worker():
        tids = Counter(int(m.group(1)) for m in
                       re.finditer(r"^\[[^\]]+\]\[(\d+)\]\[debug\]\[pool\] response complete", skiff.logs, re.M))
        return tids if sum(tids.values()) >= total else None

    served = wait_until(per_worker, timeout=5) or Counter()
    assert sum(served.values()) == total, served
    for name, tid in workers.items():
        assert served[tid] > 0, f"{name} (tid {tid}) served nothing: {served}"
    assert set(served) <= set(workers.values()), "requests were proxied outside the worker threads"
