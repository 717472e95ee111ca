"""ext_authz through skiff: the gRPC Authorization service (tests/unit/ext_servers/ext_authz_test_server.cc)
and a plain HTTP authorization server; allow, deny with the server's status and body, errors per
failure_mode_allow / status_on_error, header forwarding both ways, per-route settings."""

import json
from urllib.parse import urlparse, parse_qs

import pytest

from ext_helpers import (EXT_AUTHZ_PER_ROUTE, EchoBackend, HttpAuthzServer, ServerProcess, dead_port,
                         ext_authz_grpc_filter, ext_authz_http_filter, prefix_stats, proxy_config, built_binary)
from helpers import request

STATS = "http.ingress.ext_authz."


@pytest.fixture
def backend():
    b = EchoBackend()
    yield b
    b.close()


@pytest.fixture
def grpc_authz(skiff_bin, tmp_path):
    binary = built_binary(skiff_bin, "skiff-ext-authz-test-server")
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    p = ServerProcess(binary, tmp_path)
    yield p
    p.stop()


@pytest.fixture
def http_authz():
    s = HttpAuthzServer()
    yield s
    s.close()


def echo(body):
    return json.loads(body)


# ---- gRPC service --------------------------------------------------------------------------------------

def test_grpc_allow_applies_ok_response(skiff_factory, backend, grpc_authz):
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [ext_authz_grpc_filter("ext_service")]))
    status, headers, body = request(skiff.listener_port(), "/app?x=1",
                                    headers={"x-remove-me": "1", "x-custom": "c", "authorization": "Bearer t"})
    assert status == 200, body
    got = echo(body)
    assert got["headers"]["x-authz-user"] == "alice"
    assert "x-remove-me" not in got["headers"]
    assert parse_qs(urlparse(got["path"]).query) == {"x": ["1"], "authz": ["1"]}
    assert headers["x-authz-resp"] == "ok"
    # The gRPC service sees every client header by default.
    seen = got["headers"]["x-authz-seen"].split(",")
    for name in ("x-custom", "authorization", "x-remove-me", ":path", ":method"):
        assert name in seen, seen
    assert prefix_stats(skiff, STATS)["ok"] == 1


def test_grpc_allowed_headers_limit_what_is_sent(skiff_factory, backend, grpc_authz):
    f = ext_authz_grpc_filter("ext_service", allowed_headers={"patterns": [{"exact": "x-custom"}]},
                              disallowed_headers={"patterns": [{"prefix": "x-secret"}]})
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    _, _, body = request(skiff.listener_port(), "/a", headers={"x-custom": "c", "x-other": "o",
                                                                "x-secret-token": "s"})
    seen = echo(body)["headers"]["x-authz-seen"].split(",")
    assert "x-custom" in seen
    assert "x-other" not in seen and "x-secret-token" not in seen


def test_grpc_deny_uses_the_servers_status_headers_and_body(skiff_factory, backend, grpc_authz):
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [ext_authz_grpc_filter("ext_service")]))
    status, headers, body = request(skiff.listener_port(), "/a", headers={"x-authz": "deny"})
    assert status == 401
    assert body == b"denied by grpc authz"
    assert headers["www-authenticate"] == 'Bearer realm="skiff"'
    assert headers["x-authz-denied"] == "yes"
    assert not backend.requests
    assert prefix_stats(skiff, STATS)["denied"] == 1


def test_grpc_deny_without_denied_response_is_403(skiff_factory, backend, grpc_authz):
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [ext_authz_grpc_filter("ext_service")]))
    status, _, _ = request(skiff.listener_port(), "/a", headers={"x-authz": "deny-default"})
    assert status == 403


