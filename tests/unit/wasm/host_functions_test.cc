// Host functions driven from the exerciser module: results, WasmResult codes for bad arguments, and
// bounds checks on every guest pointer (out-of-bounds input must never reach host memory).
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "envoy/config/core/v3/base.pb.h"
#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"
#include "wasm/pairs.h"
#include "wasm/shared_data.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

using testing::FakeStreamContext;

constexpr uint32_t kOob = 0xFFFFFF00u;  // far past any test module's memory

class HostFunctionsTest : public ::testing::Test {
 protected:
  HostFunctionsTest() : store(2) {}

  void SetUp() override {
    code = testing::readModule("exerciser");
    if (code.empty()) GTEST_SKIP() << "wasm test module exerciser not built (no clang-14/wasm-ld)";
    start();
  }

  void start(const std::string& vm_id = "vm-test", const std::string& plugin_config = "",
             asio::io_context* io = nullptr) {
    auto spec = std::make_shared<PluginSpec>();
    spec->name = "exerciser";
    spec->root_id = "root";
    spec->vm_id = vm_id;
    spec->code = code;
    spec->plugin_configuration = plugin_config;
    spec->environment = {{"A", "1"}, {"B", "two"}};
    std::string error;
    plugin = PluginVm::create(spec, &store, io, &error);
    ASSERT_TRUE(plugin) << error;
  }

  uint32_t put(std::string_view s) { return skiff::wasm::testing::putGuestString(*plugin, s); }
  uint32_t call(std::string_view name, std::initializer_list<uint32_t> args) {
    auto r = plugin->callForTest(&stream, name, args);
    EXPECT_TRUE(r.has_value()) << name << ": " << plugin->vm().error();
    return r.value_or(0xdead);
  }
  // t_* with a guest copy of `s` as (ptr, len) after `before` arguments.
  std::string out() {
    const uint32_t p = *plugin->vm().callByName("t_out", {});
    const uint32_t n = *plugin->vm().callByName("t_out_len", {});
    return std::string(*plugin->vm().view(p, n));
  }
  uint64_t outU64() {
    std::string s = out();
    uint64_t v = 0;
    std::memcpy(&v, s.data(), std::min<size_t>(8, s.size()));
    return v;
  }

  stats::Store store;
  std::string code;
  std::unique_ptr<PluginVm> plugin;
  FakeStreamContext stream;
};

TEST_F(HostFunctionsTest, LogChecksLevelAndMemory) {
  const uint32_t msg = put("hello from the guest");
  EXPECT_EQ(call("t_log", {2, msg, 20}), 0u);
  EXPECT_EQ(call("t_log", {6, msg, 20}), 2u);            // BadArgument
  EXPECT_EQ(call("t_log", {2, kOob, 0x1000}), 6u);       // InvalidMemoryAccess
  EXPECT_EQ(call("t_log", {2, 0xFFFFFFF0u, 0x20}), 6u);  // ptr + size wraps 32 bits
  EXPECT_EQ(call("t_log", {2, msg, 0xFFFFFFFFu}), 6u);
  EXPECT_EQ(call("t_log_level", {}), 0u);
  EXPECT_LE(outU64(), 5u);
}

