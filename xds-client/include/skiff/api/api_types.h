// Keeps every Envoy API type of skiff_api linked into the binary (target skiff_api_types).
#pragma once

namespace skiff::api {

// References every generated .proto file of skiff_api so the static linker keeps them all and their
// descriptors are in the generated pool (an Any can name any of them, even one no code refers to).
// Returns the count. Defined in a file CMake generates from the proto list.
int linkAllApiTypes();

}  // namespace skiff::api
