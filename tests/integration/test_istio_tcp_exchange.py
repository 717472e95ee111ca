"""Istio's TCP metadata exchange between two skiff sidecars over mTLS: the client's cluster carries
istio.metadata_exchange in its `filters` and offers ALPN istio-peer-exchange, the server's TLS chain runs the
network istio.metadata_exchange in front of istio.stats and tcp_proxy (as istiod configures both). The
prefaces never reach either application, and both sides' istio_tcp_* series name the peer workload and the
SPIFFE principals (the client's from its upstream certificate). Without the ALPN, or with a client that
offers it but has no exchange, the bytes flow unchanged and the peer is `unknown`; a server without the
exchange whose first bytes look like the magic gets them through; a preface due after the server's FIN is
dropped."""

import socket
import threading

import pytest

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster, wait_until
from istio_stats_helpers import PLUGIN_CONFIG, find, istio_http_filters, node, prometheus_samples
from test_tcp_proxy import EchoServer, exchange
from tls_helpers import CERTS_BIN, Pki, client_context, downstream_tls, spiffe, upstream_tls, with_transport_socket

SERVICE = "server.team-b.svc.cluster.local"
MX = "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.server = p.workload("server", "team-b", "server")
    p.client = p.workload("client", "team-a", "client")
    return p


def tcp_listener(name, cluster, filters_before):
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": filters_before + [
                {"name": "istio.stats", "typed_config": {"@type": PLUGIN_CONFIG}},
                {"name": "envoy.filters.network.tcp_proxy",
                 "typed_config": {"@type": TCP_PROXY, "stat_prefix": name, "cluster": cluster}}]}]}


def start_pair(skiff_factory, pki, echo_port, *, client_alpn, client_filter=True, server_filter=True,
               client_stats=True):
    inbound = "inbound|31400||"
    server_filters = [{"name": "istio.metadata_exchange",
                       "typed_config": {"@type": MX, "protocol": "istio-peer-exchange"}}] if server_filter else []
    listener = with_transport_socket(
        tcp_listener("virtualInbound", inbound, server_filters),
        downstream_tls(pki.server, root=pki.root, require_client=True,
                       alpn=["istio-peer-exchange", "h2", "http/1.1"]))
    server_cfg = bootstrap([listener], [static_cluster(inbound, echo_port)])
    server_cfg["node"] = node("server-v1", "team-b", "server")
    server = skiff_factory(server_cfg, name="server")

    outbound = f"outbound|31400||{SERVICE}"
    tls = upstream_tls(client_dir=pki.client, root=pki.root, sans=[spiffe("team-b", "server")])
    tls["typed_config"]["common_tls_context"]["alpn_protocols"] = client_alpn
    extra = {"transport_socket": tls}
    if client_filter:
        # istiod 1.10's form: the config wrapped in a TypedStruct.
        extra["filters"] = [{"name": "istio.metadata_exchange", "typed_config": {
            "@type": TYPED_STRUCT, "type_url": MX, "value": {"protocol": "istio-peer-exchange"}}}]
    client_listener = tcp_listener("virtualOutbound", outbound, [])
    if not client_stats:  # tcp_proxy alone: its unfiltered byte path
        client_listener["filter_chains"][0]["filters"] = client_listener["filter_chains"][0]["filters"][1:]
    client_cfg = bootstrap([client_listener],
                           [static_cluster(outbound, server.listener_port(), extra=extra)])
    client_cfg["node"] = node("client-v1", "team-a", "client")
    client = skiff_factory(client_cfg, name="client")
    return client, server


def tcp_value(skiff, name, **labels):
    status, body = skiff.admin_get("/stats/prometheus")
    assert status == 200, body
    return sum(s[2] for s in find(prometheus_samples(body), name, **labels))


def tcp_series(skiff):
    return [s for s in prometheus_samples(skiff.admin_get("/stats/prometheus")[1]) if s[0].startswith("istio_tcp")]


def test_both_sides_learn_the_peer_and_the_bytes_are_untouched(pki, skiff_factory):
    echo = EchoServer()
    try:
        client, server = start_pair(skiff_factory, pki, echo.port, client_alpn=["istio-peer-exchange", "istio"])
        payload = bytes(range(256)) * 20
        assert exchange(client.listener_port(), payload) == payload
        assert exchange(client.listener_port(), b"y" * 100) == b"y" * 100

        src = {"reporter": "source", "source_workload": "client-v1", "source_workload_namespace": "team-a",
               "source_principal": spiffe("team-a", "client"), "destination_workload": "server-v1",
               "destination_workload_namespace": "team-b", "destination_app": "server",
               "destination_version": "v1", "destination_principal": spiffe("team-b", "server"),
               "destination_service": SERVICE, "request_protocol": "tcp"}
        assert wait_until(lambda: tcp_value(client, "istio_tcp_connections_closed_total", **src) == 2), \
            tcp_series(client)
        assert tcp_value(client, "istio_tcp_connections_opened_total", **src) == 2
        # The client application's bytes exactly: the prefaces are not counted on the plaintext side.
        assert tcp_value(client, "istio_tcp_sent_bytes_total", **src) == len(payload) + 100
        assert tcp_value(client, "istio_tcp_received_bytes_total", **src) == len(payload) + 100

        dst = {"reporter": "destination", "source_workload": "client-v1", "source_workload_namespace": "team-a",
               "source_app": "client", "source_principal": spiffe("team-a", "client"),
               "destination_workload": "server-v1", "destination_principal": spiffe("team-b", "server"),
               "connection_security_policy": "mutual_tls", "request_protocol": "tcp"}
        assert wait_until(lambda: tcp_value(server, "istio_tcp_connections_closed_total", **dst) == 2), \
            tcp_series(server)
        assert tcp_value(server, "istio_tcp_connections_opened_total", **dst) == 2
        stats = server.stats()
        assert stats["metadata_exchange.alpn_protocol_found"] >= 2
        assert stats["metadata_exchange.metadata_added"] >= 2
        assert client.stats()["metadata_exchange.alpn_protocol_found"] >= 2
    finally:
        echo.close()


