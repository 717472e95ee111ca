"""Remote Wasm code (vm_config.code.remote): fetched through a cluster from a local HTTP server, verified against
sha256, cached by hash; a wrong hash or an unreachable server follows the plugin's failure policy (fail open:
the requests pass unfiltered; fail closed: 503 wasm_fail_stream), without holding up readiness for good or the
other listeners at all (test_wasm_remote_warming.py: the listener warms while the fetch runs)."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler

from helpers import (CountingBackend, HttpBackend, bootstrap, http_listener, request, static_cluster,
                     wait_until)
from test_wasm import WASM_TYPE, module


class CodeServer(HttpBackend):
    """Serves a module at /<anything>.wasm and counts the fetches."""

    def __init__(self, code):
        self.code = code
        self.fetches = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with server.lock:
                    server.fetches += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.code)))
                self.end_headers()
                self.wfile.write(server.code)

            def log_message(self, *args):
                pass

        self._serve(Handler)


def remote_filter(name, sha256, fail_open, code_port_cluster="code"):
    return {"name": name, "typed_config": {"@type": WASM_TYPE, "config": {
        "name": name, "fail_open": fail_open,
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "User-Agent"},
        "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"remote": {
            "http_uri": {"uri": "http://code.local/plugins/demo.wasm", "cluster": code_port_cluster,
                         "timeout": "2s"},
            "sha256": sha256,
            "retry_policy": {"num_retries": 1, "retry_back_off": {"base_interval": "0.1s"}}}}}}}}


def listener(name, filters):
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    return http_listener(name, routes, http_filters=filters + [{"name": "envoy.filters.http.router"}])


def demo_code():
    return module("demo_filter").read_bytes()


def filtered(port, path="/"):
    status, headers, _ = request(port, path)
    return status == 200 and headers.get("x-proxy-wasm") == "my-wasm-filter"


def test_good_hash_loads_and_a_second_plugin_with_the_same_hash_does_not_refetch(skiff_factory):
    code = demo_code()
    server, backend = CodeServer(code), CountingBackend()
    try:
        sha = hashlib.sha256(code).hexdigest()
        config = bootstrap([listener("first", [remote_filter("first", sha, False)]),
                            listener("second", [remote_filter("second", sha.upper(), True)])],
                           [static_cluster("backend", backend.port), static_cluster("code", server.port)])
        skiff = skiff_factory(config, concurrency=1)
        assert wait_until(lambda: filtered(skiff.listener_port("first"), "/a")), skiff.logs
        assert wait_until(lambda: filtered(skiff.listener_port("second"), "/b")), skiff.logs
        assert backend.headers["/a"]["user-agent"] in ("hello", "world")
        assert server.fetches == 1  # same hash: one fetch, shared
        stats = skiff.stats()
        assert stats["wasm.remote_load_fetch_successes"] == 1, stats
        assert stats["wasm.remote_load_cache_misses"] == 1, stats
        assert "remote code loaded" in skiff.logs
    finally:
        server.close()
        backend.close()


def test_wrong_hash_is_not_loaded_and_fails_closed_or_open(skiff_factory):
    code = demo_code()
    server, backend = CodeServer(code), CountingBackend()
    try:
        wrong = hashlib.sha256(b"something else").hexdigest()
        config = bootstrap([listener("closed", [remote_filter("closed", wrong, False)]),
                            listener("open", [remote_filter("open", wrong, True)])],
                           [static_cluster("backend", backend.port), static_cluster("code", server.port)])
        skiff = skiff_factory(config, concurrency=1)
        assert wait_until(lambda: "sha256 mismatch" in skiff.logs), skiff.logs
        line = next(l for l in skiff.logs.splitlines() if "sha256 mismatch" in l and "closed" in l)
        assert wrong in line and hashlib.sha256(code).hexdigest() in line, line
        status, _, _ = request(skiff.listener_port("closed"), "/closed")
        assert status == 503
        assert "/closed" not in backend.hits
        status, headers, _ = request(skiff.listener_port("open"), "/open")
        assert status == 200 and "x-proxy-wasm" not in headers  # unfiltered
        assert skiff.stats()["wasm.remote_load_fetch_failures"] >= 1
    finally:
        server.close()
        backend.close()


def test_unreachable_code_server_does_not_hold_up_readiness_or_other_listeners(skiff_factory):
    code = demo_code()
    sha = hashlib.sha256(code).hexdigest()
    dead = CountingBackend()
    dead_port = dead.port
    dead.close()  # nothing listens there any more
    backend = CountingBackend()
    try:
        config = bootstrap([listener("open", [remote_filter("open", sha, True)]),
                            listener("closed", [remote_filter("closed", sha, False)]),
                            listener("plain", [])],
                           [static_cluster("backend", backend.port), static_cluster("code", dead_port)])
        # Waits for /ready: the listeners warm only until the fetch has failed for good (quick here: refused).
        skiff = skiff_factory(config, concurrency=1)
        status, _, _ = request(skiff.listener_port("plain"), "/plain")
        assert status == 200
        status, headers, _ = request(skiff.listener_port("open"), "/open")
        assert status == 200 and "x-proxy-wasm" not in headers
        # After the retry the fetch fails for good: the fail-closed plugin answers 503 from then on.
        assert wait_until(lambda: "after 2 attempts" in skiff.logs, timeout=15), skiff.logs
        status, _, _ = request(skiff.listener_port("closed"), "/closed")
        assert status == 503
        assert "/closed" not in backend.hits
        status, _, _ = request(skiff.listener_port("open"), "/open2")
        assert status == 200
    finally:
        backend.close()
