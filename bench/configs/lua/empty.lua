-- Lua memory probe: handlers that do nothing, so the state holds little beyond the runtime itself.
-- (A file with no functions at all would do too, but then no request ever runs Lua and the filter
-- never refreshes its memory_bytes gauge, which would stay 0.)
function envoy_on_request(request_handle)
end
