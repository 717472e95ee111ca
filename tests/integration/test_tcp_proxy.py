"""tcp_proxy listeners and ORIGINAL_DST / BlackHole / upstream_bind_config clusters, over loopback."""

import os
import socket
import threading

from helpers import (CountingBackend, bootstrap, http_listener, read_access_log, request, static_cluster,
                     wait_until)

TCP_LOG_FORMAT = "%RESPONSE_FLAGS% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %PROTOCOL%\n"


def tcp_listener(name, cluster, access_log_path=None, extra=None):
    """A listener on 127.0.0.1:0 whose only filter is tcp_proxy (stat_prefix = name)."""
    proxy = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": name,
        "cluster": cluster,
    }
    if access_log_path:
        proxy["access_log"] = [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(access_log_path),
                "log_format": {"text_format_source": {"inline_string": TCP_LOG_FORMAT}},
            },
        }]
    proxy.update(extra or {})
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}]}],
    }


class EchoServer:
    """Echoes every connection; answers the client's FIN with its own once everything is echoed.
    Records each peer address."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.peers = []
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer)
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(data)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def exchange(port, payload, timeout=30.0):
    """Sends payload, half-closes, and reads until the proxy closes: returns what came back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    received = bytearray()

    def reader():
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            received.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)  # half-close: the answer must still arrive
    t.join(timeout)
    s.close()
    return bytes(received)


def closed_by_peer(sock, timeout=10.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_echo_megabytes_with_half_close(skiff_factory, tmp_path):
    echo = EchoServer()
    log = tmp_path / "tcp.log"
    try:
        config = bootstrap([tcp_listener("tcp_echo", "echo", access_log_path=log)],
                           [static_cluster("echo", echo.port)])
        skiff = skiff_factory(config)
        payload = os.urandom(3 * 1024 * 1024 + 7)
        assert exchange(skiff.listener_port(), payload) == payload
        lines = read_access_log(log, 1)
        assert lines[0] == f"- 127.0.0.1:{echo.port} echo {len(payload)} {len(payload)} -"
        stats = skiff.stats()
        assert stats["tcp.tcp_echo.downstream_cx_total"] == 1
        assert stats["tcp.tcp_echo.downstream_cx_rx_bytes_total"] == len(payload)
        assert stats["tcp.tcp_echo.downstream_cx_tx_bytes_total"] == len(payload)
        assert stats["cluster.echo.upstream_cx_tx_bytes_total"] == len(payload)
    finally:
        echo.close()


def test_upstream_refused_closes_downstream_with_uf(skiff_factory, tmp_path):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there any more
    log = tmp_path / "tcp.log"
    skiff = skiff_factory(bootstrap([tcp_listener("tcp_dead", "dead", access_log_path=log)],
                                    [static_cluster("dead", port)]))
    s = socket.create_connection(("127.0.0.1", skiff.listener_port()))
    assert closed_by_peer(s)
    s.close()
    assert read_access_log(log, 1)[0].startswith("UF ")
    assert wait_until(lambda: skiff.stats()["cluster.dead.upstream_cx_connect_fail"] == 1)


def test_idle_timeout_closes(skiff_factory):
    echo = EchoServer()
    try:
        skiff = skiff_factory(bootstrap([tcp_listener("tcp_idle", "echo", extra={"idle_timeout": "0.3s"})],
                                        [static_cluster("echo", echo.port)]))
        s = socket.create_connection(("127.0.0.1", skiff.listener_port()))
        s.sendall(b"ping")
        s.settimeout(5)
        assert s.recv(4) == b"ping"
        assert closed_by_peer(s)
        s.close()
        assert wait_until(lambda: skiff.stats()["tcp.tcp_idle.idle_timeout"] == 1)
    finally:
        echo.close()


def test_max_connections_overflow(skiff_factory, tmp_path):
    echo = EchoServer()
    log = tmp_path / "tcp.log"
    try:
        cluster = static_cluster("echo", echo.port,
                                 extra={"circuit_breakers": {"thresholds": [{"max_connections": 1}]}})
        skiff = skiff_factory(bootstrap([tcp_listener("tcp_cb", "echo", access_log_path=log)], [cluster]),
                              concurrency=1)
        first = socket.create_connection(("127.0.0.1", skiff.listener_port()))
        first.sendall(b"a")
        first.settimeout(5)
        assert first.recv(1) == b"a"
        second = socket.create_connection(("127.0.0.1", skiff.listener_port()))
        assert closed_by_peer(second)
        second.close()
        assert read_access_log(log, 1)[0].startswith("UO ")
        assert skiff.stats()["cluster.echo.upstream_cx_overflow"] == 1
        first.sendall(b"b")
        assert first.recv(1) == b"b"
        first.close()
    finally:
        echo.close()


def test_upstream_bind_config_source_address(skiff_factory):
    echo = EchoServer()
    try:
        cluster = static_cluster("inbound", echo.port, extra={
            "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}})
        skiff = skiff_factory(bootstrap([tcp_listener("tcp_bind", "inbound")], [cluster]))
        assert exchange(skiff.listener_port(), b"hello") == b"hello"
        assert [p[0] for p in echo.peers] == ["127.0.0.6"]
    finally:
        echo.close()


def test_http_route_to_original_dst_cluster_with_header(skiff_factory, tmp_path):
    backend = CountingBackend()
    log = tmp_path / "http.log"
    try:
        passthrough = {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
                       "connect_timeout": "1s", "original_dst_lb_config": {"use_http_header": True}}
        listener = http_listener("od", [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}],
                                 access_log_path=log,
                                 log_format="%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST%\n")
        skiff = skiff_factory(bootstrap([listener], [passthrough]))
        port = skiff.listener_port()
        status, _, _ = request(port, "/via-header",
                               headers={"x-envoy-original-dst-host": f"127.0.0.1:{backend.port}"})
        assert status == 200
        assert backend.hits == {"/via-header": 1}
        # Without the header (and no restored destination) there is no host: 503 UH.
        status, _, _ = request(port, "/no-header")
        assert status == 503
        lines = sorted(read_access_log(log, 2))  # two workers flush their lines independently
        assert lines[0] == f"200 - 127.0.0.1:{backend.port}"
        assert lines[1].startswith("503 UH")
    finally:
        backend.close()


def test_black_hole_cluster_answers_503_uh(skiff_factory, tmp_path):
    log = tmp_path / "http.log"
    black_hole = {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"}
    listener = http_listener("bh", [{"match": {"prefix": "/"}, "route": {"cluster": "BlackHoleCluster"}}],
                             access_log_path=log)
    skiff = skiff_factory(bootstrap([listener], [black_hole]))
    assert request(skiff.listener_port(), "/x")[0] == 503
    assert read_access_log(log, 1)[0] == "503 UH /x"
