#pragma once

namespace skiff::config {

// References every generated .proto file of skiff_api so the static linker keeps them all and
// their descriptors are in the generated pool (an Any can name any of them). Returns the count.
// Defined in a file CMake generates from the proto list.
int linkAllApiTypes();

}  // namespace skiff::config
