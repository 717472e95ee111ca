"""EnvoyFilter manifests applied by skiff itself (issue 8, items 4 and 5): the seed's Wasm EnvoyFilter on a
sidecar labelled app: my-client (static listeners, LDS listeners replaced over xDS, re-read on file change),
a sidecar without the label left unchanged, a failing patch reported and not half-applied, invalid manifests
refused with the file/object/field, and the Lua fixture's effect in traffic. Skips without ../shared."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import SHARED, SKIFF_BIN
from helpers import CountingBackend, free_port, http_listener, request, static_cluster, wait_until

pytestmark = pytest.mark.skipif(not SHARED.exists(), reason="../shared is absent: no seed EnvoyFilter to apply")

SEED_FILTER = SHARED / "fixtures" / "seeds" / "wasm.envoyfilter.yaml"
FIXTURES = SHARED / "fixtures" / "envoyfilter"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def wasm_module(name="demo_filter"):
    build = Path(os.environ.get("SKIFF_BIN", "../../build/bin/skiff")).resolve().parent.parent
    path = build / "wasm" / f"{name}.wasm"
    if not path.exists():
        pytest.skip(f"wasm test module {path} not built (no clang-14/wasm-ld)")
    return path


def seed_filter(tmp_path, selector_app="my-client"):
    """The seed EnvoyFilter with only the module path (and optionally the selector) changed."""
    text = SEED_FILTER.read_text()
    text, n = re.subn(r"filename: /var/local/wasm/my-filter\.wasm", f"filename: {wasm_module()}", text)
    assert n == 1, "the seed changed"
    if selector_app != "my-client":
        text = text.replace("app: my-client", f"app: {selector_app}")
    path = tmp_path / "filters" / "wasm.envoyfilter.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def node(labels):
    return {"id": "sidecar~127.0.0.1~my-client.default~default.svc.cluster.local", "cluster": "my-client.default",
            "metadata": {"LABELS": labels, "NAMESPACE": "default", "ISTIO_VERSION": "1.20.0"}}


def two_hcm_config(backend_port, labels):
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    return {
        "node": node(labels),
        "static_resources": {
            "listeners": [http_listener("one", routes, http_filters=[ROUTER]),
                          http_listener("two", routes, http_filters=[{"name": "envoy.filters.http.router"}])],
            "clusters": [static_cluster("backend", backend_port)],
        },
    }


def config_dump(skiff):
    status, body = skiff.admin_get("/config_dump")
    assert status == 200
    return {c["@type"].rsplit(".", 1)[-1]: c for c in json.loads(body)["configs"]}


def static_http_filters(skiff):
    out = {}
    for entry in config_dump(skiff)["ListenersConfigDump"]["static_listeners"]:
        listener = entry["listener"]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        out[listener["name"]] = [f["name"] for f in hcm["http_filters"]]
    return out


def filter_status(skiff):
    meta = config_dump(skiff)["BootstrapConfigDump"]["bootstrap"]["node"]["metadata"]
    return {s["name"]: s for s in meta.get("SKIFF_ENVOY_FILTERS", [])}


def wasm_seen(port, backend, path="/"):
    """The demo filter's effects: x-proxy-wasm on the response, User-Agent rewritten to hello/world."""
    status, headers, _ = request(port, path, headers={"User-Agent": "curl/8"})
    assert status == 200
    return headers.get("x-proxy-wasm") == "my-wasm-filter" and \
        backend.headers[path]["user-agent"] in ("hello", "world")


def test_seed_filter_before_router_in_every_hcm(tmp_path, skiff_factory):
    backend = CountingBackend()
    try:
        path = seed_filter(tmp_path)
        skiff = skiff_factory(two_hcm_config(backend.port, {"app": "my-client", "version": "v1"}),
                              args=["--envoy-filters", str(path)])
        assert static_http_filters(skiff) == {
            "one": ["my-wasm-filter", "envoy.filters.http.router"],
            "two": ["my-wasm-filter", "envoy.filters.http.router"]}
        for name in ("one", "two"):
            assert wasm_seen(skiff.listener_port(name), backend, f"/{name}")
        assert "replaced header User-Agent with" in skiff.logs
        stats = skiff.stats()
        assert stats["envoy_filter.my-wasm-filter.applied"] == 2
        assert stats.get("envoy_filter.patch_failed", 0) == 0
        assert filter_status(skiff)["my-wasm-filter"]["state"] == "applied"
    finally:
        backend.close()


