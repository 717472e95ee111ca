"""Lua's streamInfo():dynamicMetadata() is the stream's dynamic metadata that ext_authz and ext_proc use:
what Lua sets reaches ext_authz's metadata_context and ext_proc's forwarding_namespaces, and Lua reads what
ext_authz's CheckResponse.dynamic_metadata wrote (values converted to and from google.protobuf.Value)."""

import json

import pytest

from ext_helpers import (EchoBackend, ServerProcess, built_binary, ext_authz_grpc_filter, ext_proc_filter,
                         proxy_config)
from helpers import request

LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
MD_NS = "envoy.filters.http.ext_authz"


def lua(name, code):
    return {"name": name, "typed_config": {"@type": LUA_TYPE, "default_source_code": {"inline_string": code}}}


@pytest.fixture
def backend():
    b = EchoBackend()
    yield b
    b.close()


def server(skiff_bin, tmp_path, name, args=()):
    binary = built_binary(skiff_bin, name)
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    return ServerProcess(binary, tmp_path, list(args))


SET = lua("lua-set", """
function envoy_on_request(h)
  local dm = h:streamInfo():dynamicMetadata()
  dm:set("envoy.filters.http.ext_authz", "checks", 41)
  dm:set("lua.ns", "k", "v")
  dm:set("lua.nested", "t", {list = {1, "two", true}, inner = {flag = false}})
end
""")

READ = lua("lua-read", """
function envoy_on_request(h)
  local dm = h:streamInfo():dynamicMetadata()
  local authz = dm:get("envoy.filters.http.ext_authz")
  h:headers():add("x-lua-user", authz and tostring(authz.user) or "none")
  h:headers():add("x-lua-checks", authz and tostring(authz.checks) or "none")
  local t = dm:get("lua.nested").t
  h:headers():add("x-lua-nested", #t.list .. "," .. t.list[2] .. "," .. tostring(t.list[3]) .. ","
                  .. tostring(t.inner.flag))
  local names = {}
  for name, _ in pairs(dm) do names[#names + 1] = name end
  table.sort(names)
  h:headers():add("x-lua-namespaces", table.concat(names, ","))
  local ok, err = pcall(function() dm:set("bad", "f", function() end) end)
  h:headers():add("x-lua-bad", ok and "accepted" or "refused")
end
""")


def test_lua_metadata_round_trips_through_ext_authz(skiff_factory, backend, skiff_bin, tmp_path):
    authz = server(skiff_bin, tmp_path, "skiff-ext-authz-test-server")
    try:
        f = ext_authz_grpc_filter("ext_service", metadata_context_namespaces=[MD_NS])
        skiff = skiff_factory(proxy_config(backend.port, authz.port, [SET, f, READ]))
        status, _, body = request(skiff.listener_port(), "/md")
        assert status == 200, body
        headers = json.loads(body)["headers"]
        # ext_authz got Lua's checks=41 as metadata_context ...
        assert headers["x-authz-md-checks"] == "41"
        # ... and Lua reads the CheckResponse's dynamic_metadata (merged over its own key).
        assert headers["x-lua-user"] == "alice"
        assert headers["x-lua-checks"] == "42"
        assert headers["x-lua-nested"] == "3,two,true,false"
        assert headers["x-lua-namespaces"] == "envoy.filters.http.ext_authz,lua.nested,lua.ns"
        assert headers["x-lua-bad"] == "refused"
    finally:
        authz.stop()


def test_lua_metadata_is_forwarded_by_ext_proc(skiff_factory, backend, skiff_bin, tmp_path):
    proc = server(skiff_bin, tmp_path, "skiff-ext-proc-test-server", ["--mode", "metadata"])
    try:
        f = ext_proc_filter("ext_service", {"response_header_mode": "SKIP"},
                            metadata_options={"forwarding_namespaces": {"untyped": ["lua.ns"]}})
        skiff = skiff_factory(proxy_config(backend.port, proc.port, [SET, f]))
        status, _, body = request(skiff.listener_port(), "/md")
        assert status == 200, body
        assert json.loads(body)["headers"]["x-ext-md"] == "lua.ns.k=v"
    finally:
        proc.stop()
