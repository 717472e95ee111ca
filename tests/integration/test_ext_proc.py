"""ext_proc through skiff against a grpc++ processor (tests/unit/ext_servers/ext_proc_test_server.cc): the
documents' processor, each processing mode, mutations, immediate responses, failures and timeouts."""

import json
import socket

import pytest

from ext_helpers import (EXT_PROC_PER_ROUTE, EchoBackend, ServerProcess, dead_port, ext_proc_filter,
                         prefix_stats, proxy_config, built_binary)
from helpers import request, wait_until

STATS = "http.ingress.ext_proc."


@pytest.fixture
def backend():
    b = EchoBackend()
    yield b
    b.close()


@pytest.fixture
def processor_factory(skiff_bin, tmp_path):
    binary = built_binary(skiff_bin, "skiff-ext-proc-test-server")
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    started = []

    def start(mode="documents"):
        p = ServerProcess(binary, tmp_path, ["--mode", mode])
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def processor(processor_factory):
    return processor_factory()


def echo(body):
    return json.loads(body)


def start_skiff(skiff_factory, backend, port, mode=None, **extra):
    return skiff_factory(proxy_config(backend.port, port, [ext_proc_filter("ext_service", mode, **extra)]))


# ---- the founding documents' processor ---------------------------------------------------------------

def test_documents_processor_adds_processed_by(skiff_factory, backend, processor, httpbin):
    # envoy-extension-policies.yaml: request headers only; response headers plus a streamed body.
    mode = {"request_header_mode": "SEND", "response_header_mode": "SEND", "response_body_mode": "STREAMED"}
    skiff = skiff_factory(proxy_config(httpbin, processor.port, [ext_proc_filter("ext_service", mode)]))
    port = skiff.listener_port()
    status, headers, body = request(port, "/headers")
    assert status == 200, body
    assert json.loads(body)["headers"]["X-Processed-By"] == "ext-proc"
    kinds = [k for k, _ in processor.messages("/headers")]
    assert kinds[0] == "request_headers"
    assert "response_headers" in kinds and "response_body" in kinds
    assert "request_body" not in kinds
    stats = prefix_stats(skiff, STATS)
    assert stats["streams_started"] == 1
    assert stats["stream_msgs_sent"] == len(kinds)
    assert stats["stream_msgs_received"] == len(kinds)


# ---- processing modes --------------------------------------------------------------------------------

def test_header_mutations_both_directions(skiff_factory, backend, processor_factory):
    p = processor_factory("mutate")
    skiff = start_skiff(skiff_factory, backend, p.port)
    status, headers, body = request(skiff.listener_port(), "/m", headers={"x-remove-me": "1", "x-keep": "2"})
    assert status == 200, body
    seen = echo(body)["headers"]
    assert seen["x-ext-added"] == "1" and seen["x-processed-by"] == "ext-proc"
    assert "x-remove-me" not in seen and seen["x-keep"] == "2"
    assert "x-envoy-forbidden" not in seen  # default mutation rules refuse x-envoy-*
    assert headers["x-ext-response"] == "yes"
    assert "x-drop" not in headers
    assert headers["x-ext-seen"] == "request_headers,response_headers"
    assert prefix_stats(skiff, STATS)["rejected_header_mutations"] >= 1


def test_mutation_rules_allow_envoy_headers(skiff_factory, backend, processor_factory):
    p = processor_factory("mutate")
    skiff = start_skiff(skiff_factory, backend, p.port, mutation_rules={"allow_envoy": True})
    status, _, body = request(skiff.listener_port(), "/m")
    assert status == 200
    assert echo(body)["headers"]["x-envoy-forbidden"] == "1"


def test_mutation_rules_disallow_is_error(skiff_factory, backend, processor_factory):
    p = processor_factory("mutate")
    skiff = start_skiff(skiff_factory, backend, p.port, mutation_rules={"disallow_is_error": True})
    status, _, _ = request(skiff.listener_port(), "/m")
    assert status == 500
    assert not backend.requests