TEST_F(HostFunctionsTest, HeaderMapGetAddReplaceRemove) {
  stream.request_headers.add(":path", "/x");
  stream.request_headers.add("x-a", "1");
  stream.request_headers.add("x-a", "2");
  const uint32_t key = put("X-A");
  EXPECT_EQ(call("t_get_header", {0, key, 3}), 0u);
  EXPECT_EQ(out(), "1");  // the first value, keys case-insensitive
  const uint32_t missing = put("x-missing");
  EXPECT_EQ(call("t_get_header", {0, missing, 9}), 1u);  // NotFound (0.2.x)
  EXPECT_EQ(call("t_get_header", {8, key, 3}), 2u);      // map type out of range
  EXPECT_EQ(call("t_get_header", {2, key, 3}), 2u);      // response headers not there yet
  EXPECT_EQ(call("t_get_header", {0, kOob, 3}), 6u);
  // Result pointers out of bounds: an error, and no guest allocation or host write happens.
  EXPECT_EQ(call("t_get_header_raw", {0, key, 3, kOob, kOob}), 6u);

  const uint32_t value = put("v");
  EXPECT_EQ(call("t_add_header", {0, put("x-b"), 3, value, 1}), 0u);
  EXPECT_EQ(stream.request_headers.getOr("x-b"), "v");
  EXPECT_EQ(call("t_replace_header", {0, key, 3, value, 1}), 0u);
  EXPECT_EQ(stream.request_headers.count("x-a"), 1u);
  EXPECT_EQ(stream.request_headers.getOr("x-a"), "v");
  EXPECT_EQ(call("t_add_header", {0, key, 3, kOob, 4}), 6u);
  EXPECT_EQ(call("t_remove_header", {0, key, 3}), 0u);
  EXPECT_EQ(stream.request_headers.count("x-a"), 0u);
  EXPECT_EQ(call("t_remove_header", {0, key, 3}), 0u);  // absent is fine
  EXPECT_EQ(call("t_remove_header", {9, key, 3}), 2u);
}

TEST_F(HostFunctionsTest, HeaderMapPairsAndSize) {
  stream.request_headers.add("a", "1");
  stream.request_headers.add("b", "22");
  EXPECT_EQ(call("t_get_pairs", {0}), 0u);
  const std::string expected(
      "\x02\0\0\0\x01\0\0\0\x01\0\0\0\x01\0\0\0\x02\0\0\0a\0"
      "1\0b\0"
      "22\0",
      29);
  EXPECT_EQ(out(), expected);
  EXPECT_EQ(call("t_map_size", {0}), 0u);
  EXPECT_EQ(outU64(), 5u);  // byte size, not the entry count

  const std::string replacement = serializePairs({{"x", "y"}, {"z", ""}});
  const uint32_t p = put(replacement);
  EXPECT_EQ(call("t_set_pairs", {0, p, static_cast<uint32_t>(replacement.size())}), 0u);
  ASSERT_EQ(stream.request_headers.size(), 2u);
  EXPECT_EQ(stream.request_headers.getOr("x"), "y");
  EXPECT_EQ(stream.request_headers.count("z"), 1u);

  // Lengths that run past the end are rejected, not read.
  std::string bad = replacement;
  bad[4] = '\x7f';
  EXPECT_EQ(call("t_set_pairs", {0, put(bad), static_cast<uint32_t>(bad.size())}), 2u);
  EXPECT_EQ(stream.request_headers.size(), 2u);
  EXPECT_EQ(call("t_set_pairs", {0, kOob, 64}), 6u);

  stream.request_headers.clear();
  EXPECT_EQ(call("t_get_pairs", {0}), 0u);
  EXPECT_EQ(out(), "");
}

TEST_F(HostFunctionsTest, BufferBytesFollowEnvoysRules) {
  stream.have_body = true;
  stream.request_body = "hello world";
  EXPECT_EQ(call("t_buffer_status", {0}), 0u);
  EXPECT_EQ(outU64(), 11u);  // size 11, flags 0
  EXPECT_EQ(call("t_get_buffer", {0, 6, 5}), 0u);
  EXPECT_EQ(out(), "world");
  EXPECT_EQ(call("t_get_buffer", {0, 6, 100}), 0u);  // clamped
  EXPECT_EQ(out(), "world");
  EXPECT_EQ(call("t_get_buffer", {0, 11, 5}), 0u);  // empty: Ok, out-params untouched
  EXPECT_EQ(out(), "untouched");
  EXPECT_EQ(call("t_get_buffer", {0, 12, 1}), 2u);
  EXPECT_EQ(call("t_get_buffer", {0, 0xFFFFFFF0u, 0x20}), 2u);  // start + length overflows
  EXPECT_EQ(call("t_get_buffer", {1, 0, 1}), 1u);               // no response body
  EXPECT_EQ(call("t_get_buffer", {9, 0, 1}), 2u);
  EXPECT_EQ(call("t_get_buffer", {7, 0, 1}), 1u);  // plugin configuration only during on_configure

  EXPECT_EQ(call("t_set_buffer", {0, 0, 0, put(">"), 1}), 0u);  // prepend
  EXPECT_EQ(stream.request_body, ">hello world");
  EXPECT_EQ(call("t_set_buffer", {0, 0, 6, put("bye"), 3}), 0u);  // replace a prefix
  EXPECT_EQ(stream.request_body, "bye world");
  EXPECT_EQ(call("t_set_buffer", {0, 9, 0, put("!"), 1}), 0u);  // append
  EXPECT_EQ(stream.request_body, "bye world!");
  EXPECT_EQ(call("t_set_buffer", {0, 3, 1, put("?"), 1}), 2u);  // middle edits are not supported
  EXPECT_EQ(call("t_set_buffer", {0, 0, 0, kOob, 8}), 6u);
  EXPECT_EQ(call("t_set_buffer", {7, 0, 0, put("x"), 1}), 2u);  // configuration is read-only
  EXPECT_EQ(stream.request_body, "bye world!");
}

