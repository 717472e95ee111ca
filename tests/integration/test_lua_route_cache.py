"""Lua header edits and the route cache (Lua.clear_route_cache, Envoy's default true): a change to :path or
to a header a route matches on makes the request route again; an edit of any other header keeps the route
(Skiff skips the re-match then, since it cannot change the outcome)."""

from helpers import CountingBackend, bootstrap, http_listener, request, static_cluster

LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"

SCRIPT = """
function envoy_on_request(h)
  local hs = h:headers()
  local action = hs:get("x-action")
  if action == "path" then
    hs:replace(":path", "/moved")
  elseif action == "tenant" then
    hs:add("x-tenant", "blue")
  elseif action == "other-then-path" then
    hs:add("x-noise", "1")
    hs:replace(":path", "/moved")
    hs:add("x-more-noise", "1")
  elseif action == "remove-tenant" then
    hs:remove("x-tenant")
  end
  hs:add("x-lua-added", "1")
end
"""


def routes():
    return [
        {"match": {"prefix": "/moved"}, "route": {"cluster": "b"}},
        {"match": {"prefix": "/", "headers": [{"name": "x-tenant", "string_match": {"exact": "blue"}}]},
         "route": {"cluster": "b"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "a"}},
    ]


def test_lua_header_edits_reroute_only_when_routing_inputs_change(skiff_factory):
    a, b = CountingBackend(), CountingBackend()
    try:
        filters = [{"name": "envoy.filters.http.lua",
                    "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": SCRIPT}}},
                   {"name": "envoy.filters.http.router"}]
        cfg = bootstrap([http_listener("lua_rc", routes(), http_filters=filters)],
                        [static_cluster("a", a.port), static_cluster("b", b.port)])
        port = skiff_factory(cfg).listener_port()

        # No routing input changed: the first route stands (cluster a), the added header goes along.
        status, _, _ = request(port, "/plain", headers={"x-action": "none"})
        assert status == 200
        assert a.hits == {"/plain": 1} and b.hits == {}
        assert a.headers["/plain"]["x-lua-added"] == "1"

        # :path changed by the script: routed again, to the /moved route.
        status, _, _ = request(port, "/orig", headers={"x-action": "path"})
        assert status == 200
        assert b.hits == {"/moved": 1}

        # A header a route matches on was added: routed again, to the header route.
        status, _, _ = request(port, "/t", headers={"x-action": "tenant"})
        assert status == 200
        assert b.hits.get("/t") == 1
        assert b.headers["/t"]["x-tenant"] == "blue"

        # Edits of other headers around a :path change do not hide it.
        status, _, _ = request(port, "/orig2", headers={"x-action": "other-then-path"})
        assert status == 200
        assert b.hits["/moved"] == 2

        # The matched header removed by the script: back to the catch-all route.
        status, _, _ = request(port, "/r", headers={"x-action": "remove-tenant", "x-tenant": "blue"})
        assert status == 200
        assert a.hits.get("/r") == 1 and "/r" not in b.hits
    finally:
        a.close()
        b.close()
