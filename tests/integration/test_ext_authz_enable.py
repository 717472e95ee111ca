"""ext_authz: filter_enabled (RuntimeFractionalPercent default), filter_enabled_metadata, deny_at_disable,
dynamic metadata (ingested from the CheckResponse, forwarded with metadata_context_namespaces) and Envoy's
stats under cluster.<route target cluster>.ext_authz[.<stat_prefix>]."""

import json
import subprocess

import pytest

from ext_helpers import (EchoBackend, ServerProcess, ext_authz_grpc_filter, prefix_stats, proxy_config,
                         built_binary)
from helpers import request

STATS = "http.ingress.ext_authz."
MD_NS = "envoy.filters.http.ext_authz"


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


def named(f, name, stat_prefix=None):
    f = dict(f, name=name)
    if stat_prefix:
        f["typed_config"] = dict(f["typed_config"], stat_prefix=stat_prefix)
    return f


def test_filter_enabled_zero_skips_the_check(skiff_factory, backend, grpc_authz):
    f = ext_authz_grpc_filter("ext_service", filter_enabled={"default_value": {"numerator": 0}})
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    # The server would deny this one; disabled, the request goes through unchecked.
    status, _, body = request(skiff.listener_port(), "/a", headers={"x-authz": "deny"})
    assert status == 200, body
    assert grpc_authz.lines("check /a") == []
    stats = prefix_stats(skiff, STATS)
    assert stats["disabled"] == 1
    assert stats.get("ok", 0) == 0 and stats.get("denied", 0) == 0


def test_filter_enabled_full_checks_every_request(skiff_factory, backend, grpc_authz):
    f = ext_authz_grpc_filter("ext_service",
                              filter_enabled={"default_value": {"numerator": 10000, "denominator": "TEN_THOUSAND"}})
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    for _ in range(5):
        status, _, _ = request(skiff.listener_port(), "/a", headers={"x-authz": "deny"})
        assert status == 401
    assert prefix_stats(skiff, STATS)["denied"] == 5


def test_filter_enabled_fraction_samples(skiff_factory, backend, grpc_authz):
    f = ext_authz_grpc_filter("ext_service", filter_enabled={"default_value": {"numerator": 50}})
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    for _ in range(60):
        request(skiff.listener_port(), "/a")
    stats = prefix_stats(skiff, STATS)
    # 60 draws at 50 %: both outcomes happen (the chance of all-one-side is 2 * 2^-60).
    assert stats["disabled"] > 0 and stats["ok"] > 0
    assert stats["disabled"] + stats["ok"] == 60


def test_deny_at_disable_answers_status_on_error(skiff_factory, backend, grpc_authz):
    f = ext_authz_grpc_filter("ext_service", filter_enabled={"default_value": {"numerator": 0}},
                              deny_at_disable={"default_value": True}, status_on_error={"code": 418})
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [f]))
    status, _, _ = request(skiff.listener_port(), "/a")
    assert status == 418
    assert not backend.requests
    assert grpc_authz.lines("check /a") == []
    assert prefix_stats(skiff, STATS)["disabled"] == 1


def test_filter_enabled_metadata_and_metadata_context(skiff_factory, backend, grpc_authz):
    """The first filter's CheckResponse.dynamic_metadata (user=alice, checks=1) lands in the stream's dynamic
    metadata; the second filter is enabled only by a matcher on it and forwards it as metadata_context."""
    first = named(ext_authz_grpc_filter("ext_service"), "authz-first", "first")
    match_alice = {"filter": MD_NS, "path": [{"key": "user"}], "value": {"string_match": {"exact": "alice"}}}
    second = named(ext_authz_grpc_filter("ext_service", filter_enabled_metadata=match_alice,
                                         metadata_context_namespaces=[MD_NS]), "authz-second", "second")
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [first, second]))
    status, _, body = request(skiff.listener_port(), "/a")
    assert status == 200, body
    got = json.loads(body)
    assert got["headers"]["x-authz-md-checks"] == "1"  # the second check saw the first one's metadata
    assert len(grpc_authz.lines("check /a")) == 2
    assert prefix_stats(skiff, STATS + "second.")["ok"] == 1

    match_bob = dict(match_alice, value={"string_match": {"exact": "bob"}})
    second = named(ext_authz_grpc_filter("ext_service", filter_enabled_metadata=match_bob,
                                         deny_at_disable={"default_value": True}), "authz-second", "second")
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [first, second]))
    status, _, _ = request(skiff.listener_port(), "/b")
    assert status == 403
    assert prefix_stats(skiff, STATS + "second.")["disabled"] == 1
    # Without any metadata (no first filter) an inverted matcher enables the check.
    absent = {"filter": MD_NS, "path": [{"key": "user"}], "value": {"present_match": True}, "invert": True}
    only = named(ext_authz_grpc_filter("ext_service", filter_enabled_metadata=absent), "authz-only", "only")
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [only]))
    status, _, body = request(skiff.listener_port(), "/c")
    assert status == 200
    assert json.loads(body)["headers"]["x-authz-md-checks"] == "0"
    assert prefix_stats(skiff, STATS + "only.")["ok"] == 1


def test_cluster_stats_of_the_route_target(skiff_factory, backend, grpc_authz):
    plain = ext_authz_grpc_filter("ext_service", failure_mode_allow=True)
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [plain]))
    port = skiff.listener_port()
    request(port, "/a")
    request(port, "/a", headers={"x-authz": "deny"})
    request(port, "/a", headers={"x-authz": "error"})
    stats = prefix_stats(skiff, "cluster.backend.ext_authz.")
    assert stats["ok"] == 1
    assert stats["denied"] == 1
    assert stats["error"] == 1
    assert stats["failure_mode_allowed"] == 1
    assert "disabled" not in stats  # Envoy keeps "disabled" at the filter level only
    # The side calls themselves, per gRPC method of the authorization cluster.
    calls = prefix_stats(skiff, "cluster.ext_service.grpc.envoy.service.auth.v3.Authorization.Check.")
    assert calls["total"] == 3 and calls["success"] == 2 and calls["failure"] == 1, calls
    assert calls["0"] == 2 and calls["14"] == 1, calls
    assert calls["request_message_count"] == 3 and calls["response_message_count"] == 2, calls

    prefixed = named(ext_authz_grpc_filter("ext_service"), "envoy.filters.http.ext_authz", "p")
    skiff = skiff_factory(proxy_config(backend.port, grpc_authz.port, [prefixed]))
    request(skiff.listener_port(), "/a")
    assert prefix_stats(skiff, "cluster.backend.ext_authz.p.")["ok"] == 1
    assert prefix_stats(skiff, STATS + "p.")["ok"] == 1


@pytest.mark.parametrize("bad", [
    {"filter_enabled": {"default_value": {"numerator": 1, "denominator": 7}}},
    {"filter_enabled_metadata": {"filter": MD_NS, "path": [{"key": "user"}]}},
    {"deny_at_disable": {"runtime_key": "x"}},
])
def test_bad_enable_settings_are_config_errors(skiff_bin, backend, bad, tmp_path):
    cfg = proxy_config(backend.port, 1, [ext_authz_grpc_filter("ext_service", **bad)])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run([str(skiff_bin), "--mode", "validate", "-c", str(path)], capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"ext_authz" in r.stdout + r.stderr
