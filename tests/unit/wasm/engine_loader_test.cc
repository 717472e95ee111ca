// The engine module loader: where it looks, the env override, errors naming the config field, load once.
#include "wasm/engine_loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "skiff/stats/stats.h"
#include "wasm/plugin.h"

namespace skiff::wasm {
namespace {

// Sets or clears SKIFF_WASM_ENGINE for one test.
class EngineEnv {
 public:
  explicit EngineEnv(const char* value) {
    if (const char* old = std::getenv(kEngineEnvVar)) old_ = old;
    if (value) {
      ::setenv(kEngineEnvVar, value, 1);
    } else {
      ::unsetenv(kEngineEnvVar);
    }
  }
  ~EngineEnv() {
    if (old_) {
      ::setenv(kEngineEnvVar, old_->c_str(), 1);
    } else {
      ::unsetenv(kEngineEnvVar);
    }
  }

 private:
  std::optional<std::string> old_;
};

std::string exeDir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string path(buf, n > 0 ? static_cast<size_t>(n) : 0);
  return path.substr(0, path.rfind('/'));
}

TEST(WasmEngineLoaderTest, LooksNextToTheExecutable) {
  EngineEnv env(nullptr);
  const auto c = engineCandidates();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0], exeDir() + "/../lib/libskiff_wasm_v8.so");
  EXPECT_EQ(c[1], exeDir() + "/libskiff_wasm_v8.so");
}

TEST(WasmEngineLoaderTest, EnvironmentOverridesTheSearch) {
  EngineEnv env("/opt/x/libengine.so");
  EXPECT_EQ(engineCandidates(), std::vector<std::string>{"/opt/x/libengine.so"});
}

// Once an engine is loaded the process keeps it, so the failure cases run only before (ctest runs every
// test in a process of its own).
TEST(WasmEngineLoaderTest, MissingModuleIsAnErrorNamingTheField) {
  if (engineLoaded()) GTEST_SKIP() << "an engine is already loaded in this process";
  EngineEnv env("/nonexistent/dir/libskiff_wasm_v8.so");
  std::string error;
  EXPECT_EQ(loadEngine(&error), nullptr);
  EXPECT_NE(error.find("config.vm_config.runtime"), std::string::npos) << error;
  EXPECT_NE(error.find("/nonexistent/dir/libskiff_wasm_v8.so"), std::string::npos) << error;
  EXPECT_FALSE(engineLoaded());

  // A plugin then fails to start with the same reason.
  stats::Store store(1);
  auto spec = std::make_shared<PluginSpec>();
  spec->name = "p";
  spec->code = "not wasm";
  error.clear();
  EXPECT_EQ(PluginVm::create(spec, &store, nullptr, &error), nullptr);
  EXPECT_NE(error.find("config.vm_config.runtime"), std::string::npos) << error;
}

TEST(WasmEngineLoaderTest, LibraryWithoutTheEntryPointIsRejected) {
  if (engineLoaded()) GTEST_SKIP() << "an engine is already loaded in this process";
  EngineEnv env("libm.so.6");  // loads fine, but is no engine
  std::string error;
  EXPECT_EQ(loadEngine(&error), nullptr);
  EXPECT_NE(error.find("no skiff_wasm_engine entry point"), std::string::npos) << error;
  EXPECT_FALSE(engineLoaded());
}

TEST(WasmEngineLoaderTest, LoadsOnceFromTheBuildTree) {
  EngineEnv env(nullptr);
  std::string error;
  engine::Engine* first = loadEngine(&error);
  ASSERT_NE(first, nullptr) << error;
  EXPECT_TRUE(engineLoaded());
  EXPECT_EQ(loadEngine(&error), first);
  // Later loads do not look at the environment again.
  EngineEnv bad("/nonexistent/libskiff_wasm_v8.so");
  EXPECT_EQ(loadEngine(&error), first);
}

TEST(WasmEngineLoaderTest, NotMappedBeforeFirstUse) {
  if (engineLoaded()) GTEST_SKIP() << "an engine is already loaded in this process";
  std::ifstream maps("/proc/self/maps");
  std::string line;
  bool libstdcxx = false;
  while (std::getline(maps, line)) {
    EXPECT_EQ(line.find("libnode"), std::string::npos) << line;
    EXPECT_EQ(line.find("libskiff_wasm_v8"), std::string::npos) << line;
    libstdcxx |= line.find("libstdc++") != std::string::npos;
  }
  EXPECT_TRUE(libstdcxx);  // the listing itself was read
}

}  // namespace
}  // namespace skiff::wasm
