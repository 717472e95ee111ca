// proxy_call_foreign_function from the foreign_filter module: Envoy's names and argument messages, the
// result codes for unknown names and bad arguments, and bounds checks on the result pointers.
#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

#include "skiff/stats/stats.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

constexpr uint32_t kOob = 0xFFFFFF00u;

// Protobuf wire format, enough for the argument messages.
std::string varint(uint64_t v) {
  std::string out;
  do {
    uint8_t b = v & 0x7F;
    v >>= 7;
    if (v) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (v);
  return out;
}
std::string bytesField(uint32_t number, std::string_view value) {
  return varint(number << 3 | 2) + varint(value.size()) + std::string(value);
}
std::string varintField(uint32_t number, uint64_t value) {
  return varint(number << 3) + varint(value);
}

class CountingStream : public testing::FakeStreamContext {
 public:
  void clearRouteCache() override { ++route_cache_cleared; }
  int route_cache_cleared = 0;
};

class ForeignFunctionTest : public ::testing::Test {
 protected:
  ForeignFunctionTest() : store(2) {}
  void SetUp() override {
    code = testing::readModule("foreign_filter");
    if (code.empty()) GTEST_SKIP() << "wasm test module foreign_filter not built (no clang-14/wasm-ld)";
    auto spec = std::make_shared<PluginSpec>();
    spec->name = "foreign";
    spec->root_id = "root";
    spec->vm_id = "vm-foreign";
    spec->code = code;
    std::string error;
    plugin = PluginVm::create(spec, &store, nullptr, &error);
    ASSERT_TRUE(plugin) << error;
  }
  uint32_t put(std::string_view s) { return skiff::wasm::testing::putGuestString(*plugin, s); }
  uint32_t call(std::string_view name, std::initializer_list<uint32_t> args) {
    auto r = plugin->callForTest(&stream, name, args);
    EXPECT_TRUE(r.has_value()) << name << ": " << plugin->vm().error();
    return r.value_or(0xdead);
  }
  // foreign(name, args) → result code; the result bytes in out().
  uint32_t foreign(std::string_view name, std::string_view args) {
    const uint32_t n = put(name), a = put(args);
    return call("t_foreign", {n, static_cast<uint32_t>(name.size()), a, static_cast<uint32_t>(args.size())});
  }
  std::string out() {
    const uint32_t p = *plugin->vm().callByName("t_out", {});
    const uint32_t n = *plugin->vm().callByName("t_out_len", {});
    return std::string(*plugin->vm().view(p, n));
  }

  stats::Store store;
  std::string code;
  std::unique_ptr<PluginVm> plugin;
  CountingStream stream;
};

TEST_F(ForeignFunctionTest, CompressAndUncompressAreZlib) {
  const std::string text(5000, 'a');
  ASSERT_EQ(foreign("compress", text), 0u);
  const std::string packed = out();
  ASSERT_LT(packed.size(), text.size());
  // zlib's format: the host's uncompress() reads it back.
  std::string plain(text.size(), '\0');
  uLongf n = plain.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(plain.data()), &n,
                       reinterpret_cast<const Bytef*>(packed.data()), packed.size()),
            Z_OK);
  EXPECT_EQ(plain.substr(0, n), text);
  // And back through the guest: the output grows past the first estimate (2 × input + 2).
  ASSERT_EQ(foreign("uncompress", packed), 0u);
  EXPECT_EQ(out(), text);
  ASSERT_EQ(foreign("compress", ""), 0u);
  ASSERT_EQ(foreign("uncompress", out()), 0u);
  EXPECT_EQ(out(), "");
  EXPECT_EQ(foreign("uncompress", "definitely not zlib"), 3u);  // SerializationFailure
  EXPECT_EQ(foreign("uncompress", packed.substr(0, packed.size() / 2)), 3u);
}

// Output much larger than the input streams into a growing buffer; past 64 MiB it is refused.
TEST_F(ForeignFunctionTest, UncompressGrowsToTheCapAndNoFurther) {
  const std::string big(8u << 20, 'z');
  ASSERT_EQ(foreign("compress", big), 0u);
  const std::string packed = out();
  ASSERT_EQ(foreign("uncompress", packed), 0u);  // (the test guest keeps only the first 64 KiB of a result)
  const std::string head = out();
  EXPECT_FALSE(head.empty());
  EXPECT_TRUE(head == big.substr(0, head.size()));
  const std::string bomb((64u << 20) + 1, '\0');
  ASSERT_EQ(foreign("compress", bomb), 0u);
  EXPECT_EQ(foreign("uncompress", out()), 3u);  // SerializationFailure
}

