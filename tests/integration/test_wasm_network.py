"""The Wasm network filter (envoy.extensions.filters.network.wasm.v3.Wasm) in front of tcp_proxy, through a
TCP echo backend: tcp_filter.wasm rewrites the bytes both ways (and makes them longer), counts connections,
bytes and closes, holds bytes until a line is complete, closes on request; a trap closes the connection
(fail closed) or lets the rest of it through untouched (fail open). tcp_callout_filter.wasm pauses
proxy_on_new_connection while it asks an HTTP or gRPC service (the upstream is not connected until it
continues; a denial closes without any upstream connection), and proxy_continue_stream passes the held
bytes on at once."""

import os
import socket

import pytest

from helpers import CountingBackend, bootstrap, free_port, static_cluster, wait_until
from http2_helpers import GrpcEchoServer, build_bin, h2_cluster_options
from test_tcp_proxy import EchoServer, exchange, tcp_listener
from test_wasm import module

NETWORK_WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"


def wasm_tcp_listener(name, cluster, fail_open=False, vm_id="tcp", code="tcp_filter", configuration=None):
    listener = tcp_listener(name, cluster)
    config = {"name": "tcp-plugin", "fail_open": fail_open,
              "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": str(module(code))}}}}
    if configuration is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}
    wasm = {"name": "envoy.filters.network.wasm", "typed_config": {"@type": NETWORK_WASM_TYPE, "config": config}}
    listener["filter_chains"][0]["filters"].insert(0, wasm)
    return listener


def callout_listener(name, configuration, vm_id):
    return wasm_tcp_listener(name, "echo", vm_id=vm_id, code="tcp_callout_filter", configuration=configuration)


def read_exactly(sock, n, timeout=10.0):
    sock.settimeout(timeout)
    got = b""
    while len(got) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def expected(payload):
    """What the echo returns: downstream rewrite (upper-case, 'x' doubled), then upstream rewrite ('!' → '?')."""
    out = bytearray()
    for c in payload:
        if c == ord("x"):
            out += b"xx"
        elif ord("a") <= c <= ord("z"):
            out.append(c - 32)
        else:
            out.append(c)
    return bytes(out).replace(b"!", b"?")


def closed_by_peer(sock, timeout=10.0):
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_bytes_are_rewritten_both_ways_and_counted(skiff_factory):
    echo = EchoServer()
    try:
        skiff = skiff_factory(bootstrap([wasm_tcp_listener("wasm_tcp", "echo")], [static_cluster("echo", echo.port)]),
                              concurrency=1)
        port = skiff.listener_port()
        payload = b"hello, wasm!\n" + b"box " * 20000 + b"end!"
        assert exchange(port, payload) == expected(payload)
        # Big, binary and random (no letters grow): still byte-exact through the filter.
        blob = bytes(b for b in os.urandom(300000) if not (ord("a") <= b <= ord("z") or b == ord("!")))
        assert exchange(port, blob) == blob
        stats = skiff.stats()
        assert wait_until(lambda: skiff.stats().get("tcp_downstream_closes") == 2), skiff.stats()
        stats = skiff.stats()
        assert stats["tcp_connections"] == 2
        assert stats["tcp_downstream_bytes"] == len(payload) + len(blob)
        assert stats["tcp_upstream_bytes"] == len(expected(payload)) + len(blob)
        assert stats["tcp_upstream_closes"] == 2
    finally:
        echo.close()


def test_held_bytes_come_again_with_the_next_ones_and_close_closes(skiff_factory):
    echo = EchoServer()
    try:
        skiff = skiff_factory(bootstrap([wasm_tcp_listener("wasm_tcp", "echo")], [static_cluster("echo", echo.port)]),
                              concurrency=1)
        port = skiff.listener_port()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"hold this")
        s.settimeout(0.3)
        try:
            early = s.recv(100)
        except socket.timeout:
            early = b""
        assert early == b""  # held by the plugin: nothing reached the echo yet
        s.settimeout(10)
        s.sendall(b" line\n")
        got = b""
        while len(got) < len(b"HOLD THIS LINE\n"):
            got += s.recv(100)
        assert got == b"HOLD THIS LINE\n"
        s.close()

        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"please close")
        assert closed_by_peer(s)
        s.close()
    finally:
        echo.close()


