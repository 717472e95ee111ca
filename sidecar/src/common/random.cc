// Per-thread xoshiro256** generator and UUIDv4 formatting.
#include "skiff/common/random.h"

#include <sys/random.h>

#include <chrono>
#include <thread>

namespace skiff {
namespace {

struct Xoshiro {
  uint64_t s[4];
  Xoshiro() {
    if (getrandom(s, sizeof(s), 0) != sizeof(s)) {
      uint64_t seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                      std::hash<std::thread::id>{}(std::this_thread::get_id());
      for (auto& word : s) {  // splitmix64
        seed += 0x9e3779b97f4a7c15ULL;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        word = z ^ (z >> 31);
      }
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

thread_local Xoshiro t_rng;

}  // namespace

uint64_t random64() {
  return t_rng.next();
}

std::string uuid4() {
  uint64_t hi = random64();
  uint64_t lo = random64();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) ++pos;
    const uint64_t word = i < 16 ? hi : lo;
    const int shift = 60 - 4 * (i % 16);
    out[pos++] = kHex[(word >> shift) & 0xf];
  }
  return out;
}

}  // namespace skiff
