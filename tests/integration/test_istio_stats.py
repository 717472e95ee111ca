"""Istio's standard metrics between two skiff sidecars: a client sidecar (outbound, reporter=source) and a
server sidecar (inbound, reporter=destination), configured as istiod does (metadata exchange and
istio.stats on the HCM; istio.stats in front of tcp_proxy). Each side's /stats/prometheus must name the
peer's workload, namespace and app, the response code and the reporter."""

import socket

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster, wait_until
from istio_stats_helpers import find, istio_http_filters, node, prometheus_samples, tcp_listener_with_stats
from test_tcp_proxy import EchoServer, exchange

SERVICE = "server.team-b.svc.cluster.local"


def prometheus(skiff):
    status, body = skiff.admin_get("/stats/prometheus")
    assert status == 200, body
    return prometheus_samples(body)


def value(skiff, name, **labels):
    return sum(s[2] for s in find(prometheus(skiff), name, **labels))


def start_pair(skiff_factory, backend_port, native_client_stats):
    server_cfg = bootstrap(
        [http_listener("inbound_0.0.0.0_9080", [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|9080||"}}],
                       http_filters=istio_http_filters(native_stats=True))],
        [static_cluster("inbound|9080||", backend_port)])
    server_cfg["node"] = node("server-v1", "team-b", "server")
    server = skiff_factory(server_cfg, name="server")
    client_cluster = f"outbound|9080||{SERVICE}"
    client_cfg = bootstrap(
        [http_listener("outbound_0.0.0.0_9080", [{"match": {"prefix": "/"}, "route": {"cluster": client_cluster}}],
                       http_filters=istio_http_filters(native_stats=native_client_stats))],
        [static_cluster(client_cluster, server.listener_port())])
    client_cfg["node"] = node("client-v1", "team-a", "client")
    client = skiff_factory(client_cfg, name="client")
    return client, server


def test_http_metrics_on_both_sides_with_peer_labels(skiff_factory):
    backend = CountingBackend()
    try:
        client, server = start_pair(skiff_factory, backend.port, native_client_stats=False)
        port = client.listener_port()
        for _ in range(3):
            status, headers, _ = request(port, "/status/200", headers={"Host": SERVICE})
            assert status == 200
            # The exchange headers never reach the application, on either side.
            assert "x-envoy-peer-metadata" not in {k.lower() for k in headers}
        assert request(port, "/status/503", headers={"Host": SERVICE})[0] == 503
        seen = backend.headers["/status/200"]
        assert "x-envoy-peer-metadata" not in seen and "x-envoy-peer-metadata-id" not in seen, seen

        # Client side: reporter=source, the destination is the server's workload (from its response).
        src = {"reporter": "source", "source_workload": "client-v1", "source_workload_namespace": "team-a",
               "source_app": "client", "destination_workload": "server-v1",
               "destination_workload_namespace": "team-b", "destination_app": "server",
               "destination_service": SERVICE, "destination_service_name": "server",
               "request_protocol": "http", "connection_security_policy": "unknown"}
        assert wait_until(lambda: value(client, "istio_requests_total", response_code="200", **src) == 3), \
            [s for s in prometheus(client) if s[0] == "istio_requests_total"]
        assert wait_until(lambda: value(client, "istio_requests_total", response_code="503", **src) == 1)
        # Server side: reporter=destination, the source is the client's workload (from its request).
        dst = {"reporter": "destination", "source_workload": "client-v1", "source_workload_namespace": "team-a",
               "source_app": "client", "source_version": "v1", "source_cluster": "Kubernetes",
               "destination_workload": "server-v1", "destination_workload_namespace": "team-b",
               "destination_app": "server", "destination_service": SERVICE,
               "connection_security_policy": "none", "response_flags": "-"}
        assert wait_until(lambda: value(server, "istio_requests_total", response_code="200", **dst) == 3), \
            [s for s in prometheus(server) if s[0] == "istio_requests_total"]
        assert wait_until(lambda: value(server, "istio_requests_total", response_code="503", **dst) == 1)

        # The histograms carry the same labels, with Envoy's default buckets.
        samples = prometheus(server)
        counts = find(samples, "istio_request_duration_milliseconds_count", response_code="200", **dst)
        assert [c[2] for c in counts] == [3.0], counts
        buckets = find(samples, "istio_request_duration_milliseconds_bucket", response_code="200", **dst)
        assert {b[1]["le"] for b in buckets} >= {"0.5", "1", "5", "10", "3600000", "+Inf"}
        assert find(samples, "istio_request_bytes_sum", response_code="200", **dst)[0][2] > 0
        assert find(samples, "istio_response_bytes_sum", response_code="200", **dst)[0][2] > 0
        # /stats shows the same series under Envoy's tagged-stat names.
        assert "istiocustom.istio_requests_total.reporter.destination.source_workload.client-v1." in \
            server.admin_get("/stats")[1]
    finally:
        backend.close()


def test_without_metadata_exchange_the_peer_is_unknown(skiff_factory):
    backend = CountingBackend()
    try:
        cfg = bootstrap(
            [http_listener("inbound_0.0.0.0_9080", [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|9080||"}}],
                           http_filters=istio_http_filters(native_stats=True))],
            [static_cluster("inbound|9080||", backend.port)])
        cfg["node"] = node("server-v1", "team-b", "server")
        server = skiff_factory(cfg)
        port = server.listener_port()
        # A plain client (no sidecar): no exchange headers in, none added to the answer.
        status, headers, _ = request(port, "/status/200", headers={"Host": "server:9080"})
        assert status == 200
        assert "x-envoy-peer-metadata" not in {k.lower() for k in headers}
        assert wait_until(lambda: value(server, "istio_requests_total", reporter="destination",
                                        source_workload="unknown", destination_workload="server-v1",
                                        destination_service="server:9080", response_code="200") == 1)
    finally:
        backend.close()


def test_tcp_metrics_through_tcp_proxy(skiff_factory):
    echo = EchoServer()
    try:
        server_cfg = bootstrap([tcp_listener_with_stats("inbound_tcp", "inbound|31400||", "inbound|31400||")],
                               [static_cluster("inbound|31400||", echo.port)])
        server_cfg["node"] = node("server-v1", "team-b", "server")
        server = skiff_factory(server_cfg, name="server")
        cluster = f"outbound|31400||{SERVICE}"
        client_cfg = bootstrap([tcp_listener_with_stats("outbound_tcp", cluster, cluster)],
                               [static_cluster(cluster, server.listener_port())])
        client_cfg["node"] = node("client-v1", "team-a", "client")
        client = skiff_factory(client_cfg, name="client")
        payload = b"x" * 5000
        assert exchange(client.listener_port(), payload) == payload
        assert exchange(client.listener_port(), b"y" * 100) == b"y" * 100

        src = {"reporter": "source", "source_workload": "client-v1", "source_workload_namespace": "team-a",
               "destination_service": SERVICE, "destination_service_name": "server", "request_protocol": "tcp"}
        assert wait_until(lambda: value(client, "istio_tcp_connections_closed_total", **src) == 2), \
            [s for s in prometheus(client) if s[0].startswith("istio_tcp")]
        assert value(client, "istio_tcp_connections_opened_total", **src) == 2
        assert value(client, "istio_tcp_sent_bytes_total", **src) == 5100
        assert value(client, "istio_tcp_received_bytes_total", **src) == 5100
        dst = {"reporter": "destination", "destination_workload": "server-v1",
               "destination_workload_namespace": "team-b", "source_workload": "unknown", "request_protocol": "tcp"}
        assert wait_until(lambda: value(server, "istio_tcp_connections_closed_total", **dst) == 2), \
            [s for s in prometheus(server) if s[0].startswith("istio_tcp")]
        assert value(server, "istio_tcp_received_bytes_total", **dst) == 5100
        # TCP series have no response_code / grpc_response_status labels, as in Istio.
        assert all("response_code" not in s[1] for s in prometheus(server) if s[0].startswith("istio_tcp"))
    finally:
        echo.close()
