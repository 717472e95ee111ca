"""runtime_fraction draws one value per stream (Envoy uses the stream id): a request routed again after a
Lua header edit (clear_route_cache) lands on the same side of the fraction as its first match."""

from helpers import bootstrap, http_listener, request

LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"

# routeName() routes the request; the edit of x-tenant (read by a route) makes it route again.
SCRIPT = """
function envoy_on_request(h)
  h:streamInfo():dynamicMetadata():set("fix", "first", h:streamInfo():routeName())
  h:headers():add("x-tenant", "t")
end
function envoy_on_response(h)
  local md = h:streamInfo():dynamicMetadata():get("fix")
  h:headers():add("x-first", md and md["first"] or "none")
end
"""


def test_fraction_does_not_reroll_on_rematch(skiff_factory):
    routes = [
        {"name": "t", "match": {"prefix": "/never", "headers": [{"name": "x-tenant", "present_match": True}]},
         "direct_response": {"status": 200, "body": {"inline_string": "t"}}},
        {"name": "a", "match": {"prefix": "/", "runtime_fraction": {
            "default_value": {"numerator": 50, "denominator": "HUNDRED"}, "runtime_key": "fix.a"}},
         "direct_response": {"status": 200, "body": {"inline_string": "a"}}},
        {"name": "b", "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "b"}}},
    ]
    lua = {"name": "envoy.filters.http.lua",
           "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": SCRIPT}}}
    skiff = skiff_factory(bootstrap([http_listener("frac", routes, http_filters=[
        lua, {"name": "envoy.filters.http.router"}])], []), concurrency=1)
    port = skiff.listener_port("frac")
    seen = set()
    for i in range(40):
        status, headers, body = request(port, "/r%d" % i)
        assert status == 200, body
        first = {k.lower(): v for k, v in headers.items()}.get("x-first")
        assert first == body.decode(), (i, first, body)
        seen.add(first)
    assert seen == {"a", "b"}  # the fraction still splits (fails with probability 2^-39)