def test_a_connection_without_application_bytes_still_exchanges(pki, skiff_factory):
    # The client application sends nothing: the prefaces alone carry the peers both ways.
    echo = EchoServer()
    try:
        client, server = start_pair(skiff_factory, pki, echo.port, client_alpn=["istio-peer-exchange", "istio"])
        assert exchange(client.listener_port(), b"") == b""
        src = {"reporter": "source", "destination_workload": "server-v1", "source_workload": "client-v1"}
        assert wait_until(lambda: tcp_value(client, "istio_tcp_connections_closed_total", **src) == 1), \
            tcp_series(client)
        dst = {"reporter": "destination", "source_workload": "client-v1"}
        assert wait_until(lambda: tcp_value(server, "istio_tcp_connections_closed_total", **dst) == 1), \
            tcp_series(server)
    finally:
        echo.close()


def test_without_the_alpn_nothing_is_exchanged(pki, skiff_factory):
    echo = EchoServer()
    try:
        client, server = start_pair(skiff_factory, pki, echo.port, client_alpn=["istio"])
        payload = b"z" * 3000
        assert exchange(client.listener_port(), payload) == payload
        src = {"reporter": "source", "destination_workload": "unknown",
               "destination_principal": spiffe("team-b", "server")}
        assert wait_until(lambda: tcp_value(client, "istio_tcp_connections_closed_total", **src) == 1), \
            tcp_series(client)
        dst = {"reporter": "destination", "source_workload": "unknown",
               "source_principal": spiffe("team-a", "client")}
        assert wait_until(lambda: tcp_value(server, "istio_tcp_connections_closed_total", **dst) == 1), \
            tcp_series(server)
        assert tcp_value(server, "istio_tcp_received_bytes_total", **dst) == len(payload)
        assert server.stats()["metadata_exchange.alpn_protocol_not_found"] >= 1
    finally:
        echo.close()


def test_a_client_that_offers_the_alpn_without_the_exchange_gets_its_bytes_unchanged(pki, skiff_factory):
    # Like an HTTP/1 client on an Istio cluster: the server negotiates istio-peer-exchange, sees no preface,
    # passes the bytes on and never sends its own.
    echo = EchoServer()
    try:
        client, server = start_pair(skiff_factory, pki, echo.port, client_alpn=["istio-peer-exchange"],
                                    client_filter=False)
        payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10
        assert exchange(client.listener_port(), payload) == payload
        dst = {"reporter": "destination", "source_workload": "unknown"}
        assert wait_until(lambda: tcp_value(server, "istio_tcp_connections_closed_total", **dst) == 1), \
            tcp_series(server)
        assert server.stats()["metadata_exchange.initial_header_not_found"] >= 1
    finally:
        echo.close()


def test_http_source_reporter_names_the_upstream_certificate(pki, skiff_factory):
    # Client-side principals for HTTP: the router's upstream TLS session reaches istio.stats.
    backend = CountingBackend()
    try:
        inbound = "inbound|9080||"
        listener = with_transport_socket(
            http_listener("inbound_0.0.0.0_9080", [{"match": {"prefix": "/"}, "route": {"cluster": inbound}}],
                          http_filters=istio_http_filters(native_stats=True)),
            downstream_tls(pki.server, root=pki.root, require_client=True, alpn=["http/1.1"]))
        server_cfg = bootstrap([listener], [static_cluster(inbound, backend.port)])
        server_cfg["node"] = node("server-v1", "team-b", "server")
        server = skiff_factory(server_cfg, name="server")
        outbound = f"outbound|9080||{SERVICE}"
        tls = upstream_tls(client_dir=pki.client, root=pki.root, sans=[spiffe("team-b", "server")])
        client_cfg = bootstrap(
            [http_listener("outbound_0.0.0.0_9080", [{"match": {"prefix": "/"}, "route": {"cluster": outbound}}],
                           http_filters=istio_http_filters(native_stats=True))],
            [static_cluster(outbound, server.listener_port(), extra={"transport_socket": tls})])
        client_cfg["node"] = node("client-v1", "team-a", "client")
        client = skiff_factory(client_cfg, name="client")
        for _ in range(2):
            assert request(client.listener_port(), "/status/200", headers={"Host": SERVICE})[0] == 200
        src = {"reporter": "source", "source_principal": spiffe("team-a", "client"),
               "destination_principal": spiffe("team-b", "server"), "destination_workload": "server-v1",
               "response_code": "200"}
        assert wait_until(lambda: tcp_value(client, "istio_requests_total", **src) == 2), \
            [s for s in prometheus_samples(client.admin_get("/stats/prometheus")[1]) if s[0] == "istio_requests_total"]
        dst = {"reporter": "destination", "source_principal": spiffe("team-a", "client"),
               "destination_principal": spiffe("team-b", "server"), "connection_security_policy": "mutual_tls"}
        assert wait_until(lambda: tcp_value(server, "istio_requests_total", **dst) == 2)
    finally:
        backend.close()