@pytest.mark.parametrize("allow", [False, True])
def test_grpc_error_per_failure_mode_allow(skiff_factory, backend, grpc_authz, allow):
    f = ext_authz_grpc_filter("ext_service", failure_mode_allow=allow, failure_mode_allow_header_add=True)
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    status, _, body = request(skiff.listener_port(), "/a", headers={"x-authz": "error"})
    stats = prefix_stats(skiff, STATS)
    assert stats["error"] == 1
    if allow:
        assert status == 200
        assert echo(body)["headers"]["x-envoy-auth-failure-mode-allowed"] == "true"
        assert stats["failure_mode_allowed"] == 1
    else:
        assert status == 403  # status_on_error defaults to 403
        assert not backend.requests


def test_grpc_status_on_error(skiff_factory, backend):
    f = ext_authz_grpc_filter("ext_service", status_on_error={"code": 503})
    skiff = skiff_factory(proxy_config(backend.port, dead_port(), [f]))
    status, _, _ = request(skiff.listener_port(), "/a")
    assert status == 503


def test_grpc_timeout_is_an_error(skiff_factory, backend, grpc_authz):
    f = ext_authz_grpc_filter("ext_service", timeout="0.2s")
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    status, _, _ = request(skiff.listener_port(), "/a", headers={"x-authz": "slow"})
    assert status == 403
    assert prefix_stats(skiff, STATS)["error"] == 1


def test_grpc_with_request_body(skiff_factory, backend, grpc_authz):
    f = ext_authz_grpc_filter("ext_service", with_request_body={"max_request_bytes": 1024})
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    status, _, body = request(skiff.listener_port(), "/a", method="POST", body=b"payload")
    assert status == 200
    got = echo(body)
    assert got["headers"]["x-authz-body"] == "payload"
    assert got["body"] == "payload"
    status, _, _ = request(skiff.listener_port(), "/a", method="POST", body=b"x" * 2048)
    assert status == 413


def test_grpc_per_route_disabled_and_context_extensions(skiff_factory, backend, grpc_authz):
    routes = [
        {"match": {"prefix": "/public"}, "route": {"cluster": "backend"},
         "typed_per_filter_config": {"envoy.filters.http.ext_authz": {"@type": EXT_AUTHZ_PER_ROUTE,
                                                                      "disabled": True}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"},
         "typed_per_filter_config": {"envoy.filters.http.ext_authz": {
             "@type": EXT_AUTHZ_PER_ROUTE,
             "check_settings": {"context_extensions": {"tenant": "blue", "tier": "gold"}}}}},
    ]
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [ext_authz_grpc_filter("ext_service")],
                                       routes=routes))
    port = skiff.listener_port()
    status, _, body = request(port, "/public", headers={"x-authz": "deny"})
    assert status == 200
    assert "x-authz-user" not in echo(body)["headers"]
    assert grpc_authz.lines("check /public") == []
    _, _, body = request(port, "/private")
    assert echo(body)["headers"]["x-authz-context"] == "tenant=blue,tier=gold"


# ---- HTTP service --------------------------------------------------------------------------------------

def http_filter(**kw):
    return ext_authz_http_filter(
        "ext_service", path_prefix="/auth",
        authorization_request={"allowed_headers": {"patterns": [{"exact": "x-custom"}]},
                               "headers_to_add": [{"key": "x-from-proxy", "value": "skiff"}]},
        authorization_response={
            "allowed_upstream_headers": {"patterns": [{"exact": "x-authz-user"}]},
            "allowed_upstream_headers_to_append": {"patterns": [{"exact": "x-authz-append"}]},
            "allowed_client_headers": {"patterns": [{"exact": "x-authz-denied"}]},
            "allowed_client_headers_on_success": {"patterns": [{"exact": "x-authz-success"}]},
        }, **kw)