def test_sidecar_without_the_label_is_unchanged(tmp_path, skiff_factory):
    backend = CountingBackend()
    try:
        path = seed_filter(tmp_path)
        skiff = skiff_factory(two_hcm_config(backend.port, {"app": "other"}), args=["--envoy-filters", str(path)])
        assert static_http_filters(skiff) == {"one": ["envoy.filters.http.router"],
                                              "two": ["envoy.filters.http.router"]}
        assert not wasm_seen(skiff.listener_port("one"), backend)
        assert backend.headers["/"]["user-agent"] == "curl/8"
        status = filter_status(skiff)["my-wasm-filter"]
        assert status["state"] == "not_selected" and "app=my-client" in status["reason"]
    finally:
        backend.close()


def test_bootstrap_runtime_key_and_json_labels(tmp_path, skiff_factory):
    """The bootstrap option (runtime key skiff.envoy_filters) and ISTIO_META_LABELS-style JSON labels."""
    backend = CountingBackend()
    try:
        path = seed_filter(tmp_path)
        config = two_hcm_config(backend.port, json.dumps({"app": "my-client"}))
        config["layered_runtime"] = {"layers": [{"name": "skiff", "static_layer": {
            "skiff.envoy_filters": str(path.parent)}}]}  # a directory
        skiff = skiff_factory(config)
        assert wasm_seen(skiff.listener_port("one"), backend)
    finally:
        backend.close()


def test_reread_on_change_replaces_listeners(tmp_path, skiff_factory):
    backend = CountingBackend()
    try:
        path = seed_filter(tmp_path, selector_app="nobody")
        skiff = skiff_factory(two_hcm_config(backend.port, {"app": "my-client"}),
                              args=["--envoy-filters", str(path), "--drain-time-s", "1"])
        port = skiff.listener_port("one")
        assert not wasm_seen(port, backend)
        seed_filter(tmp_path)  # now selects this sidecar
        assert wait_until(lambda: wasm_seen(port, backend), timeout=10)
        assert skiff.stats()["listener_manager.listener_modified"] >= 2  # both listeners replaced (drained)
        assert static_http_filters(skiff)["one"] == ["my-wasm-filter", "envoy.filters.http.router"]
        assert skiff.stats()["envoy_filter.reload_success"] == 1

        # A broken file is reported and the running set stays.
        path.write_text("apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: bad}\n"
                        "spec:\n  configPatches:\n  - applyTo: NOPE\n")
        assert wait_until(lambda: skiff.stats().get("envoy_filter.reload_failure", 0) == 1)
        assert "spec.configPatches[0].applyTo: unknown value 'NOPE'" in skiff.logs
        assert wasm_seen(port, backend)
    finally:
        backend.close()


def test_failing_patch_is_reported_and_not_half_applied(tmp_path, skiff_factory):
    backend = CountingBackend()
    try:
        path = tmp_path / "half.yaml"
        # The first patch would insert a Lua filter; the second cannot merge (type mismatch): neither applies.
        path.write_text("""apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: half, namespace: default}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, inline_code: "function envoy_on_request(h) h:headers():add('x-half', '1') end"}
  - applyTo: NETWORK_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}
    patch:
      operation: MERGE
      value:
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: x}
""")
        skiff = skiff_factory(two_hcm_config(backend.port, {"app": "my-client"}), args=["--envoy-filters", str(path)])
        assert static_http_filters(skiff)["one"] == ["envoy.filters.http.router"]
        request(skiff.listener_port("one"), "/")
        assert "x-half" not in backend.headers["/"]
        stats = skiff.stats()
        assert stats["envoy_filter.default.half.patch_failed"] == 2  # one per listener
        assert stats["envoy_filter.patch_failed"] == 2
        status = filter_status(skiff)["half"]
        assert status["state"] == "failed" and "spec.configPatches[1]" in status["reason"]
        assert "envoy_filter: 'default/half' not applied to" in skiff.logs
    finally:
        backend.close()


def test_patched_listener_the_proxy_rejects_is_served_unpatched(tmp_path, skiff_factory):
    backend = CountingBackend()
    try:
        path = tmp_path / "unknown.yaml"
        path.write_text("""apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: unknown-filter}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {listener: {name: one}}
    patch:
      operation: INSERT_FIRST
      value: {name: acme.filter, typed_config: {"@type": type.googleapis.com/acme.filters.Unknown, knob: 1}}
""")
        skiff = skiff_factory(two_hcm_config(backend.port, {"app": "my-client"}), args=["--envoy-filters", str(path)])
        assert static_http_filters(skiff)["one"] == ["envoy.filters.http.router"]
        assert request(skiff.listener_port("one"), "/")[0] == 200
        status = filter_status(skiff)["unknown-filter"]
        assert status["state"] == "failed" and "the patched config was rejected" in status["reason"]
        assert skiff.stats()["envoy_filter.unknown-filter.patch_failed"] == 1
    finally:
        backend.close()