def test_skip_headers_opens_no_stream(skiff_factory, backend, processor):
    mode = {"request_header_mode": "SKIP", "response_header_mode": "SKIP"}
    skiff = start_skiff(skiff_factory, backend, processor.port, mode)
    status, _, body = request(skiff.listener_port(), "/skip")
    assert status == 200
    assert "x-processed-by" not in echo(body)["headers"]
    assert processor.messages() == []
    assert prefix_stats(skiff, STATS)["streams_started"] == 0


@pytest.mark.parametrize("body_mode", ["BUFFERED", "STREAMED", "BUFFERED_PARTIAL"])
def test_request_body_modes(skiff_factory, backend, processor_factory, body_mode):
    p = processor_factory("mutate")
    mode = {"request_body_mode": body_mode, "response_header_mode": "SKIP"}
    skiff = start_skiff(skiff_factory, backend, p.port, mode)
    status, _, body = request(skiff.listener_port(), "/body", method="POST", body=b"hello world")
    assert status == 200, body
    got = echo(body)
    assert got["body"] == "HELLO WORLD"
    msgs = p.messages("/body")
    assert [k for k, _ in msgs][0] == "request_headers"
    bodies = [f for k, f in msgs if k == "request_body"]
    assert sum(int(f["len"]) for f in bodies) == len(b"hello world")
    assert bodies[-1]["eos"] == "1"
    if body_mode == "BUFFERED":
        assert len(bodies) == 1
        # Headers were still held: the body reply's header mutation reached the upstream.
        assert got["headers"]["x-ext-body-seen"] == "request"
        assert got["headers"]["content-length"] == str(len(b"HELLO WORLD"))


def test_request_body_streamed_in_chunks(skiff_factory, backend, processor_factory):
    p = processor_factory("mutate")
    mode = {"request_body_mode": "STREAMED", "response_header_mode": "SKIP"}
    skiff = start_skiff(skiff_factory, backend, p.port, mode)
    port = skiff.listener_port()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
        assert wait_until(lambda: len([1 for k, _ in p.messages("/chunks") if k == "request_body"]) >= 1)
        s.sendall(b"3\r\nfgh\r\n0\r\n\r\n")
        data = b""
        while b"}" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    assert b'"body": "ABCDEFGH"' in data
    bodies = [f for k, f in p.messages("/chunks") if k == "request_body"]
    assert len(bodies) >= 2


@pytest.mark.parametrize("body_mode", ["BUFFERED", "STREAMED"])
def test_response_body_modes(skiff_factory, backend, processor_factory, body_mode):
    p = processor_factory("mutate")
    mode = {"request_header_mode": "SKIP", "response_body_mode": body_mode}
    skiff = start_skiff(skiff_factory, backend, p.port, mode)
    status, headers, body = request(skiff.listener_port(), "/big")
    assert status == 200
    assert body == b"A" * 65536
    kinds = [k for k, _ in p.messages()]
    assert kinds[0] == "response_headers"
    assert "response_body" in kinds


