"""SIGTERM drains: the in-flight request finishes, new connections are refused, skiff exits 0."""

import signal
import socket
import threading
import time

from helpers import bootstrap, http_listener, request, static_cluster, wait_until


def test_sigterm_drains_in_flight_request(httpbin, skiff_factory):
    config = bootstrap([http_listener("drain", [{"match": {"prefix": "/"}, "route": {"cluster": "httpbin"}}])],
                       [static_cluster("httpbin", httpbin)])
    skiff = skiff_factory(config, args=["--drain-time-s", "10"])
    port = skiff.listener_port()

    result = {}

    def slow_request():
        try:
            result["response"] = request(port, "/delay/2", timeout=15)
        except Exception as e:  # reported by the assertion below
            result["error"] = e
        result["done_at"] = time.monotonic()

    client = threading.Thread(target=slow_request)
    client.start()
    assert wait_until(lambda: skiff.stats().get("cluster.httpbin.upstream_rq_active") == 1, timeout=5), \
        "the slow request never reached the upstream"

    skiff.proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True

    assert wait_until(refused, timeout=1.5, interval=0.02), "new connections still accepted after SIGTERM"
    assert client.is_alive(), f"the slow request ended before the listener was checked: {result}"

    client.join(timeout=15)
    assert "error" not in result, result.get("error")
    status, _, body = result["response"]
    assert status == 200, body

    code = skiff.wait_exit(10)
    assert code == 0, skiff.logs
    # Exit follows the end of the last request, not the 10 s drain time.
    assert time.monotonic() - result["done_at"] < 5
