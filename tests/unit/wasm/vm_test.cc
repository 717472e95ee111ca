// The V8 VM: ABI detection, load errors, start-up and configuration, traps with the plugin named.
#include "wasm/vm.h"

#include <gtest/gtest.h>

#include "skiff/stats/stats.h"
#include "wasm/plugin.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

std::shared_ptr<PluginSpec> specFor(const std::string& code, const std::string& config = "") {
  auto spec = std::make_shared<PluginSpec>();
  spec->name = "p";
  spec->vm_id = "vm";
  spec->code = code;
  spec->plugin_configuration = config;
  return spec;
}

TEST(WasmVmTest, AbiIsTheFirstMarkerExport) {
  EXPECT_EQ(detectAbi({"memory", "proxy_abi_version_0_2_0", "proxy_abi_version_0_2_1"}), AbiVersion::k0_2_0);
  EXPECT_EQ(detectAbi({"proxy_abi_version_0_2_1"}), AbiVersion::k0_2_1);
  EXPECT_EQ(detectAbi({"proxy_abi_version_0_1_0"}), AbiVersion::k0_1_0);
  EXPECT_EQ(detectAbi({"malloc"}), AbiVersion::kUnknown);
}

TEST(WasmVmTest, LoadErrorsAreClear) {
  stats::Store store(1);
  std::string error;
  EXPECT_EQ(PluginVm::create(specFor("not wasm at all"), &store, nullptr, &error), nullptr);
  EXPECT_NE(error.find("cannot compile"), std::string::npos) << error;
  const std::string empty_module("\0asm\x01\0\0\0", 8);
  EXPECT_EQ(PluginVm::create(specFor(empty_module), &store, nullptr, &error), nullptr);
  EXPECT_NE(error.find("ABI version"), std::string::npos) << error;
}

TEST(WasmVmTest, DemoFilterStartsAndReadsItsConfiguration) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  stats::Store store(1);
  std::string error;
  auto vm = PluginVm::create(specFor(code, "User-Agent"), &store, nullptr, &error);
  ASSERT_TRUE(vm) << error;
  EXPECT_EQ(vm->vm().abi(), AbiVersion::k0_2_1);
  EXPECT_FALSE(vm->failed());
  EXPECT_EQ(vm->createStreamContext(), 2u);
  EXPECT_EQ(vm->createStreamContext(), 3u);
  // A second VM of the same code reuses the compiled module.
  auto again = PluginVm::create(specFor(code, "User-Agent"), &store, nullptr, &error);
  ASSERT_TRUE(again) << error;
}

TEST(WasmVmTest, Abi020ModulesLoadAndCannotImport021OnlyFunctions) {
  SKIFF_REQUIRE_MODULE(demo, "demo_filter_abi020");
  SKIFF_REQUIRE_MODULE(exerciser, "exerciser_abi020");
  stats::Store store(1);
  std::string error;
  auto vm = PluginVm::create(specFor(demo, "User-Agent"), &store, nullptr, &error);
  ASSERT_TRUE(vm) << error;
  EXPECT_EQ(vm->vm().abi(), AbiVersion::k0_2_0);
  // proxy_get_log_level exists from 0.2.1 on: a 0.2.0 module importing it does not link, as in Envoy.
  EXPECT_EQ(PluginVm::create(specFor(exerciser), &store, nullptr, &error), nullptr);
  EXPECT_NE(error.find("cannot link"), std::string::npos) << error;
  EXPECT_NE(error.find("proxy_get_log_level"), std::string::npos) << error;
}

TEST(WasmVmTest, GuestMemoryAccessIsBoundsChecked) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  stats::Store store(1);
  std::string error;
  auto p = PluginVm::create(specFor(code), &store, nullptr, &error);
  ASSERT_TRUE(p) << error;
  Vm& vm = p->vm();
  const uint64_t size = vm.memorySize();
  ASSERT_GT(size, 0u);
  EXPECT_TRUE(vm.view(static_cast<uint32_t>(size - 4), 4));
  EXPECT_FALSE(vm.view(static_cast<uint32_t>(size - 3), 4));
  EXPECT_FALSE(vm.view(0xFFFFFFFFu, 2));
  EXPECT_FALSE(vm.writeU64(static_cast<uint32_t>(size - 7), 1));
  EXPECT_TRUE(vm.writeU64(static_cast<uint32_t>(size - 8), 1));
  EXPECT_EQ(vm.copyOut("abc", static_cast<uint32_t>(size), 16), WasmResult::kInvalidMemoryAccess);
  EXPECT_EQ(vm.copyOut("abc", 16, 0xFFFFFFFEu), WasmResult::kInvalidMemoryAccess);
}

TEST(WasmVmTest, TrapsAndRejectionsAtConfigure) {
  SKIFF_REQUIRE_MODULE(code, "trap_filter");
  stats::Store store(1);
  std::string error;
  EXPECT_EQ(PluginVm::create(specFor(code, "trap-configure"), &store, nullptr, &error), nullptr);
  EXPECT_NE(error.find("proxy_on_configure trapped"), std::string::npos) << error;
  EXPECT_NE(error.find("unreachable"), std::string::npos) << error;
  EXPECT_EQ(PluginVm::create(specFor(code, "reject-configure"), &store, nullptr, &error), nullptr);
  EXPECT_NE(error.find("proxy_on_configure returned false"), std::string::npos) << error;
  EXPECT_TRUE(PluginVm::create(specFor(code, ""), &store, nullptr, &error)) << error;
}

}  // namespace
}  // namespace skiff::wasm