def test_trap_closes_the_connection_when_fail_closed_and_passes_when_fail_open(skiff_factory):
    echo = EchoServer()
    try:
        config = bootstrap([wasm_tcp_listener("closed", "echo", fail_open=False, vm_id="tcp-closed"),
                            wasm_tcp_listener("open", "echo", fail_open=True, vm_id="tcp-open")],
                           [static_cluster("echo", echo.port)])
        skiff = skiff_factory(config, concurrency=1)
        s = socket.create_connection(("127.0.0.1", skiff.listener_port("closed")), timeout=10)
        s.sendall(b"its a trap")
        assert closed_by_peer(s)
        s.close()
        # Fail open: the trapping chunk and the rest pass untouched.
        assert exchange(skiff.listener_port("open"), b"its a trap! more") == b"its a trap! more"
        assert "proxy_on_downstream_data trapped" in skiff.logs
        # The failed VM is replaced for the next connection.
        assert exchange(skiff.listener_port("closed"), b"again!") == b"AGAIN?"
    finally:
        echo.close()


def test_paused_new_connection_waits_for_the_http_answer_and_continue_passes_held_bytes_at_once(skiff_factory):
    echo = EchoServer()
    auth = CountingBackend()
    try:
        config = bootstrap([callout_listener("allow", "http auth", "callout-allow"),
                            callout_listener("deny", "http auth_down", "callout-deny")],
                           [static_cluster("echo", echo.port), static_cluster("auth", auth.port),
                            static_cluster("auth_down", free_port())])
        skiff = skiff_factory(config, concurrency=1)
        # Denied (the auth cluster refuses): closed, and the upstream was never connected.
        s = socket.create_connection(("127.0.0.1", skiff.listener_port("deny")), timeout=10)
        s.sendall(b"let me in")
        assert closed_by_peer(s)
        s.close()
        assert wait_until(lambda: skiff.stats().get("callout_denied") == 1), skiff.stats()
        assert echo.peers == []
        assert skiff.stats().get("cluster.echo.upstream_cx_total", 0) == 0
        # Allowed: the bytes sent before the answer (and the FIN) go through once it comes.
        payload = b"early bytes " * 1000
        assert exchange(skiff.listener_port("allow"), payload) == payload
        assert auth.hits.get("/authorize") == 1
        # A pause on data is continued from the answer: the held bytes move without any more being sent.
        s = socket.create_connection(("127.0.0.1", skiff.listener_port("allow")), timeout=10)
        s.sendall(b"hello ")
        assert read_exactly(s, 6) == b"hello "
        s.sendall(b"please wait for me")
        assert read_exactly(s, 18) == b"please wait for me"
        assert auth.hits.get("/wait") == 1
        s.close()
        assert wait_until(lambda: skiff.stats().get("callout_allowed") == 3), skiff.stats()
        assert len(echo.peers) == 2
    finally:
        echo.close()
        auth.close()


GRPC_SERVER = build_bin("skiff-grpc-test-server")


@pytest.mark.skipif(GRPC_SERVER is None, reason="skiff-grpc-test-server is not built")
def test_grpc_callout_from_a_network_plugin_allows_or_closes(skiff_factory, tmp_path):
    echo = EchoServer()
    grpc = GrpcEchoServer(GRPC_SERVER, tmp_path)
    try:
        config = bootstrap([callout_listener("allow", "grpc grpc", "grpc-allow"),
                            callout_listener("deny", "grpc-deny grpc", "grpc-deny")],
                           [static_cluster("echo", echo.port),
                            static_cluster("grpc", grpc.port, extra=h2_cluster_options("explicit"))])
        skiff = skiff_factory(config, concurrency=1)
        s = socket.create_connection(("127.0.0.1", skiff.listener_port("deny")), timeout=10)
        s.sendall(b"let me in")
        assert closed_by_peer(s)
        s.close()
        assert wait_until(lambda: skiff.stats().get("callout_denied") == 1), skiff.stats()
        assert echo.peers == []
        assert exchange(skiff.listener_port("allow"), b"over grpc") == b"over grpc"
        stats = skiff.stats()
        assert stats["callout_allowed"] == 1
        assert stats["cluster.grpc.grpc.skiff.test.Echo.Unary.success"] == 1
    finally:
        echo.close()
        grpc.stop()