def _field(number, payload):
    # A length-delimited protobuf field (lengths here stay below 2**14: two varint bytes at most).
    n = len(payload)
    varint = bytes([n]) if n < 0x80 else bytes([(n & 0x7F) | 0x80, n >> 7])
    return bytes([(number << 3) | 2]) + varint + payload


def _struct(fields):
    # google.protobuf.Struct of string values and nested Structs, keys sorted (deterministic order).
    out = b""
    for key in sorted(fields):
        value = fields[key]
        v = _field(5, _struct(value)) if isinstance(value, dict) else _field(3, value.encode())
        out += _field(1, _field(1, key.encode()) + _field(2, v))
    return out


def preface(node_id, metadata):
    """Istio's TCP exchange preface: magic, length, Any(Struct{x-envoy-peer-metadata, -id})."""
    data = _struct({"x-envoy-peer-metadata": metadata, "x-envoy-peer-metadata-id": node_id})
    any_ = _field(1, b"type.googleapis.com/google.protobuf.Struct") + _field(2, data)
    return (0x3D230467).to_bytes(4, "big") + len(any_).to_bytes(4, "big") + any_


class Speaker:
    """A server application that speaks first: writes `chunks` (one send each), sends its FIN, and records
    everything it reads until the peer's FIN."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        got = bytearray()
        self.received.append(got)
        try:
            for chunk in self.chunks:
                conn.sendall(chunk)
            conn.shutdown(socket.SHUT_WR)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got.extend(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("client_stats", [True, False], ids=["filtered", "unfiltered"])
@pytest.mark.parametrize("chunks", [
    [b"\x3d\x23", b"\x04XYZ"],  # the magic's first bytes, then others
    [b"\x3d\x23\x04\x67\x00\x00\x01"],  # magic and part of a length, then the FIN
    [b"\x3d"],  # one byte, then the FIN
], ids=["split-mismatch", "prefix-then-fin", "one-byte-then-fin"])
def test_a_server_without_the_exchange_keeps_its_magic_like_bytes(pki, skiff_factory, chunks, client_stats):
    # The server negotiated istio-peer-exchange but runs no exchange: what it writes first merely looks like
    # the start of a preface. The client side holds those bytes while they match the magic and must hand
    # them to the application once they turn out not to be one (Istio passes them on).
    app = Speaker(chunks)
    try:
        client, _ = start_pair(skiff_factory, pki, app.port, client_alpn=["istio-peer-exchange", "istio"],
                               server_filter=False, client_stats=client_stats)
        assert exchange(client.listener_port(), b"") == b"".join(chunks)
        if client_stats:  # the counters live in the store of an Istio network filter's factory
            assert client.stats()["metadata_exchange.initial_header_not_found"] >= 1
    finally:
        app.close()


def test_a_preface_due_after_the_servers_fin_is_dropped_not_written(pki, skiff_factory):
    # The server application closes its side at once; the client's preface (and a large payload) arrive
    # only after that FIN reached the client. The server's answer can no longer be written: it is dropped
    # and the client's bytes still all reach the application.
    app = Speaker([])
    try:
        _, server = start_pair(skiff_factory, pki, app.port, client_alpn=["istio-peer-exchange"])
        ctx = client_context(root=pki.root, cert_dir=pki.client, alpn=["istio-peer-exchange"])
        raw = socket.create_connection(("127.0.0.1", server.listener_port()), timeout=30)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        assert s.selected_alpn_protocol() == "istio-peer-exchange"
        assert s.recv(65536) == b""  # the application's FIN, passed on with nothing before it
        payload = bytes(range(256)) * 16384  # 4 MiB: still in flight when the preface completes
        s.sendall(preface("client-id", {"WORKLOAD_NAME": "client-v1", "NAMESPACE": "team-a"}) + payload)
        s.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: app.received and len(app.received[0]) == len(payload), timeout=30), \
            len(app.received[0]) if app.received else None
        assert bytes(app.received[0]) == payload
        s.close()
    finally:
        app.close()