TEST_F(ForeignFunctionTest, UnknownNameIsNotFound) {
  EXPECT_EQ(foreign("no_such_function", "x"), 1u);
  EXPECT_EQ(foreign("expr_create", "1 + 1"), 1u);  // CEL is not built in
  EXPECT_EQ(foreign("", ""), 1u);
}

TEST_F(ForeignFunctionTest, PointersAreBoundsChecked) {
  const uint32_t name = put("compress"), args = put("abc");
  EXPECT_EQ(call("t_foreign", {kOob, 8, args, 3}), 6u);
  EXPECT_EQ(call("t_foreign", {name, 8, kOob, 3}), 6u);
  EXPECT_EQ(call("t_foreign", {name, 8, args, 0xFFFFFFFFu}), 6u);
  EXPECT_EQ(call("t_foreign_raw", {name, 8, args, 3, kOob, kOob}), 6u);
  EXPECT_EQ(call("t_foreign_raw", {name, 8, args, 3, 0, kOob}), 6u);
  // No result wanted (both pointers 0): fine, nothing is written.
  EXPECT_EQ(call("t_foreign_raw", {name, 8, args, 3, 0, 0}), 0u);
}

TEST_F(ForeignFunctionTest, DeclarePropertyReadOnlyIsSetOnce) {
  const std::string declare = bytesField(1, "my_prop") + varintField(2, 1) + varintField(3, 1) +
                              bytesField(4, "") + varintField(5, 1);
  ASSERT_EQ(foreign("declare_property", declare), 0u);
  EXPECT_EQ(foreign("declare_property", declare), 2u);  // declared before: BadArgument (Envoy)
  const uint32_t path = put("my_prop"), v1 = put("one"), v2 = put("two");
  EXPECT_EQ(call("t_set_property", {path, 7, v1, 3}), 0u);
  EXPECT_EQ(call("t_set_property", {path, 7, v2, 3}), 2u);  // read-only: once
  EXPECT_EQ(call("t_get_property", {path, 7}), 0u);
  EXPECT_EQ(out(), "one");
  // A writable one can be set again.
  ASSERT_EQ(foreign("declare_property", bytesField(1, "rw")), 0u);
  const uint32_t rw = put("rw");
  EXPECT_EQ(call("t_set_property", {rw, 2, v1, 3}), 0u);
  EXPECT_EQ(call("t_set_property", {rw, 2, v2, 3}), 0u);
}

TEST_F(ForeignFunctionTest, DeclarePropertyBadArguments) {
  EXPECT_EQ(foreign("declare_property", ""), 2u);  // no name
  EXPECT_EQ(foreign("declare_property",
                    "\x0a\x05"
                    "ab"),
            2u);                                                                       // truncated
  EXPECT_EQ(foreign("declare_property", bytesField(1, "p") + varintField(3, 9)), 2u);  // no such type
  EXPECT_EQ(foreign("declare_property", bytesField(1, "p") + varintField(5, 7)), 2u);  // no such span
  EXPECT_EQ(foreign("declare_property", varintField(1, 5)), 2u);  // name with the wrong wire type
  EXPECT_EQ(foreign("declare_property", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), 2u);
  // Unknown fields are skipped, as protobuf does.
  EXPECT_EQ(foreign("declare_property", bytesField(1, "p2") + bytesField(9, "future")), 0u);
}

// As Envoy without a filter-state factory for the key: NotFound (nothing here consumes filter state), and
// nothing is written; malformed arguments are still BadArgument.
TEST_F(ForeignFunctionTest, SetEnvoyFilterStateIsNotFoundForKeysNothingConsumes) {
  const std::string args =
      bytesField(1, "envoy.tcp_proxy.cluster") + bytesField(2, "backend") + varintField(3, 1);
  EXPECT_EQ(foreign("set_envoy_filter_state", args), 1u);
  EXPECT_EQ(stream.last_set.first, "");
  EXPECT_EQ(foreign("set_envoy_filter_state", bytesField(2, "no path")), 2u);
  EXPECT_EQ(foreign("set_envoy_filter_state", "\x0a\x40"), 2u);  // length past the end
  EXPECT_EQ(foreign("set_envoy_filter_state", bytesField(1, "k") + varintField(3, 5)), 2u);
  // From a root context (no stream): NotFound too.
  const uint32_t name = put("set_envoy_filter_state"), a = put(args);
  auto r = plugin->callForTest(nullptr, "t_foreign", {name, 22, a, static_cast<uint32_t>(args.size())});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 1u);
}

TEST_F(ForeignFunctionTest, ClearRouteCacheReachesTheStream) {
  EXPECT_EQ(foreign("clear_route_cache", ""), 0u);
  EXPECT_EQ(stream.route_cache_cleared, 1);
  EXPECT_EQ(out(), "");
}

}  // namespace
}  // namespace skiff::wasm
