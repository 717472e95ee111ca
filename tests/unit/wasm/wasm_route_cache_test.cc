// Request-header edits by a plugin reach the stream's route cache as Envoy does for ABI <= 0.2.1: single
// edits through requestHeaderChanged (with the version the edit started from), set-pairs as a clear.
#include <gtest/gtest.h>

#include "skiff/stats/stats.h"
#include "wasm/pairs.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

struct RecordingStream : testing::FakeStreamContext {
  void requestHeaderChanged(std::string_view name, uint64_t version_before) override {
    changes.emplace_back(std::string(name), version_before);
  }
  void clearRouteCache() override { ++clears; }
  std::vector<std::pair<std::string, uint64_t>> changes;
  int clears = 0;
};

class WasmRouteCacheTest : public ::testing::Test {
 protected:
  WasmRouteCacheTest() : store(2) {}
  void SetUp() override {
    const std::string code = testing::readModule("exerciser");
    if (code.empty()) GTEST_SKIP() << "wasm test module exerciser not built (no clang-14/wasm-ld)";
    auto spec = std::make_shared<PluginSpec>();
    spec->name = "exerciser";
    spec->root_id = "root";
    spec->vm_id = "route-cache";
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

  stats::Store store;
  std::unique_ptr<PluginVm> plugin;
  RecordingStream stream;
};

TEST_F(WasmRouteCacheTest, RequestHeaderEditsReachTheRouteCache) {
  stream.request_headers.add(":path", "/old");
  const uint32_t path = put(":path");
  const uint32_t value = put("/new");
  uint64_t v = stream.request_headers.version();
  EXPECT_EQ(call("t_replace_header", {0, path, 5, value, 4}), 0u);
  EXPECT_EQ(stream.request_headers.getOr(":path"), "/new");
  ASSERT_EQ(stream.changes.size(), 1u);
  EXPECT_EQ(stream.changes[0], std::make_pair(std::string(":path"), v));

  v = stream.request_headers.version();
  EXPECT_EQ(call("t_add_header", {0, put("x-b"), 3, value, 4}), 0u);
  ASSERT_EQ(stream.changes.size(), 2u);
  EXPECT_EQ(stream.changes[1], std::make_pair(std::string("x-b"), v));

  v = stream.request_headers.version();
  EXPECT_EQ(call("t_remove_header", {0, path, 5}), 0u);
  ASSERT_EQ(stream.changes.size(), 3u);
  EXPECT_EQ(stream.changes[2], std::make_pair(std::string(":path"), v));
  EXPECT_EQ(call("t_remove_header", {0, path, 5}), 0u);  // nothing removed: nothing changed
  EXPECT_EQ(stream.changes.size(), 3u);

  const std::string pairs = serializePairs({{":path", "/p"}});
  EXPECT_EQ(call("t_set_pairs", {0, put(pairs), static_cast<uint32_t>(pairs.size())}), 0u);
  EXPECT_EQ(stream.clears, 1);
  EXPECT_EQ(stream.changes.size(), 3u);
}

TEST_F(WasmRouteCacheTest, OtherMapsLeaveTheRouteAlone) {
  stream.have_response = true;
  const uint32_t key = put("x-r");
  const uint32_t value = put("1");
  EXPECT_EQ(call("t_add_header", {2, key, 3, value, 1}), 0u);
  EXPECT_EQ(call("t_replace_header", {2, key, 3, value, 1}), 0u);
  EXPECT_EQ(call("t_remove_header", {2, key, 3}), 0u);
  const std::string pairs = serializePairs({{":status", "200"}});
  EXPECT_EQ(call("t_set_pairs", {2, put(pairs), static_cast<uint32_t>(pairs.size())}), 0u);
  EXPECT_EQ(stream.response_headers.getOr(":status"), "200");
  EXPECT_TRUE(stream.changes.empty());
  EXPECT_EQ(stream.clears, 0);
}

}  // namespace
}  // namespace skiff::wasm