TEST_F(HostFunctionsTest, PropertiesOfPluginAndStream) {
  const std::string name("plugin_name");
  EXPECT_EQ(call("t_get_property", {put(name), static_cast<uint32_t>(name.size())}), 0u);
  EXPECT_EQ(out(), "exerciser");
  const std::string root("plugin_root_id\0", 15);  // trailing NUL tolerated
  EXPECT_EQ(call("t_get_property", {put(root), static_cast<uint32_t>(root.size())}), 0u);
  EXPECT_EQ(out(), "root");
  const std::string path("request\0path", 12);
  EXPECT_EQ(call("t_get_property", {put(path), static_cast<uint32_t>(path.size())}), 0u);
  EXPECT_EQ(out(), "/test");
  const std::string unknown("no\0such", 7);
  EXPECT_EQ(call("t_get_property", {put(unknown), static_cast<uint32_t>(unknown.size())}), 1u);
  EXPECT_EQ(call("t_get_property", {kOob, 8}), 6u);

  const std::string key("my_state");
  EXPECT_EQ(call("t_set_property", {put(key), 8, put("v1"), 2}), 0u);
  EXPECT_EQ(call("t_get_property", {put(key), 8}), 0u);
  EXPECT_EQ(out(), "v1");
  EXPECT_EQ(call("t_set_property", {put(key), 8, kOob, 2}), 6u);
  EXPECT_EQ(plugin->callForTest(nullptr, "t_set_property", {put(key), 8, put("v"), 1}),
            std::optional<uint32_t>(1u));  // a root context has no stream to keep it
}

