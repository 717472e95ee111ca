// What the HTTP and the network Wasm filters share: PluginConfig parsing, and plugins whose code arrives
// later (vm_config.code.remote), read by workers once the main thread has it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "envoy/extensions/wasm/v3/wasm.pb.h"
#include "skiff/http/filter.h"
#include "wasm/plugin.h"
#include "wasm/remote_code.h"

namespace asio {
class io_context;
}
namespace skiff::upstream {
class ClusterManager;
}
namespace skiff::stats {
class Store;
}

namespace skiff::filters::wasm {

// PluginConfig → PluginSpec (runtime checked, local code read, configurations unwrapped, environment, failure
// policy). With code.remote, `*remote` is set and spec.code stays empty (remote == nullptr: a config error).
// Throws std::invalid_argument naming the field (prefixed with `what`, e.g. "wasm").
skiff::wasm::PluginSpec parsePluginProto(const envoy::extensions::wasm::v3::PluginConfig& plugin,
                                         const std::string& what,
                                         std::optional<skiff::wasm::RemoteSource>* remote);

// Fetches `remote` for `spec` (from the cache when the hash was loaded before) and calls `done` on the main
// thread with the spec completed with its code, or with an error naming the plugin (and both hashes on a
// mismatch). May call `done` before returning (cache hit). Without a loader (config validation) nothing
// happens and false is returned.
bool loadRemoteCode(std::shared_ptr<skiff::wasm::PluginSpec> spec, const skiff::wasm::RemoteSource& remote,
                    std::function<void(std::shared_ptr<skiff::wasm::PluginSpec>, std::string error)> done);

// The init target a plugin's code.remote fetch holds its listener's warming with.
inline std::string remoteTargetName(const std::string& plugin) {
  return "wasm plugin '" + plugin + "' code.remote";
}

// Installs the process's remote-code loader on the main loop: fetches go through that loop's own view of
// `clusters` (refreshed at each attempt) with HTTP/1.1. Called once by the server at start-up.
void installRemoteCodeFetch(asio::io_context& main, const upstream::ClusterManager& clusters,
                            stats::Store& stats);

// A filter config that becomes ready (or failed) once, on the main thread, and is read by workers without
// locks: the config is written before the state is released.
template <typename Config>
class PendingConfig {
 public:
  enum State { kPending = 0, kReady = 1, kFailed = 2 };
  std::shared_ptr<const Config> ready() const {
    return state_.load(std::memory_order_acquire) == kReady ? config_ : nullptr;
  }
  State state() const { return static_cast<State>(state_.load(std::memory_order_acquire)); }
  void set(std::shared_ptr<const Config> config) {
    config_ = std::move(config);
    state_.store(kReady, std::memory_order_release);
  }
  void fail() { state_.store(kFailed, std::memory_order_release); }

 private:
  std::shared_ptr<const Config> config_;
  std::atomic<int> state_{kPending};
};

// Answers every request 503 (details wasm_fail_stream): a fail-closed plugin whose code is not there.
class FailClosedFilter : public http::StreamFilter {
 public:
  void setDecoderFilterCallbacks(http::DecoderFilterCallbacks& callbacks) override { decoder_ = &callbacks; }
  void setEncoderFilterCallbacks(http::EncoderFilterCallbacks&) override {}
  http::HeadersStatus decodeHeaders(http::HeaderMap&, bool) override {
    decoder_->sendLocalReply(503, "", "wasm_fail_stream");
    return http::HeadersStatus::kStop;
  }
  http::HeadersStatus encodeHeaders(http::HeaderMap&, bool) override {
    return http::HeadersStatus::kContinue;
  }

 private:
  http::DecoderFilterCallbacks* decoder_ = nullptr;
};

}  // namespace skiff::filters::wasm
