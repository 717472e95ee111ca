// Remote Wasm code (vm_config.code.remote): fetched on the main loop through a transport the server installs,
// verified against its SHA-256, cached by that hash for the life of the process, with Envoy's retry policy
// and wasm.remote_load_* stats. One fetch per hash at a time: later loads of the same hash join it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace asio {
class io_context;
}
namespace skiff::stats {
class Store;
}

namespace skiff::wasm {

// Lower-case hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);

// What a RemoteDataSource says.
struct RemoteSource {
  std::string uri;
  std::string cluster;
  std::chrono::milliseconds timeout{5000};  // HttpUri.timeout
  std::string sha256;                       // lower-case hex
  uint32_t num_retries = 1;                 // retry_policy.num_retries (Envoy's default: 1)
  std::chrono::milliseconds base_interval{1000};
  std::chrono::milliseconds max_interval{10000};
};

// One HTTP GET through a named cluster, on the loop the loader runs on.
class RemoteTransport {
 public:
  virtual ~RemoteTransport() = default;
  struct Result {
    bool ok = false;  // a response arrived (any status)
    uint32_t status = 0;
    std::string body;
    std::string error;  // why there was no response
  };
  // `done` is called later on the loop (never inside get()), exactly once unless the transport is destroyed.
  virtual void get(const RemoteSource& source, std::function<void(Result)> done) = 0;
};

class RemoteCodeLoader {
 public:
  // `code` empty: the load failed and `error` says why (naming the URI, and both hashes on a mismatch).
  using Done = std::function<void(std::string code, std::string error)>;

  // Installs the process's loader on `loop` (the main loop); it lives until that loop is destroyed.
  static void install(asio::io_context& loop, std::unique_ptr<RemoteTransport> transport,
                      stats::Store& stats);
  // The installed loader, or nullptr (config validation, tests without one). Main thread only.
  static RemoteCodeLoader* instance();

  // The verified code for `sha256` if it was fetched before (counts a cache hit), else nullopt.
  std::optional<std::string> cached(const std::string& sha256);
  // Fetches (or joins the fetch of) `source.sha256`; `done` runs later on the loop.
  void load(const RemoteSource& source, Done done);
  // Fetches made so far (tests).
  uint64_t fetchesStarted() const;

  struct Impl;
  explicit RemoteCodeLoader(Impl* impl) : impl_(impl) {}

 private:
  Impl* impl_;
};

}  // namespace skiff::wasm