def test_http_allow_forwards_headers_as_configured(skiff_factory, backend, http_authz):
    skiff = skiff_factory(proxy_config(backend.port, http_authz.port, [http_filter()]))
    status, headers, body = request(skiff.listener_port(), "/app?q=1", method="POST", body=b"data",
                                    headers={"authorization": "Basic abc", "x-custom": "c", "x-other": "o",
                                             "x-remove-me": "1", "x-authz-append": "client"})
    assert status == 200, body
    # What the authorization server got: method, prefixed path, the default and allowed headers only.
    seen = http_authz.requests[-1]
    assert seen["method"] == "POST"
    assert seen["path"] == "/auth/app?q=1"
    assert seen["headers"]["authorization"] == "Basic abc"
    assert seen["headers"]["x-custom"] == "c"
    assert seen["headers"]["x-from-proxy"] == "skiff"
    assert "x-other" not in seen["headers"]
    assert seen["headers"]["content-length"] == "0" and seen["body"] == ""
    # What the upstream got.
    up = echo(body)
    assert up["headers"]["x-authz-user"] == "alice"
    assert "x-remove-me" not in up["headers"]
    assert "x-authz-private" not in up["headers"]
    assert up["body"] == "data"
    appended = [v for k, v in backend.requests[-1]["header_list"] if k == "x-authz-append"]
    assert ", ".join(appended) == "client, from-authz"
    # What the client got.
    assert headers["x-authz-success"] == "yes"
    assert prefix_stats(skiff, STATS)["ok"] == 1


def test_http_deny_passes_status_body_and_allowed_headers(skiff_factory, backend, http_authz):
    skiff = skiff_factory(proxy_config(backend.port, http_authz.port, [http_filter()]))
    status, headers, body = request(skiff.listener_port(), "/deny")
    assert status == 401
    assert body == b"denied by http authz"
    assert headers["x-authz-denied"] == "yes"
    assert headers["www-authenticate"] == 'Basic realm="skiff"'  # always allowed to the client
    assert "x-authz-secret" not in headers
    assert not backend.requests
    assert prefix_stats(skiff, STATS)["denied"] == 1


@pytest.mark.parametrize("allow", [False, True])
def test_http_5xx_is_an_error(skiff_factory, backend, http_authz, allow):
    skiff = skiff_factory(proxy_config(backend.port, http_authz.port, [http_filter(failure_mode_allow=allow)]))
    status, _, _ = request(skiff.listener_port(), "/error")
    assert status == (200 if allow else 403)
    assert prefix_stats(skiff, STATS)["error"] == 1


@pytest.mark.parametrize("allow", [False, True])
def test_http_service_down(skiff_factory, backend, allow):
    skiff = skiff_factory(proxy_config(backend.port, dead_port(), [http_filter(failure_mode_allow=allow)]))
    status, _, _ = request(skiff.listener_port(), "/a")
    assert status == (200 if allow else 403)


def test_http_timeout(skiff_factory, backend, http_authz):
    f = ext_authz_http_filter("ext_service", timeout="0.2s")
    skiff = skiff_factory(proxy_config(backend.port, http_authz.port, [f]))
    status, _, _ = request(skiff.listener_port(), "/slow")
    assert status == 403


def test_http_with_request_body(skiff_factory, backend, http_authz):
    skiff = skiff_factory(proxy_config(backend.port, http_authz.port,
                                       [http_filter(with_request_body={"max_request_bytes": 100})]))
    status, _, _ = request(skiff.listener_port(), "/a", method="POST", body=b"abc")
    assert status == 200
    seen = http_authz.requests[-1]
    assert seen["body"] == "abc"
    assert seen["headers"]["x-envoy-auth-partial-body"] == "false"


def test_http_without_allowed_headers_sends_only_defaults(skiff_factory, backend, http_authz):
    skiff = skiff_factory(proxy_config(backend.port, http_authz.port, [ext_authz_http_filter("ext_service")]))
    request(skiff.listener_port(), "/a", headers={"x-custom": "c", "authorization": "t"})
    seen = http_authz.requests[-1]["headers"]
    assert "x-custom" not in seen
    assert seen["authorization"] == "t"
    assert seen["host"]
