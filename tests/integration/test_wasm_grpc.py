"""proxy_grpc_call / proxy_grpc_stream from a Wasm HTTP filter to the grpc++ Echo test server through an h2
cluster: unary and streaming replies with their initial and trailing metadata, error statuses with
proxy_get_status, an unknown cluster (ParseFailure), and cancel (no callbacks afterwards)."""

import pytest

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster
from http2_helpers import GrpcEchoServer, build_bin, h2_cluster_options
from test_wasm import WASM_TYPE, module

SERVER = build_bin("skiff-grpc-test-server")
pytestmark = pytest.mark.skipif(SERVER is None, reason="skiff-grpc-test-server is not built")


@pytest.fixture
def setup(tmp_path, skiff_factory):
    echo = GrpcEchoServer(SERVER, tmp_path)
    backend = CountingBackend()
    wasm = {"name": "grpc-caller", "typed_config": {"@type": WASM_TYPE, "config": {
        "name": "grpc-caller",
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "echo"},
        "vm_config": {"vm_id": "grpc", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(module("grpc_call_filter"))}}}}}}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    listener = http_listener("wasm_grpc", routes, http_filters=[wasm, {"name": "envoy.filters.http.router"}])
    skiff = skiff_factory(bootstrap([listener], [
        static_cluster("backend", backend.port),
        static_cluster("echo", echo.port, extra=h2_cluster_options("explicit"))]), concurrency=1)
    yield skiff, backend
    backend.close()
    echo.stop()


def test_unary_call_reply_and_metadata(setup):
    skiff, backend = setup
    status, _, body = request(skiff.listener_port(), "/unary", headers={"x-grpc": "ping"})
    assert status == 200, body
    seen = backend.headers["/unary"]
    assert seen["x-grpc-reply"] == "ping"
    assert seen["x-grpc-initial"] == "i"
    assert seen["x-grpc-trailer"] == "t-ping"
    assert skiff.stats()["cluster.echo.grpc.skiff.test.Echo.Unary.success"] == 1


def test_stream_sends_and_receives_every_message(setup):
    skiff, backend = setup
    status, _, body = request(skiff.listener_port(), "/stream", headers={"x-grpc-stream": "s"})
    assert status == 200, body
    assert backend.headers["/stream"]["x-grpc-reply"] == "s,s,s"
    assert backend.headers["/stream"]["x-grpc-trailer"] == "t-s"


def test_error_status_reaches_the_plugin_with_its_message(setup):
    skiff, backend = setup
    status, _, body = request(skiff.listener_port(), "/err", headers={"x-grpc": "e", "x-grpc-status": "7"})
    assert status == 503
    assert body == b"grpc 7: requested status 7"
    assert "/err" not in backend.hits


def test_unknown_cluster_is_a_parse_failure_and_cancel_stops_callbacks(setup):
    skiff, backend = setup
    status, _, body = request(skiff.listener_port(), "/nope", headers={"x-grpc": "x", "x-grpc-cluster": "nope"})
    assert (status, body) == (500, b"4")  # ParseFailure
    status, _, _ = request(skiff.listener_port(), "/cancel", headers={"x-grpc-cancel": "1"})
    assert status == 200
    # started Ok, cancelled Ok, the second cancel finds nothing (NotFound)
    assert backend.headers["/cancel"]["x-grpc-cancel-result"] == "0,0,1"
    # The VM is still healthy afterwards.
    status, _, _ = request(skiff.listener_port(), "/after", headers={"x-grpc": "again"})
    assert status == 200
    assert backend.headers["/after"]["x-grpc-reply"] == "again"
