"""proxy_call_foreign_function through the HTTP Wasm filter (foreign_filter.wasm): compress + uncompress
round-trip inside a request, and clear_route_cache after the plugin rewrote :path — the request is routed
again for the new path (as it is without it: a plugin's request-header change clears the route cache, as
in Envoy for ABI 0.2.1 and older)."""

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster
from test_wasm import WASM_TYPE, module


def foreign_listener(name):
    wasm = {"name": "envoy.filters.http.wasm", "typed_config": {"@type": WASM_TYPE, "config": {
        "name": "foreign", "vm_config": {"vm_id": "foreign", "runtime": "envoy.wasm.runtime.v8",
                                         "code": {"local": {"filename": str(module("foreign_filter"))}}}}}}
    routes = [{"match": {"prefix": "/new"}, "route": {"cluster": "backend"}},
              {"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "old"}}}]
    # A Lua filter first: it looks up its per-route config, so the route is chosen before the plugin runs.
    lua = {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": "function envoy_on_request(h) end"}}}
    return http_listener(name, routes, http_filters=[lua, wasm, {"name": "envoy.filters.http.router"}])


def test_clear_route_cache_reroutes_and_compress_round_trips(skiff_factory):
    backend = CountingBackend()
    try:
        skiff = skiff_factory(bootstrap([foreign_listener("foreign")], [static_cluster("backend", backend.port)]),
                              concurrency=1)
        port = skiff.listener_port("foreign")
        status, _, body = request(port, "/start", headers={"x-reroute": "/new/a"})
        assert status == 200, body
        assert backend.hits.get("/new/a") == 1, backend.hits
        assert backend.headers["/new/a"]["x-foreign"] == "ok"  # compress → uncompress gave the text back
        # The same rewrite without clear_route_cache: routed again all the same, since Envoy clears the
        # route cache on every request-header change by a plugin of ABI 0.2.1 or older.
        status, _, body = request(port, "/start", headers={"x-rewrite-only": "/new/b"})
        assert status == 200, body
        assert backend.hits.get("/new/b") == 1, backend.hits
    finally:
        backend.close()