TEST_F(HostFunctionsTest, NodePropertiesBothSpellings) {
  envoy::config::core::v3::Node node;
  node.set_id("sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
  node.set_cluster("my-client.ns");
  (*node.mutable_metadata()->mutable_fields())["NAMESPACE"].set_string_value("ns");
  (*node.mutable_metadata()->mutable_fields())["PORT"].set_number_value(8080);
  setLocalNode(node);
  auto get = [&](const std::string& path) {
    return call("t_get_property", {put(path), static_cast<uint32_t>(path.size())}) == 0 ? out() : "<missing>";
  };
  EXPECT_EQ(get(std::string("node\0id", 7)), node.id());
  EXPECT_EQ(get(std::string("xds\0node\0cluster", 16)), "my-client.ns");
  EXPECT_EQ(get(std::string("node\0metadata\0NAMESPACE", 23)), "ns");
  const double port = 8080;
  EXPECT_EQ(get(std::string("node\0metadata\0PORT", 18)),
            std::string(reinterpret_cast<const char*>(&port), 8));
  EXPECT_EQ(get(std::string("node\0metadata\0NOPE", 18)), "<missing>");
  envoy::config::core::v3::Node parsed;
  ASSERT_TRUE(parsed.ParseFromString(get("node")));
  EXPECT_EQ(parsed.id(), node.id());
  setLocalNode(envoy::config::core::v3::Node());
}

TEST_F(HostFunctionsTest, SharedDataCompareAndSwapAcrossVms) {
  SharedData::instance().clearForTest();
  const uint32_t key = put("k");
  EXPECT_EQ(call("t_shared_get", {key, 1}), 1u);
  EXPECT_EQ(call("t_shared_set", {key, 1, put("v1"), 2, 0}), 0u);
  EXPECT_EQ(call("t_shared_get", {key, 1}), 0u);
  EXPECT_EQ(out(), "v1");
  const uint32_t cas = *plugin->vm().callByName("t_cas", {});
  EXPECT_NE(cas, 0u);
  EXPECT_EQ(call("t_shared_set", {key, 1, put("v2"), 2, cas + 1000}), 8u);  // CasMismatch
  EXPECT_EQ(call("t_shared_set", {key, 1, put("v2"), 2, cas}), 0u);
  EXPECT_EQ(call("t_shared_get", {key, 1}), 0u);
  EXPECT_EQ(out(), "v2");
  EXPECT_NE(*plugin->vm().callByName("t_cas", {}), cas);
  const uint32_t fresh = put("fresh");
  EXPECT_EQ(call("t_shared_set", {fresh, 5, put("x"), 1, 77}), 0u);  // missing key: cas ignored
  EXPECT_EQ(call("t_shared_set", {kOob, 4, put("x"), 1, 0}), 6u);

  // Another VM with the same vm_id sees the value; a different vm_id does not.
  auto first = std::move(plugin);
  start("vm-test");
  EXPECT_EQ(call("t_shared_get", {put("k"), 1}), 0u);
  EXPECT_EQ(out(), "v2");
  start("other-vm");
  EXPECT_EQ(call("t_shared_get", {put("k"), 1}), 1u);
}

TEST_F(HostFunctionsTest, MetricsLandInTheStatsStore) {
  const std::string counter_name = "wasm_test_requests";
  ASSERT_EQ(call("t_define_metric", {0, put(counter_name), static_cast<uint32_t>(counter_name.size())}), 0u);
  const uint32_t counter = static_cast<uint32_t>(outU64());
  EXPECT_EQ(counter & 3, 0u);
  EXPECT_EQ(call("t_increment", {counter, 5}), 0u);
  EXPECT_EQ(call("t_increment", {counter, static_cast<uint32_t>(-1)}), 2u);  // counters only grow
  EXPECT_EQ(call("t_record", {counter, 3}), 0u);                             // record adds
  EXPECT_EQ(call("t_get_metric", {counter}), 0u);
  EXPECT_EQ(outU64(), 8u);
  EXPECT_EQ(store.counter("wasmcustom." + counter_name).value(), 8u);

  const std::string gauge_name = "wasm_test_level";
  ASSERT_EQ(call("t_define_metric", {1, put(gauge_name), static_cast<uint32_t>(gauge_name.size())}), 0u);
  const uint32_t gauge = static_cast<uint32_t>(outU64());
  EXPECT_EQ(gauge & 3, 1u);
  EXPECT_EQ(call("t_record", {gauge, 10}), 0u);
  EXPECT_EQ(call("t_increment", {gauge, static_cast<uint32_t>(-3)}), 0u);
  EXPECT_EQ(call("t_get_metric", {gauge}), 0u);
  EXPECT_EQ(outU64(), 7u);

  const std::string histogram_name = "wasm_test_latency";
  ASSERT_EQ(call("t_define_metric", {2, put(histogram_name), static_cast<uint32_t>(histogram_name.size())}),
            0u);
  const uint32_t histogram = static_cast<uint32_t>(outU64());
  EXPECT_EQ(call("t_record", {histogram, 42}), 0u);
  EXPECT_EQ(call("t_increment", {histogram, 1}), 2u);
  EXPECT_EQ(call("t_get_metric", {histogram}), 2u);

  EXPECT_EQ(call("t_define_metric", {3, put("x"), 1}), 2u);
  EXPECT_EQ(call("t_increment", {400, 1}), 1u);  // unknown id
  EXPECT_EQ(call("t_get_metric_raw", {counter, kOob}), 6u);
}

TEST_F(HostFunctionsTest, StreamControlIsRecordedForTheFilter) {
  EXPECT_EQ(call("t_send_local", {403}), 0u);
  EXPECT_EQ(stream.reply_status, 403u);
  EXPECT_EQ(stream.reply_details, "denied_by_wasm");  // spaces become underscores
  EXPECT_EQ(stream.reply_body, "denied");
  ASSERT_EQ(stream.reply_headers.size(), 1u);
  EXPECT_EQ(stream.reply_headers[0].first, "x-local");
  EXPECT_EQ(call("t_continue", {0}), 0u);
  EXPECT_EQ(call("t_continue", {4}), 2u);
  EXPECT_EQ(call("t_close", {1}), 0u);
  EXPECT_EQ(stream.continued, std::vector<uint32_t>{0});
  EXPECT_EQ(stream.closed, std::vector<uint32_t>{1});
  // Without a stream (root context) there is nothing to continue.
  EXPECT_EQ(plugin->callForTest(nullptr, "t_continue", {0}), std::optional<uint32_t>(1u));
}

TEST_F(HostFunctionsTest, WasiFunctions) {
  const uint32_t text = put("to stdout\n");
  EXPECT_EQ(call("t_fd_write", {1, text, 10}), 0u);
  EXPECT_EQ(outU64(), 10u);
  EXPECT_EQ(call("t_fd_write", {2, text, 10}), 0u);
  EXPECT_EQ(call("t_fd_write", {3, text, 10}), 8u);      // BADF
  EXPECT_EQ(call("t_fd_write", {1, kOob, 10}), 21u);     // FAULT
  EXPECT_EQ(call("t_fd_write_raw", {1, kOob, 2}), 21u);  // iovec array out of bounds
  EXPECT_EQ(call("t_fd_write_raw", {1, 0xFFFFFFF8u, 4}), 21u);
  EXPECT_EQ(call("t_clock", {0}), 0u);
  const uint64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  EXPECT_NEAR(static_cast<double>(outU64()), static_cast<double>(now), 60e9);
  EXPECT_EQ(call("t_clock", {1}), 0u);
  EXPECT_GT(outU64(), 0u);
  EXPECT_EQ(call("t_clock", {7}), 58u);  // NOTSUP
  EXPECT_EQ(call("t_random", {32}), 0u);
  EXPECT_EQ(out().size(), 32u);
  EXPECT_EQ(call("t_random", {65537}), 28u);  // INVAL
  EXPECT_EQ(call("t_random_raw", {kOob, 64}), 21u);
  EXPECT_EQ(call("t_environ", {}), 0u);
  EXPECT_EQ(out(), "A=1;B=two;");
}

TEST_F(HostFunctionsTest, TickFiresOnTheDispatcher) {
  asio::io_context io;
  start("vm-tick", "tick", &io);  // on_configure sets a 10 ms tick period
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (*plugin->vm().callByName("t_ticks", {}) < 3 && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(std::chrono::milliseconds(100));
  }
  EXPECT_GE(*plugin->vm().callByName("t_ticks", {}), 3u);
  EXPECT_EQ(call("t_tick", {0}), 0u);  // disables
  const uint32_t ticks = *plugin->vm().callByName("t_ticks", {});
  io.run_for(std::chrono::milliseconds(50));
  EXPECT_EQ(*plugin->vm().callByName("t_ticks", {}), ticks);
  plugin.reset();  // before the io_context it armed timers on
}

// Not a test: cost of one call into the guest and of one host call (--gtest_also_run_disabled_tests).
TEST_F(HostFunctionsTest, DISABLED_CallCosts) {
  log::get(log::Component::kWasm).set_level(spdlog::level::warn);
  const uint32_t msg = put("x");
  constexpr int kCalls = 200000;
  auto time = [&](auto&& fn) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) fn();
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() /
           kCalls;
  };
  for (int round = 0; round < 2; ++round) {
    const double guest = time([&] { plugin->vm().call(Export::kOnTick, {1}); });
    const double host = time([&] { plugin->callForTest(&stream, "t_log", {0, msg, 1}); });
    std::printf("guest call %.0f ns; guest call + 1 host call (by name) %.0f ns\n", guest, host);
  }
}

}  // namespace
}  // namespace skiff::wasm
