"""Wasm callouts in the real binary: proxy_http_call through a cluster (auth-style filter: allow, deny,
failure, timeout, unknown cluster), timers + shared queues + custom metrics, and the execution-time limit
stopping a module stuck in a loop (fail closed and fail open)."""

import threading
import time
from http.server import BaseHTTPRequestHandler

from helpers import CountingBackend, HttpBackend, bootstrap, http_listener, request, static_cluster, wait_until
from test_wasm import WASM_TYPE, module


class AuthBackend(HttpBackend):
    """GET /auth/<user>: 200 "ok-<user>" for alice, 200 "boom" for boom, 403 for anyone else; /auth/slow
    answers after 2 s."""

    def __init__(self):
        self.paths = []
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with backend.lock:
                    backend.paths.append((self.path, self.headers.get("x-from"), self.headers.get("host")))
                if self.path == "/auth/slow":
                    time.sleep(2)
                user = self.path.rsplit("/", 1)[-1]
                code, body = (200, f"ok-{user}".encode()) if user == "alice" else (403, b"no")
                if user == "boom":
                    code, body = 200, b"boom"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._serve(Handler)


def wasm_filter(name, module_name, configuration, fail_open=False, vm_id=None):
    return {"name": name, "typed_config": {"@type": WASM_TYPE, "config": {
        "name": name, "fail_open": fail_open,
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration},
        "vm_config": {"vm_id": vm_id or name, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(module(module_name))}}}}}}


def config_with(filter_entry, backend_port, extra_clusters=()):
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    listener = http_listener("wasm_callouts", routes,
                             http_filters=[filter_entry, {"name": "envoy.filters.http.router"}])
    # 5 s connect timeouts: Python test servers have a listen backlog of 5, and a dropped SYN is only
    # retried after 1 s.
    return bootstrap([listener], [static_cluster("backend", backend_port, connect_timeout="5s"), *extra_clusters])


def test_http_call_allows_denies_and_fails(skiff_factory):
    backend, auth = CountingBackend(), AuthBackend()
    try:
        config = config_with(wasm_filter("authz", "http_call_filter", "auth"), backend.port,
                             [static_cluster("auth", auth.port), static_cluster("dead", 1)])
        skiff = skiff_factory(config, concurrency=1)
        port = skiff.listener_port()

        status, _, _ = request(port, "/allowed", headers={"x-user": "alice"})
        assert status == 200
        seen = backend.headers["/allowed"]
        assert seen["x-auth-body"] == "ok-alice"  # the call's body, handed over by the module
        assert seen["x-auth-trailers"] == "0"
        assert ("/auth/alice", "wasm", "auth.local") in auth.paths  # headers and :authority as Host

        status, _, body = request(port, "/denied", headers={"x-user": "mallory"})
        assert status == 403
        assert body == b"denied"
        assert "/denied" not in backend.hits

        # Connection refused: on_http_call_response with num_headers 0, the module answers 503.
        status, _, body = request(port, "/dead", headers={"x-user": "alice", "x-cluster": "dead"})
        assert status == 503
        assert body == b"auth call failed"

        # Unknown cluster: proxy_http_call returns BadArgument (2) at once.
        status, _, body = request(port, "/nocluster", headers={"x-cluster": "nope"})
        assert status == 500
        assert body == b"http_call=2"

        # Timeout: the answer comes after 2 s, the call gives up after 200 ms.
        start = time.monotonic()
        status, _, _ = request(port, "/slow", headers={"x-user": "slow", "x-timeout-ms": "200"})
        assert status == 503
        assert time.monotonic() - start < 1.8
        assert "http call response: headers=0" in skiff.logs

        # The worker is still fine and its VM healthy.
        status, _, _ = request(port, "/again", headers={"x-user": "alice"})
        assert status == 200
        assert skiff.stats().get("http.wasm_callouts.wasm.authz.vm_failed", 0) == 0
    finally:
        backend.close()
        auth.close()


def test_http_calls_of_many_concurrent_requests_resume_the_right_streams(skiff_factory):
    backend, auth = CountingBackend(), AuthBackend()
    try:
        config = config_with(wasm_filter("authz", "http_call_filter", "auth"), backend.port,
                             [static_cluster("auth", auth.port, connect_timeout="5s")])
        skiff = skiff_factory(config, concurrency=2)
        port = skiff.listener_port()
        results = {}

        def one(i):
            user = "alice" if i % 2 == 0 else f"u{i}"
            results[i] = request(port, f"/c/{i}", headers={"x-user": user})[0]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {i: 200 if i % 2 == 0 else 403 for i in range(20)}, (results, skiff.logs[-3000:])
        assert all(backend.headers[f"/c/{i}"]["x-auth-body"] == "ok-alice" for i in range(0, 20, 2))
    finally:
        backend.close()
        auth.close()


