// Loads libskiff_wasm_v8.so once per process: the path next to the executable (or $SKIFF_WASM_ENGINE),
// dlopen, one dlsym of the entry point, and the interface version check.
#include "wasm/engine_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

namespace skiff::wasm {
namespace {

std::mutex g_mu;
std::atomic<engine::Engine*> g_engine{nullptr};

std::string exeDir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

engine::Engine* tryLoad(std::string* error) {
  std::string tried;
  for (const std::string& path : engineCandidates()) {
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = ::dlerror();
      tried += (tried.empty() ? "" : "; ") + std::string(why ? why : path + ": cannot be loaded");
      continue;
    }
    auto entry = reinterpret_cast<engine::EntryPoint>(::dlsym(handle, engine::kEntryPoint));
    if (entry == nullptr) {
      tried += (tried.empty() ? "" : "; ") + path + ": no " + engine::kEntryPoint + " entry point";
      ::dlclose(handle);
      continue;
    }
    auto* eng = static_cast<engine::Engine*>(entry(engine::kInterfaceVersion));
    if (eng == nullptr) {
      tried += (tried.empty() ? "" : "; ") + path + ": built for another engine interface version";
      ::dlclose(handle);
      continue;
    }
    return eng;  // never unloaded: V8 cannot be torn down and re-initialised in a process
  }
  *error = "config.vm_config.runtime: cannot load the V8 Wasm engine (" + std::string(kEngineModuleName) +
           ", or set " + kEngineEnvVar + "): " + tried;
  return nullptr;
}

}  // namespace

std::vector<std::string> engineCandidates() {
  if (const char* path = std::getenv(kEngineEnvVar); path != nullptr && *path != '\0') return {path};
  const std::string dir = exeDir();
  return {dir + "/../lib/" + kEngineModuleName, dir + "/" + kEngineModuleName};
}

engine::Engine* loadEngine(std::string* error) {
  if (engine::Engine* eng = g_engine.load(std::memory_order_acquire)) return eng;
  std::lock_guard<std::mutex> lock(g_mu);
  if (engine::Engine* eng = g_engine.load(std::memory_order_relaxed)) return eng;
  // A failure is not remembered: config loads are rare, and the module may have been installed since.
  engine::Engine* eng = tryLoad(error);
  if (eng == nullptr) return nullptr;
  g_engine.store(eng, std::memory_order_release);
  return eng;
}

bool engineLoaded() {
  return g_engine.load(std::memory_order_acquire) != nullptr;
}

}  // namespace skiff::wasm
