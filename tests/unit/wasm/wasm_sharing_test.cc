// VM sharing by VM key: plugins with the same vm_id + code + vm configuration on one worker loop live in one
// module instance (one root context each); another vm_id, another loop, or no loop gives a VM of its own.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>

#include "skiff/stats/stats.h"
#include "wasm/plugin.h"
#include "wasm_test_util.h"

namespace skiff::wasm {
namespace {

using testing::FakeStreamContext;

std::shared_ptr<PluginSpec> sharedSpec(const std::string& code, const std::string& vm_id,
                                       const std::string& header) {
  auto spec = std::make_shared<PluginSpec>();
  spec->name = "plugin-" + header;
  spec->root_id = header;
  spec->vm_id = vm_id;
  spec->code = code;
  spec->plugin_configuration = header;
  return spec;
}

// One request through `plugin`: the value of the plugin's header (the VM-wide hit count).
std::string hit(PluginVm& plugin, const std::string& header) {
  FakeStreamContext stream;
  const uint32_t id = plugin.createStreamContext(&stream);
  EXPECT_NE(id, 0u);
  EXPECT_EQ(plugin.callStream(&stream, Export::kOnRequestHeaders, {id, 1, 1}), 0u) << plugin.vm().error();
  plugin.detachStream(id);
  const std::string* v = stream.request_headers.get(header);
  return v == nullptr ? "" : *v;
}

TEST(WasmVmSharing, SameVmIdSharesOneInstanceWithARootContextEach) {
  SKIFF_REQUIRE_MODULE(code, "shared_vm_filter");
  stats::Store store(1);
  asio::io_context io;
  std::string error;
  auto a = PluginVm::create(sharedSpec(code, "shared", "x-a"), &store, &io, &error);
  ASSERT_TRUE(a) << error;
  auto b = PluginVm::create(sharedSpec(code, "shared", "x-b"), &store, &io, &error);
  ASSERT_TRUE(b) << error;
  EXPECT_EQ(&a->vm(), &b->vm());
  EXPECT_EQ(a->sharedRootContexts(), 2u);
  EXPECT_NE(a->rootId(), b->rootId());
  EXPECT_TRUE(a->bound() && b->bound());  // destroyed on their loop: the other plugin may run there
  // One module global: both plugins bump the same counter; each keeps its own configuration.
  EXPECT_EQ(hit(*a, "x-a"), "1");
  EXPECT_EQ(hit(*b, "x-b"), "2");
  EXPECT_EQ(hit(*a, "x-a"), "3");
  EXPECT_EQ(store.counter("wasm.envoy.wasm.runtime.v8.created").value(), 1u);
  EXPECT_EQ(store.gauge("wasm.envoy.wasm.runtime.v8.active").value(), 1);

  // The VM outlives the first plugin; the last one takes it away.
  a.reset();
  EXPECT_EQ(b->sharedRootContexts(), 1u);
  EXPECT_EQ(hit(*b, "x-b"), "4");
  b.reset();
  EXPECT_EQ(store.gauge("wasm.envoy.wasm.runtime.v8.active").value(), 0);

  // Nothing of the old instance is reused once it is gone.
  auto c = PluginVm::create(sharedSpec(code, "shared", "x-c"), &store, &io, &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(hit(*c, "x-c"), "1");
  EXPECT_EQ(store.counter("wasm.envoy.wasm.runtime.v8.created").value(), 2u);
}

TEST(WasmVmSharing, DifferentVmIdConfigurationLoopOrNoLoopGetTheirOwnVm) {
  SKIFF_REQUIRE_MODULE(code, "shared_vm_filter");
  stats::Store store(1);
  asio::io_context io, other_io;
  std::string error;
  auto a = PluginVm::create(sharedSpec(code, "one", "x-a"), &store, &io, &error);
  ASSERT_TRUE(a) << error;
  auto b = PluginVm::create(sharedSpec(code, "two", "x-b"), &store, &io, &error);
  ASSERT_TRUE(b) << error;
  auto vm_config = sharedSpec(code, "one", "x-c");
  vm_config->vm_configuration = "different";
  auto c = PluginVm::create(vm_config, &store, &io, &error);
  ASSERT_TRUE(c) << error;
  auto d = PluginVm::create(sharedSpec(code, "one", "x-d"), &store, &other_io, &error);  // another worker
  ASSERT_TRUE(d) << error;
  auto e = PluginVm::create(sharedSpec(code, "one", "x-e"), &store, nullptr, &error);  // config time
  ASSERT_TRUE(e) << error;
  for (auto* p : {a.get(), b.get(), c.get(), d.get(), e.get()}) {
    EXPECT_EQ(p->sharedRootContexts(), 1u) << p->spec().name;
    EXPECT_EQ(hit(*p, p->spec().root_id), "1") << p->spec().name;
  }
  EXPECT_NE(&a->vm(), &b->vm());
  EXPECT_EQ(store.counter("wasm.envoy.wasm.runtime.v8.created").value(), 5u);
  EXPECT_EQ(store.gauge("wasm.envoy.wasm.runtime.v8.active").value(), 5);
  EXPECT_NE(PluginVm::vmKey(a->spec()), PluginVm::vmKey(b->spec()));
  EXPECT_NE(PluginVm::vmKey(a->spec()), PluginVm::vmKey(c->spec()));
  EXPECT_EQ(PluginVm::vmKey(a->spec()), PluginVm::vmKey(d->spec()));
}

TEST(WasmVmSharing, CustomMetricIdsAreVmWide) {
  SKIFF_REQUIRE_MODULE(code, "shared_vm_filter");
  stats::Store store(1);
  asio::io_context io;
  std::string error;
  auto a = PluginVm::create(sharedSpec(code, "metrics", "x-a"), &store, &io, &error);
  ASSERT_TRUE(a) << error;
  auto b = PluginVm::create(sharedSpec(code, "metrics", "x-b"), &store, &io, &error);
  ASSERT_TRUE(b) << error;
  uint32_t id = 0;
  ASSERT_EQ(a->defineMetric(0, "shared_counter", &id), WasmResult::kOk);
  EXPECT_EQ(b->incrementMetric(id, 2), WasmResult::kOk);  // defined by one root context, used by another
  uint64_t value = 0;
  EXPECT_EQ(a->getMetric(id, &value), WasmResult::kOk);
  EXPECT_EQ(value, 2u);
}

// Start-up code (_initialize, i.e. C++ global constructors) may define and use metrics before any context
// exists: the plugin is attached to its VM before the start exports run.
TEST(WasmVmSharing, MetricsDefinedDuringModuleStartUp) {
  SKIFF_REQUIRE_MODULE(code, "init_metric_filter");
  stats::Store store(1);
  asio::io_context io;
  std::string error;
  auto a = PluginVm::create(sharedSpec(code, "init", "x-a"), &store, &io, &error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(store.counter("wasmcustom.wasm_test.started").value(), 1u);
  EXPECT_EQ(hit(*a, "x-init-metric"), "2");
  // A second plugin joins the started VM: the start exports do not run again.
  auto b = PluginVm::create(sharedSpec(code, "init", "x-b"), &store, &io, &error);
  ASSERT_TRUE(b) << error;
  EXPECT_EQ(&a->vm(), &b->vm());
  EXPECT_EQ(hit(*b, "x-init-metric"), "3");
  // Without a loop (config validation) too.
  auto c = PluginVm::create(sharedSpec(code, "init", "x-c"), &store, nullptr, &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(store.counter("wasmcustom.wasm_test.started").value(), 4u);
}

// After the context id counter wraps, new ids skip the root contexts of every plugin in the VM and the
// streams still attached.
TEST(WasmVmSharing, ContextIdsSkipIdsInUseAfterWrapAround) {
  SKIFF_REQUIRE_MODULE(code, "shared_vm_filter");
  stats::Store store(1);
  asio::io_context io;
  std::string error;
  auto a = PluginVm::create(sharedSpec(code, "wrap", "x-a"), &store, &io, &error);
  ASSERT_TRUE(a) << error;
  auto b = PluginVm::create(sharedSpec(code, "wrap", "x-b"), &store, &io, &error);
  ASSERT_TRUE(b) << error;
  ASSERT_EQ(a->rootId(), 1u);
  ASSERT_EQ(b->rootId(), 2u);
  FakeStreamContext s1, s2, s3, s4;
  a->setNextContextIdForTest(0xfffffffeu);
  EXPECT_EQ(a->createStreamContext(&s1), 0xfffffffeu);
  EXPECT_EQ(b->createStreamContext(&s2), 0xffffffffu);
  const uint32_t id3 = a->createStreamContext(&s3);
  EXPECT_EQ(id3, 3u);  // 0 and both roots skipped
  a->setNextContextIdForTest(0xfffffffeu);
  const uint32_t id4 = b->createStreamContext(&s4);
  EXPECT_EQ(id4, 4u);  // the live streams 0xfffffffe, 0xffffffff and 3 skipped as well
  a->detachStream(0xfffffffeu);
  b->detachStream(0xffffffffu);
  a->detachStream(id3);
  b->detachStream(id4);
}

}  // namespace
}  // namespace skiff::wasm