def test_trap_in_the_call_response_fails_the_waiting_stream(skiff_factory):
    backend, auth = CountingBackend(), AuthBackend()
    try:
        for fail_open, expected in ((False, 503), (True, 200)):
            filter_entry = wasm_filter("authz", "http_call_filter", "auth", fail_open=fail_open)
            config = config_with(filter_entry, backend.port, [static_cluster("auth", auth.port)])
            skiff = skiff_factory(config, concurrency=1, name=f"open{fail_open}")
            port = skiff.listener_port()
            status, _, _ = request(port, f"/boom{fail_open}", headers={"x-user": "boom"})
            assert status == expected  # the held stream gets the failure policy, it does not hang
            assert (f"/boom{fail_open}" in backend.hits) == fail_open
            assert "proxy_on_http_call_response trapped" in skiff.logs
            status, _, _ = request(port, "/next", headers={"x-user": "alice"})  # a fresh VM serves
            assert status == 200
            assert skiff.stats()["http.wasm_callouts.wasm.authz.vm_failed"] == 1
    finally:
        backend.close()
        auth.close()


def test_ticks_queues_and_custom_metrics(skiff_factory):
    backend = CountingBackend()
    try:
        skiff = skiff_factory(config_with(wasm_filter("queued", "queue_filter", "20"), backend.port),
                              concurrency=1)
        port = skiff.listener_port()
        for path in ("/one", "/two", "/three"):
            assert request(port, path)[0] == 200

        def drained():
            stats = skiff.stats()
            return stats.get("wasm_test.queue_items") == 3 and stats.get("wasm_test.ticks", 0) >= 3

        assert wait_until(drained, timeout=10), skiff.stats()
        status, _, body = request(port, "/last")
        assert status == 200
        assert body.startswith(b"last=/three items=3 ticks=")
        stats = skiff.stats()
        assert stats["wasm_test.requests"] == 4
        assert stats["wasm_test.last_path_length"] == 5
        _, text = skiff.admin_get("/stats")
        assert "wasm_test.path_length: " in text  # the histogram
        _, prom = skiff.admin_get("/stats/prometheus")
        # Envoy's custom namespace: no envoy_ prefix and no wasmcustom in the Prometheus names.
        assert "\nwasm_test_requests 4" in prom or prom.startswith("wasm_test_requests 4"), prom
    finally:
        backend.close()


def loop_config(backend_port, fail_open):
    return config_with(wasm_filter("looper", "loop_filter", "", fail_open=fail_open), backend_port)


def test_stuck_module_is_stopped_fail_closed(skiff_factory, monkeypatch):
    monkeypatch.setenv("SKIFF_WASM_MAX_EXECUTION_MS", "200")
    backend = CountingBackend()
    try:
        skiff = skiff_factory(loop_config(backend.port, False), concurrency=1)
        port = skiff.listener_port()
        start = time.monotonic()
        status, _, _ = request(port, "/loop", headers={"x-loop": "1"})
        assert status == 503
        assert time.monotonic() - start < 3
        assert "/loop" not in backend.hits
        assert "exceeded the execution time limit of 200 ms" in skiff.logs
        # The worker is not hung and the VM is replaced.
        status, headers, _ = request(port, "/after")
        assert status == 200
        assert headers["x-loop-filter"] == "ok"
        stats = skiff.stats()
        assert stats["http.wasm_callouts.wasm.looper.execution_timeout"] == 1
        assert stats["http.wasm_callouts.wasm.looper.vm_failed"] == 1
    finally:
        backend.close()


def test_stuck_module_is_stopped_fail_open(skiff_factory, monkeypatch):
    monkeypatch.setenv("SKIFF_WASM_MAX_EXECUTION_MS", "200")
    backend = CountingBackend()
    try:
        skiff = skiff_factory(loop_config(backend.port, True), concurrency=1)
        status, _, _ = request(skiff.listener_port(), "/loop", headers={"x-loop": "1"})
        assert status == 200
        assert backend.hits["/loop"] == 1
    finally:
        backend.close()