def test_invalid_manifest_names_file_object_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f, namespace: ns}\n"
                   "spec:\n  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: MERGE}\n")
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps({"static_resources": {}}))
    proc = subprocess.run([str(SKIFF_BIN), "--mode", "validate", "-c", str(config), "--envoy-filters", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert f"{bad}: EnvoyFilter 'ns/f': spec.configPatches[0].patch.value: is required" in proc.stdout + proc.stderr


def test_fixture_lua_filter_runs(tmp_path, skiff_factory):
    """envoyfilter-without-service.configs.yaml (a multi-kind stream): its Lua filter logs on every request."""
    backend = CountingBackend()
    try:
        skiff = skiff_factory(two_hcm_config(backend.port, {"app": "envoyfilter-test-app"}),
                              args=["--envoy-filters", str(FIXTURES / "envoyfilter-without-service.configs.yaml")])
        assert static_http_filters(skiff)["one"] == ["envoy.lua", "envoy.filters.http.router"]
        assert request(skiff.listener_port("one"), "/")[0] == 200
        assert wait_until(lambda: "Hello World" in skiff.logs)
        assert filter_status(skiff)["test-lua"]["state"] == "applied"
    finally:
        backend.close()



# ---- xDS: LDS listeners and RDS route configs are patched as they arrive ------------------------------

from test_xds import lds_config, lds_listener, lds_snapshot, load, xds_server  # noqa: E402,F401
from test_xds_server import SERVER  # noqa: E402


def xds_seen(port, tag):
    """The LDS listener `tag` serves, with the seed's Wasm filter in front of its router."""
    status, headers, body = request(port, "/headers", headers={"User-Agent": "curl/8"})
    if status != 200:
        return False
    user_agent = json.loads(body)["headers"].get("User-Agent")
    return headers.get("x-listener-tag") == tag and headers.get("x-proxy-wasm") == "my-wasm-filter" and \
        user_agent in ("hello", "world")


@pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")
def test_keeps_applying_after_xds_replaces_the_listener(xds_server, httpbin, skiff_factory, tmp_path):
    path = seed_filter(tmp_path)
    port = free_port()
    load(xds_server, tmp_path / "v1.json", lds_snapshot(httpbin, [lds_listener(port, tag="a")]))
    config = lds_config(xds_server.port, False)
    config["node"]["metadata"] = {"LABELS": {"app": "my-client"}}
    skiff = skiff_factory(config, args=["--envoy-filters", str(path)])
    assert wait_until(lambda: xds_seen(port, "a"))
    load(xds_server, tmp_path / "v2.json", json.dumps({"listeners": [lds_listener(port, tag="b")]}), "push")
    assert wait_until(lambda: xds_seen(port, "b"))
    stats = skiff.stats()
    assert stats["listener_manager.listener_modified"] == 1
    assert stats["envoy_filter.my-wasm-filter.applied"] == 2


@pytest.mark.skipif(not SERVER.exists(), reason=f"build skiff-xds-server first ({SERVER})")
def test_rds_and_cds_resources_are_patched(xds_server, httpbin, skiff_factory, tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("""apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: route-headers}
spec:
  configPatches:
  - applyTo: ROUTE_CONFIGURATION
    match: {routeConfiguration: {name: local_route}}
    patch:
      operation: MERGE
      value: {response_headers_to_add: [{header: {key: x-envoy-filter, value: rds}}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: cluster-tweak}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {name: httpbin}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
""")
    port = free_port()
    load(xds_server, tmp_path / "v1.json", lds_snapshot(httpbin, [lds_listener(port)]))
    skiff = skiff_factory(lds_config(xds_server.port, False), args=["--envoy-filters", str(path)])
    status, headers, _ = request(port, "/get")
    assert status == 200 and headers.get("x-route-tag") == "v1" and headers.get("x-envoy-filter") == "rds"
    stats = skiff.stats()
    assert stats["envoy_filter.route-headers.applied"] >= 1
    assert stats["envoy_filter.cluster-tweak.applied"] >= 1  # the CDS cluster went through the hook
