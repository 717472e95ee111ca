"""Listener warming on remote Wasm code (Envoy's init target): a listener whose filter chain has a plugin with
vm_config.code.remote is built but not bound until the fetch is done (with its retries), and the server is not
LIVE (/ready 503) meanwhile, while the other listeners serve. When the fetch fails for good the listener goes
active anyway: fail-open (fail_open or failure_policy FAIL_OPEN) without the plugin, fail-closed answering 503
(wasm_fail_stream); /ready turns 200 either way."""

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler

from helpers import CountingBackend, HttpBackend, bootstrap, request, static_cluster, wait_until
from test_tcp_proxy import EchoServer, exchange
from test_wasm import module
from test_wasm_network import expected, wasm_tcp_listener
from test_wasm_remote import demo_code, filtered, listener, remote_filter


class GatedCodeServer(HttpBackend):
    """Serves `code` once `release` is set (until then each fetch waits)."""

    def __init__(self, code):
        self.code = code
        self.release = threading.Event()
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.fetches += 1
                server.release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.code)))
                self.end_headers()
                self.wfile.write(server.code)

            def log_message(self, *args):
                pass

        self._serve(Handler)


class Blackhole:
    """Accepts connections and never answers (each fetch runs into http_uri.timeout)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def listener_names(skiff):
    status, body = skiff.admin_get("/listeners?format=json")
    assert status == 200, body
    return {entry["name"] for entry in json.loads(body)["listener_statuses"]}


def ready(skiff):
    return skiff.admin_get("/ready")[0] == 200


def test_a_slow_fetch_warms_its_listener_and_holds_readiness_while_others_serve(skiff_factory):
    code = demo_code()
    server, backend = GatedCodeServer(code), CountingBackend()
    try:
        sha = hashlib.sha256(code).hexdigest()
        config = bootstrap([listener("wasm", [remote_filter("wasm", sha, False)]), listener("plain", [])],
                           [static_cluster("backend", backend.port), static_cluster("code", server.port)])
        skiff = skiff_factory(config, concurrency=2, wait_ready=False)
        assert wait_until(lambda: "plain" in listener_names(skiff)), skiff.logs
        assert wait_until(lambda: server.fetches >= 1), skiff.logs
        # The other listener serves while the plugin's listener warms; the server is not LIVE yet.
        status, _, _ = request(skiff.listener_port("plain"), "/plain")
        assert status == 200
        assert "wasm" not in listener_names(skiff)
        assert skiff.admin_get("/ready")[0] == 503
        assert skiff.stats()["listener_manager.total_listeners_warming"] == 1
        assert "listener 'wasm' warming: waiting for wasm plugin 'wasm' code.remote" in skiff.logs
        server.release.set()
        assert wait_until(lambda: ready(skiff)), skiff.logs
        assert "wasm" in listener_names(skiff)
        # Active only once the code is in: its very first request is filtered.
        assert filtered(skiff.listener_port("wasm"), "/first")
        assert backend.headers["/first"]["user-agent"] in ("hello", "world")
        assert skiff.stats()["listener_manager.total_listeners_warming"] == 0
    finally:
        server.release.set()
        server.close()
        backend.close()


def test_a_fetch_that_times_out_for_good_activates_the_listener_with_its_policy(skiff_factory):
    code = demo_code()
    sha = hashlib.sha256(code).hexdigest()
    hole, backend = Blackhole(), CountingBackend()
    try:
        closed = remote_filter("closed", sha, False)
        policy = remote_filter("policy", sha, False)  # fail_open false, but failure_policy FAIL_OPEN wins
        policy["typed_config"]["config"]["failure_policy"] = "FAIL_OPEN"
        for f in (closed, policy):
            remote = f["typed_config"]["config"]["vm_config"]["code"]["remote"]
            remote["http_uri"]["timeout"] = "0.5s"  # two attempts: ~1.1 s of warming
        config = bootstrap([listener("closed", [closed]), listener("policy", [policy]),
                            listener("plain", [])],
                           [static_cluster("backend", backend.port), static_cluster("code", hole.port)])
        skiff = skiff_factory(config, concurrency=1, wait_ready=False)
        assert wait_until(lambda: "plain" in listener_names(skiff)), skiff.logs
        assert request(skiff.listener_port("plain"), "/plain")[0] == 200
        # Not forever: after the retry the fetch has failed and both listeners are active.
        assert wait_until(lambda: ready(skiff), timeout=15), skiff.logs
        assert {"closed", "policy", "plain"} <= listener_names(skiff)
        assert "after 2 attempts" in skiff.logs
        status, headers, _ = request(skiff.listener_port("policy"), "/policy")
        assert status == 200 and "x-proxy-wasm" not in headers  # FAIL_OPEN: without the plugin
        status, _, body = request(skiff.listener_port("closed"), "/closed")
        assert status == 503, body
        assert "/closed" not in backend.hits
        assert skiff.stats()["listener_manager.total_listeners_warming"] == 0
    finally:
        hole.close()
        backend.close()


def test_a_sha256_mismatch_ends_warming_at_once(skiff_factory):
    code = demo_code()
    server, backend = GatedCodeServer(code), CountingBackend()
    server.release.set()
    try:
        wrong = hashlib.sha256(b"not the module").hexdigest()
        config = bootstrap([listener("open", [remote_filter("open", wrong, True)]),
                            listener("closed", [remote_filter("closed", wrong, False)])],
                           [static_cluster("backend", backend.port), static_cluster("code", server.port)])
        skiff = skiff_factory(config, concurrency=1)  # waits for /ready: a mismatch is not retried
        assert server.fetches == 1
        assert {"open", "closed"} <= listener_names(skiff)
        status, headers, _ = request(skiff.listener_port("open"), "/open")
        assert status == 200 and "x-proxy-wasm" not in headers
        assert request(skiff.listener_port("closed"), "/closed")[0] == 503
    finally:
        server.close()
        backend.close()


def test_a_fail_open_plugin_warms_too_until_its_code_is_in(skiff_factory):
    """Envoy warms the listener whatever the policy: its first requests are filtered, not bypassed."""
    code = demo_code()
    server, backend = GatedCodeServer(code), CountingBackend()
    try:
        sha = hashlib.sha256(code).hexdigest()
        config = bootstrap([listener("wasm", [remote_filter("wasm", sha, True)])],
                           [static_cluster("backend", backend.port), static_cluster("code", server.port)])
        skiff = skiff_factory(config, concurrency=1, wait_ready=False)
        assert wait_until(lambda: server.fetches >= 1), skiff.logs
        assert skiff.admin_get("/ready")[0] == 503
        server.release.set()
        assert wait_until(lambda: ready(skiff)), skiff.logs
        assert filtered(skiff.listener_port("wasm"), "/x")
    finally:
        server.release.set()
        server.close()
        backend.close()


def test_a_network_plugin_with_remote_code_warms_its_tcp_listener(skiff_factory):
    code = module("tcp_filter").read_bytes()
    server, echo = GatedCodeServer(code), EchoServer()
    try:
        tcp = wasm_tcp_listener("wasm_tcp", "echo")
        config = tcp["filter_chains"][0]["filters"][0]["typed_config"]["config"]
        config["vm_config"]["code"] = {"remote": {
            "http_uri": {"uri": "http://code.local/tcp.wasm", "cluster": "code", "timeout": "5s"},
            "sha256": hashlib.sha256(code).hexdigest()}}
        clusters = [static_cluster("echo", echo.port), static_cluster("code", server.port)]
        skiff = skiff_factory(bootstrap([tcp], clusters), concurrency=1, wait_ready=False)
        assert wait_until(lambda: server.fetches >= 1), skiff.logs
        assert "wasm_tcp" not in listener_names(skiff)
        assert skiff.admin_get("/ready")[0] == 503
        server.release.set()
        assert wait_until(lambda: ready(skiff)), skiff.logs
        assert exchange(skiff.listener_port("wasm_tcp"), b"hello!") == expected(b"hello!")  # filtered at once
    finally:
        server.release.set()
        server.close()
        echo.close()
