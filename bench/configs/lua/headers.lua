-- Target skiff-lua: the smallest useful script, one header added in each direction.
function envoy_on_request(request_handle)
  request_handle:headers():add("x-bench-lua", "1")
end

function envoy_on_response(response_handle)
  response_handle:headers():add("x-bench-lua", "1")
end
