"""gRPC through the proxy (h2c downstream, h2 upstream) with the grpc++ Echo test peers: unary and
server-streaming calls, status and trailers intact, the deadline as grpc-timeout, grpc_timeout_header_max,
and retry_on gRPC codes."""

import json
import subprocess

import pytest

from helpers import bootstrap, http_listener, static_cluster
from http2_helpers import GrpcEchoServer, build_bin, h2_cluster_options
from tls_helpers import CERTS_BIN, Pki, downstream_tls, with_transport_socket

SERVER = build_bin("skiff-grpc-test-server")
CLIENT = build_bin("skiff-grpc-test-client")
pytestmark = pytest.mark.skipif(SERVER is None or CLIENT is None,
                                reason="skiff-grpc-test-server/-client are not built")


def call(port, *args):
    out = subprocess.run([CLIENT, "--target", f"127.0.0.1:{port}", *map(str, args)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def echo(tmp_path):
    server = GrpcEchoServer(SERVER, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def proxy(echo, skiff_factory):
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "echo", "timeout": "0s"}}]
    capped = [{"match": {"prefix": "/"},
               "route": {"cluster": "echo", "max_stream_duration": {"grpc_timeout_header_max": "0.3s"}}}]
    cluster = static_cluster("echo", echo.port, extra=h2_cluster_options("explicit"))
    skiff = skiff_factory(bootstrap([http_listener("grpc", routes), http_listener("grpcmax", capped)], [cluster]))
    skiff.max_port = skiff.listener_port("grpcmax")
    skiff.port = skiff.listener_port("grpc")
    return skiff


def test_direct_call_works(echo):
    result = call(echo.port)
    assert result["code"] == 0 and result["replies"] == ["hi"]


def test_unary_through_proxy(proxy):
    result = call(proxy.port, "--message", "m1")
    assert result["code"] == 0
    assert result["replies"] == ["m1"]
    assert result["initial"] == "i"  # initial metadata
    assert result["trailer"] == "t-m1"  # trailing metadata
    assert proxy.stats()["cluster.echo.upstream_cx_http2_total"] >= 1


def test_server_streaming_through_proxy(proxy):
    result = call(proxy.port, "--rpc", "stream", "--count", "25", "--message", "s")
    assert result["code"] == 0
    assert result["replies"] == ["s"] * 25
    assert result["trailer"] == "t-s"


def test_error_status_and_trailers_intact(proxy):
    result = call(proxy.port, "--status", "7", "--message", "e")
    assert result["code"] == 7
    assert result["message"] == "requested status 7"
    assert result["trailer"] == "t-e"
    stream = call(proxy.port, "--rpc", "stream", "--count", "3", "--status", "9")
    assert stream["code"] == 9 and len(stream["replies"]) == 3


def test_deadline_passes_as_grpc_timeout(proxy):
    result = call(proxy.port, "--deadline-ms", "5000")
    assert result["code"] == 0
    # The server saw the client's deadline (grpc-timeout went through): a little under 5 s.
    assert 3000 < result["deadlines"][0] <= 5000
    expired = call(proxy.port, "--deadline-ms", "300", "--sleep-ms", "1500")
    assert expired["code"] == 4  # DEADLINE_EXCEEDED


def test_grpc_timeout_header_max_caps_the_deadline(proxy):
    # grpcmax's route has grpc_timeout_header_max 0.3 s: a 10 s deadline is cut to 0.3 s by the proxy.
    result = call(proxy.max_port, "--deadline-ms", "10000", "--sleep-ms", "1500", "--message", "x")
    assert result["code"] != 0, result
    ok = call(proxy.max_port, "--deadline-ms", "10000")
    assert ok["code"] == 0
    assert proxy.stats()["cluster.echo.upstream_rq_timeout"] >= 1


def test_large_messages(proxy):
    result = call(proxy.port, "--pad-bytes", "1000000")
    assert result["code"] == 0


def test_retry_on_unavailable(echo, skiff_factory):
    routes = [{"match": {"prefix": "/"},
               "route": {"cluster": "echo", "retry_policy": {"retry_on": "unavailable", "num_retries": 3}}}]
    cluster = static_cluster("echo", echo.port, extra={"http2_protocol_options": {}})
    skiff = skiff_factory(bootstrap([http_listener("grpcretry", routes)], [cluster]))
    result = call(skiff.listener_port("grpcretry"), "--fail-first", "2", "--message", "retry-me")
    assert result["code"] == 0, result
    assert skiff.stats()["cluster.echo.upstream_rq_retry"] == 2


def test_unary_and_streaming_over_tls_with_alpn(echo, skiff_factory, tmp_path):
    """gRPC over TLS: the client offers ALPN h2, skiff terminates TLS (AUTO codec picks h2 from ALPN) and
    forwards over h2c; status, metadata and trailers arrive intact."""
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    pki = Pki(tmp_path / "pki")
    server = pki.workload("server", "shop", "cart", "--dns", "localhost")
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "echo", "timeout": "0s"}}]
    listener = with_transport_socket(http_listener("grpc-tls", routes),
                                     downstream_tls(server, alpn=("h2", "http/1.1")))
    cluster = static_cluster("echo", echo.port, extra=h2_cluster_options("explicit"))
    skiff = skiff_factory(bootstrap([listener], [cluster]))
    port = skiff.listener_port("grpc-tls")
    tls = ("--ca", pki.root, "--server-name", "localhost")
    unary = call(port, "--message", "m1", *tls)
    assert unary["code"] == 0 and unary["replies"] == ["m1"], unary
    assert unary["initial"] == "i" and unary["trailer"] == "t-m1"
    stream = call(port, "--rpc", "stream", "--count", "5", "--message", "s", *tls)
    assert stream["code"] == 0 and len(stream["replies"]) == 5, stream
    failed = call(port, "--status", "7", *tls)
    assert failed["code"] == 7, failed
    handshakes = [v for k, v in skiff.stats().items() if k.startswith("listener.") and k.endswith(".ssl.handshake")]
    assert handshakes and sum(handshakes) >= 3, handshakes
    # Plaintext to the TLS port gets nothing.
    plain = call(port, "--message", "plain", "--deadline-ms", "2000")
    assert plain["code"] != 0 and plain["replies"] == [], plain
