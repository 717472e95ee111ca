// VMs and threads: one V8 isolate per thread (v8_engine.cc) — a VM answers only on the thread that created
// it, and may be destroyed on any thread, before or after its own thread has gone.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "skiff/stats/stats.h"
#include "wasm/plugin.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

std::shared_ptr<PluginSpec> demoSpec(const std::string& code) {
  auto spec = std::make_shared<PluginSpec>();
  spec->name = "threads";
  spec->vm_id = "threads";
  spec->code = code;
  spec->plugin_configuration = "User-Agent";
  return spec;
}

std::unique_ptr<PluginVm> makeVm(const std::string& code, stats::Store& store) {
  std::string error;
  auto vm = PluginVm::create(demoSpec(code), &store, nullptr, &error);
  EXPECT_TRUE(vm) << error;
  return vm;
}

TEST(WasmVmThreadsTest, CallFromAnotherThreadFailsTheVmInsteadOfRacingItsIsolate) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  stats::Store store(2);
  auto vm = makeVm(code, store);
  ASSERT_TRUE(vm);
  uint32_t id = 1;
  std::thread([&] { id = vm->createStreamContext(); }).join();
  EXPECT_EQ(id, 0u);
  ASSERT_TRUE(vm->failed());
  EXPECT_NE(vm->vm().error().find("thread other than the one that created it"), std::string::npos)
      << vm->vm().error();
}

TEST(WasmVmThreadsTest, DestroyedOffItsThreadWhileThatThreadKeepsRunningVms) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  stats::Store store(2);
  std::promise<std::unique_ptr<PluginVm>> handed;
  std::promise<void> destroyed;
  std::thread worker([&] {
    auto kept = makeVm(code, store);
    auto given = makeVm(code, store);
    ASSERT_TRUE(kept && given);
    handed.set_value(std::move(given));
    destroyed.get_future().wait();
    // The other VM's handles were handed back to this thread; its isolate goes on serving `kept`.
    for (int i = 0; i < 100; ++i) EXPECT_NE(kept->createStreamContext(), 0u);
    EXPECT_FALSE(kept->failed()) << kept->vm().error();
  });
  auto given = handed.get_future().get();
  ASSERT_TRUE(given);
  given.reset();  // on this thread, while the worker's isolate is alive
  destroyed.set_value();
  worker.join();
}

TEST(WasmVmThreadsTest, OutlivesTheThreadThatCreatedIt) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  stats::Store store(2);
  std::unique_ptr<PluginVm> orphan;
  std::thread([&] {
    orphan = makeVm(code, store);
    ASSERT_TRUE(orphan);
    EXPECT_NE(orphan->createStreamContext(), 0u);
  }).join();
  ASSERT_TRUE(orphan);
  orphan.reset();  // its thread (and that thread's hold on the isolate) is gone: freed and disposed here
  // This thread's own VMs are unaffected.
  auto mine = makeVm(code, store);
  ASSERT_TRUE(mine);
  EXPECT_NE(mine->createStreamContext(), 0u);
}

TEST(WasmVmThreadsTest, ThreadsRunTheirOwnVmsAtTheSameTime) {
  SKIFF_REQUIRE_MODULE(code, "demo_filter");
  stats::Store store(2);
  auto run = [&] {
    auto vm = makeVm(code, store);
    if (!vm) return;
    for (int i = 0; i < 2000; ++i) {
      testing::FakeStreamContext stream;
      stream.request_headers.add("user-agent", "curl");
      const uint32_t id = vm->createStreamContext(&stream);
      ASSERT_NE(id, 0u) << vm->vm().error();
      // Guest code calling host functions (random_get, replace_header_map_value, log).
      ASSERT_TRUE(vm->callStream(&stream, Export::kOnRequestHeaders, {id, 1, 1})) << vm->vm().error();
      const std::string* ua = stream.request_headers.get("user-agent");
      ASSERT_NE(ua, nullptr);
      EXPECT_TRUE(*ua == "hello" || *ua == "world") << *ua;
      vm->detachStream(id);
    }
  };
  std::thread a(run), b(run);
  a.join();
  b.join();
}

}  // namespace
}  // namespace skiff::wasm
