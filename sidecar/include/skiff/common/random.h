// Fast per-thread randomness for load balancing, retry jitter and request ids (not for cryptography).
#pragma once

#include <cstdint>
#include <string>

namespace skiff {

// xoshiro256** seeded per thread from the OS.
uint64_t random64();
// A random (version 4, RFC 4122 variant) UUID in its 36-character text form.
std::string uuid4();

}  // namespace skiff
