// The engine's call path (v8_engine.cc): guest call arguments passed as V8 small integers keep every uint32
// bit pattern, and proxy_log below the wasm logger's level, answered inside V8 without a host call, behaves
// exactly like the host function (result codes, memory checks, the level read at every call).
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <cstring>
#include <sstream>

#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"
#include "wasm/plugin.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

TEST(WasmVmCallTest, GuestCallArgumentsKeepAllThirtyTwoBits) {
  SKIFF_REQUIRE_MODULE(code, "exerciser");
  stats::Store store(1);
  auto spec = std::make_shared<PluginSpec>();
  spec->name = "exerciser";
  spec->vm_id = "vm-call-test";
  spec->code = code;
  std::string error;
  auto plugin = PluginVm::create(spec, &store, nullptr, &error);
  ASSERT_TRUE(plugin) << error;
  Vm& vm = plugin->vm();
  testing::FakeStreamContext stream;

  const std::string name = "wasm_call_test_gauge";
  auto p = vm.callByName("proxy_on_memory_allocate", {static_cast<uint32_t>(name.size())});
  ASSERT_TRUE(p && *p != 0);
  ASSERT_TRUE(vm.write(*p, name.data(), static_cast<uint32_t>(name.size())));
  ASSERT_EQ(plugin->callForTest(&stream, "t_define_metric", {1, *p, static_cast<uint32_t>(name.size())}), 0u);
  auto readOut = [&] {
    const uint32_t at = *vm.callByName("t_out", {});
    uint64_t v = 0;
    std::memcpy(&v, vm.view(at, 8)->data(), 8);
    return v;
  };
  const uint32_t gauge = static_cast<uint32_t>(readOut());

  // t_record(id, value) hands the uint32 to proxy_record_metric (zero-extended), which sets the gauge.
  for (uint32_t value :
       {0u, 1u, 0x3fffffffu, 0x7fffffffu, 0x80000000u, 0xc0000000u, 0xfffffff0u, 0xffffffffu}) {
    ASSERT_EQ(plugin->callForTest(&stream, "t_record", {gauge, value}), 0u) << value;
    ASSERT_EQ(plugin->callForTest(&stream, "t_get_metric", {gauge}), 0u) << value;
    EXPECT_EQ(readOut(), value);
  }
  // The export-index path (Vm::call) packs arguments the same way; wasm_sharing_test drives it with
  // context ids past 2^31.
}

TEST(WasmVmCallTest, QuietLogBelowTheLevelKeepsTheHostFunctionsResults) {
  SKIFF_REQUIRE_MODULE(code, "exerciser");
  auto& logger = log::get(log::Component::kWasm);
  const auto saved_level = logger.level();
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(captured);
  logger.sinks().push_back(sink);
  struct Restore {
    spdlog::logger& logger;
    spdlog::level::level_enum level;
    ~Restore() {
      logger.sinks().pop_back();
      logger.set_level(level);
    }
  } restore{logger, saved_level};

  stats::Store store(1);
  auto spec = std::make_shared<PluginSpec>();
  spec->name = "quiet";
  spec->vm_id = "vm-quiet-test";
  spec->code = code;
  std::string error;
  auto plugin = PluginVm::create(spec, &store, nullptr, &error);
  ASSERT_TRUE(plugin) << error;
  Vm& vm = plugin->vm();
  testing::FakeStreamContext stream;
  const std::string text = "quiet-path message";
  auto p = vm.callByName("proxy_on_memory_allocate", {static_cast<uint32_t>(text.size())});
  ASSERT_TRUE(p && *p != 0);
  ASSERT_TRUE(vm.write(*p, text.data(), static_cast<uint32_t>(text.size())));
  const uint32_t n = static_cast<uint32_t>(text.size());
  auto log = [&](uint32_t level, uint32_t ptr, uint32_t size) {
    auto r = plugin->callForTest(&stream, "t_log", {level, ptr, size});
    EXPECT_TRUE(r.has_value()) << vm.error();
    return r.value_or(0xdead);
  };

  logger.set_level(spdlog::level::warn);
  for (int round = 0; round < 2000; ++round) {   // long enough for V8 to optimise the quiet path
    ASSERT_EQ(log(2, *p, n), 0u);                // info below warn: Ok, nothing logged
    ASSERT_EQ(log(2, 0xFFFFFF00u, 0x1000), 6u);  // InvalidMemoryAccess, whatever the level
    ASSERT_EQ(log(1, 0xFFFFFFF0u, 0x20), 6u);    // ptr + size wraps 32 bits
    ASSERT_EQ(log(2, *p, 0xFFFFFFFFu), 6u);
    ASSERT_EQ(log(2, 0x7FFFFF00u, 0x80u), 6u);  // below 2^31 but past the memory
    ASSERT_EQ(log(2, *p, 0x7FFFFFFFu), 6u);
    ASSERT_EQ(log(6, *p, n), 2u);  // BadArgument
  }
  EXPECT_EQ(captured.str().find(text), std::string::npos);
  EXPECT_EQ(log(3, *p, n), 0u);  // warn: logged
  EXPECT_NE(captured.str().find(text), std::string::npos);

  // A level lowered at run time (as /logging does) is seen by the very next call.
  captured.str("");
  logger.set_level(spdlog::level::debug);
  EXPECT_EQ(log(1, *p, n), 0u);
  EXPECT_NE(captured.str().find(text), std::string::npos);
  captured.str("");
  logger.set_level(spdlog::level::off);
  EXPECT_EQ(log(5, *p, n), 0u);
  EXPECT_EQ(captured.str().find(text), std::string::npos);
}

}  // namespace
}  // namespace skiff::wasm