def test_trailers_sent_when_asked(skiff_factory, backend, processor_factory):
    p = processor_factory("mutate")
    mode = {"request_header_mode": "SKIP", "response_header_mode": "SKIP", "response_trailer_mode": "SEND"}
    skiff = start_skiff(skiff_factory, backend, p.port, mode)
    with socket.create_connection(("127.0.0.1", skiff.listener_port()), timeout=10) as s:
        s.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        data = b""
        # Until the last chunk and the trailer block after it (the head alone also ends in a blank line).
        while b"\r\n0\r\n" not in data or not data.endswith(b"\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    # The processor logs each message as it handles it; its log may trail the response by a moment.
    assert wait_until(lambda: "response_trailers" in [k for k, _ in p.messages()], timeout=5), p.messages()
    assert b"x-ext-trailer: response" in data.lower()


# ---- immediate responses, CONTINUE_AND_REPLACE, spurious replies ---------------------------------------

def test_immediate_response(skiff_factory, backend, processor_factory):
    p = processor_factory("immediate")
    skiff = start_skiff(skiff_factory, backend, p.port)
    status, headers, body = request(skiff.listener_port(), "/imm")
    assert status == 403
    assert body == b"denied by ext_proc"
    assert headers["x-ext-immediate"] == "yes"
    assert not backend.requests


def test_immediate_response_refused_when_disabled(skiff_factory, backend, processor_factory):
    p = processor_factory("immediate")
    skiff = start_skiff(skiff_factory, backend, p.port, disable_immediate_response=True)
    status, _, _ = request(skiff.listener_port(), "/imm")
    assert status == 500
    assert not backend.requests


def test_continue_and_replace_replaces_the_body(skiff_factory, backend, processor_factory):
    p = processor_factory("replace")
    mode = {"request_body_mode": "BUFFERED", "response_header_mode": "SKIP"}
    skiff = start_skiff(skiff_factory, backend, p.port, mode)
    status, _, body = request(skiff.listener_port(), "/r", method="POST", body=b"original")
    assert status == 200, body
    assert echo(body)["body"] == "replaced-body"
    assert "request_body" not in [k for k, _ in p.messages("/r")]


def test_spurious_reply_fails_the_request(skiff_factory, backend, processor_factory):
    p = processor_factory("spurious")
    skiff = start_skiff(skiff_factory, backend, p.port)
    status, _, _ = request(skiff.listener_port(), "/s")
    assert status == 500
    assert prefix_stats(skiff, STATS)["spurious_msgs_received"] == 1


# ---- failures ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("allow", [False, True])
def test_processor_down(skiff_factory, backend, allow):
    skiff = start_skiff(skiff_factory, backend, dead_port(), failure_mode_allow=allow)
    status, _, body = request(skiff.listener_port(), "/down")
    stats = prefix_stats(skiff, STATS)
    if allow:
        assert status == 200
        assert "x-processed-by" not in echo(body)["headers"]
        assert stats["failure_mode_allowed"] == 1
    else:
        assert status == 500
        assert not backend.requests
        assert stats["failure_mode_allowed"] == 0
    assert stats["streams_failed"] == 1


@pytest.mark.parametrize("allow", [False, True])
def test_processor_cluster_unknown(skiff_factory, backend, allow):
    # No channel can be opened at all (the cluster is not (yet) known): fail-closed must not let the
    # request reach the upstream while the failure is on its way.
    config = proxy_config(backend.port, dead_port(), [ext_proc_filter("no_such_cluster",
                                                                      failure_mode_allow=allow)])
    skiff = skiff_factory(config)
    status, _, _ = request(skiff.listener_port(), "/nowhere", method="POST", body=b"payload")
    if allow:
        assert status == 200
        assert backend.requests
    else:
        assert status == 500
        assert not backend.requests


@pytest.mark.parametrize("allow", [False, True])
def test_processor_error_status(skiff_factory, backend, processor_factory, allow):
    p = processor_factory("error")
    skiff = start_skiff(skiff_factory, backend, p.port, failure_mode_allow=allow)
    status, _, _ = request(skiff.listener_port(), "/err")
    assert status == (200 if allow else 500)


def test_clean_close_continues_without_processor(skiff_factory, backend, processor_factory):
    p = processor_factory("close")
    skiff = start_skiff(skiff_factory, backend, p.port)
    status, _, body = request(skiff.listener_port(), "/close")
    assert status == 200
    assert "x-processed-by" not in echo(body)["headers"]


@pytest.mark.parametrize("allow", [False, True])
def test_message_timeout(skiff_factory, backend, processor_factory, allow):
    p = processor_factory("slow")
    skiff = start_skiff(skiff_factory, backend, p.port, message_timeout="0.2s", failure_mode_allow=allow)
    status, _, body = request(skiff.listener_port(), "/slow", headers={"x-ext-proc-delay-ms": "1500"})
    stats = prefix_stats(skiff, STATS)
    assert stats["message_timeouts"] == 1
    if allow:
        assert status == 200
        assert "x-processed-by" not in echo(body)["headers"]
    else:
        assert status == 504
        assert not backend.requests


def test_fast_enough_processor_is_not_timed_out(skiff_factory, backend, processor_factory):
    p = processor_factory("slow")
    skiff = start_skiff(skiff_factory, backend, p.port, message_timeout="2s")
    status, _, body = request(skiff.listener_port(), "/slowok", headers={"x-ext-proc-delay-ms": "100"})
    assert status == 200
    assert echo(body)["headers"]["x-processed-by"] == "ext-proc"


# ---- per-route -----------------------------------------------------------------------------------------

def test_per_route_disabled(skiff_factory, backend, processor):
    routes = [
        {"match": {"prefix": "/off"}, "route": {"cluster": "backend"},
         "typed_per_filter_config": {"envoy.filters.http.ext_proc": {"@type": EXT_PROC_PER_ROUTE,
                                                                     "disabled": True}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}},
    ]
    skiff = skiff_factory(proxy_config(backend.port, processor.port, [ext_proc_filter("ext_service")],
                                       routes=routes))
    port = skiff.listener_port()
    _, _, body = request(port, "/off")
    assert "x-processed-by" not in echo(body)["headers"]
    _, _, body = request(port, "/on")
    assert echo(body)["headers"]["x-processed-by"] == "ext-proc"
    assert processor.messages("/off") == []


def test_per_route_processing_mode_override(skiff_factory, backend, processor_factory):
    p = processor_factory("mutate")
    routes = [
        {"match": {"prefix": "/buffered"}, "route": {"cluster": "backend"},
         "typed_per_filter_config": {"envoy.filters.http.ext_proc": {
             "@type": EXT_PROC_PER_ROUTE,
             "overrides": {"processing_mode": {"request_body_mode": "BUFFERED", "response_header_mode": "SKIP"}}}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}},
    ]
    skiff = skiff_factory(proxy_config(backend.port, p.port, [ext_proc_filter("ext_service")], routes=routes))
    _, _, body = request(skiff.listener_port(), "/buffered", method="POST", body=b"abc")
    assert echo(body)["body"] == "ABC"


def test_config_rejects_grpc_body_mode(skiff_factory, backend, processor, tmp_path, skiff_bin):
    from helpers import run_validate
    import json as _json
    cfg = proxy_config(backend.port, processor.port,
                       [ext_proc_filter("ext_service", {"request_body_mode": "GRPC"})])
    code, out = run_validate(skiff_bin, _json.dumps(cfg), tmp_path, name="c.json")
    assert code != 0
    assert "request_body_mode" in out


@pytest.mark.parametrize("allow", [False, True])
def test_mode_override_needs_allow_mode_override(skiff_factory, backend, processor_factory, allow):
    p = processor_factory("override")
    skiff = start_skiff(skiff_factory, backend, p.port, allow_mode_override=allow)
    status, _, _ = request(skiff.listener_port(), "/ov")
    assert status == 200
    kinds = [k for k, _ in p.messages("/ov")]
    assert kinds[0] == "request_headers"
    assert ("response_headers" in kinds) == (not allow)


def test_request_attributes(skiff_factory, backend, processor):
    skiff = start_skiff(skiff_factory, backend, processor.port,
                        request_attributes=["request.path", "request.method", "request.host", "no.such"])
    _, _, body = request(skiff.listener_port(), "/attr?x=1", headers={"host": "example.test"})
    assert echo(body)["headers"]["x-ext-attributes"] == \
        "request.host=example.test;request.method=GET;request.path=/attr?x=1"
