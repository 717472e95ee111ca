// Remote Wasm code: the process-wide loader (fetch with retries and backoff, SHA-256 check, cache by hash).
#include "wasm/remote_code.h"

#include <openssl/sha.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <map>
#include <vector>

#include "skiff/common/logging.h"
#include "skiff/stats/stats.h"

namespace skiff::wasm {

std::string sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof(digest));
  for (unsigned char b : digest) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

struct RemoteCodeLoader::Impl {
  struct Fetch {
    RemoteSource source;
    std::vector<Done> waiters;
    uint32_t attempt = 0;
    std::unique_ptr<asio::steady_timer> timer;
  };

  Impl(asio::io_context& l, std::unique_ptr<RemoteTransport> t, stats::Store& s)
      : loop(l),
        transport(std::move(t)),
        cache_hits(s.counter("wasm.remote_load_cache_hits")),
        cache_misses(s.counter("wasm.remote_load_cache_misses")),
        fetch_successes(s.counter("wasm.remote_load_fetch_successes")),
        fetch_failures(s.counter("wasm.remote_load_fetch_failures")),
        cache_entries(s.gauge("wasm.remote_load_cache_entries")) {}

  void attempt(const std::string& sha256);
  void finish(const std::string& sha256, std::string code, const std::string& error);

  asio::io_context& loop;
  std::unique_ptr<RemoteTransport> transport;
  std::map<std::string, std::string> cache;  // sha256 → verified code
  std::map<std::string, std::unique_ptr<Fetch>> fetches;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  uint64_t started = 0;
  stats::Counter cache_hits, cache_misses, fetch_successes, fetch_failures;
  stats::Gauge cache_entries;
};

namespace {

RemoteCodeLoader* g_loader = nullptr;

// Owns the loader for the life of its loop: shut down (transport, timers, pending fetches dropped) before
// the loop's reactor goes.
class LoaderService : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;
  explicit LoaderService(asio::execution_context& ctx) : service(ctx) {}
  ~LoaderService() override { shutdown(); }
  void shutdown() override {
    if (loader && g_loader == loader.get()) g_loader = nullptr;
    if (impl) *impl->alive = false;
    loader.reset();
    impl.reset();
  }
  std::unique_ptr<RemoteCodeLoader::Impl> impl;
  std::unique_ptr<RemoteCodeLoader> loader;
};

}  // namespace

void RemoteCodeLoader::install(asio::io_context& loop, std::unique_ptr<RemoteTransport> transport,
                               stats::Store& stats) {
  auto& service = asio::use_service<LoaderService>(loop);
  service.shutdown();
  service.impl = std::make_unique<Impl>(loop, std::move(transport), stats);
  service.loader = std::make_unique<RemoteCodeLoader>(service.impl.get());
  g_loader = service.loader.get();
}

RemoteCodeLoader* RemoteCodeLoader::instance() {
  return g_loader;
}

std::optional<std::string> RemoteCodeLoader::cached(const std::string& sha256) {
  auto it = impl_->cache.find(sha256);
  if (it == impl_->cache.end()) return std::nullopt;
  impl_->cache_hits.inc();
  return it->second;
}

uint64_t RemoteCodeLoader::fetchesStarted() const {
  return impl_->started;
}

void RemoteCodeLoader::load(const RemoteSource& source, Done done) {
  auto it = impl_->fetches.find(source.sha256);
  if (it != impl_->fetches.end()) {
    it->second->waiters.push_back(std::move(done));  // the same code is on its way
    return;
  }
  impl_->cache_misses.inc();
  auto fetch = std::make_unique<Impl::Fetch>();
  fetch->source = source;
  fetch->waiters.push_back(std::move(done));
  impl_->fetches[source.sha256] = std::move(fetch);
  // From the loop: at start-up the clusters are published once the loop runs.
  asio::post(impl_->loop, [impl = impl_, sha = source.sha256, alive = std::weak_ptr<bool>(impl_->alive)] {
    if (auto a = alive.lock(); a && *a) impl->attempt(sha);
  });
}

void RemoteCodeLoader::Impl::attempt(const std::string& sha256) {
  auto it = fetches.find(sha256);
  if (it == fetches.end()) return;
  Fetch& fetch = *it->second;
  ++fetch.attempt;
  ++started;
  std::weak_ptr<bool> weak = alive;
  transport->get(fetch.source, [this, weak, sha256](RemoteTransport::Result result) {
    auto a = weak.lock();
    if (!a || !*a) return;
    auto it = fetches.find(sha256);
    if (it == fetches.end()) return;
    Fetch& fetch = *it->second;
    const RemoteSource& source = fetch.source;
    std::string error;
    if (!result.ok) {
      error = result.error.empty() ? "no response" : result.error;
    } else if (result.status != 200) {
      error = "HTTP status " + std::to_string(result.status);
    } else {
      const std::string got = sha256Hex(result.body);
      if (got != source.sha256) {
        // Not a transient failure: the same bytes would come again, so no retry.
        fetch_failures.inc();
        finish(sha256, "",
               "code.remote " + source.uri + ": sha256 mismatch: the config says " + source.sha256 +
                   ", the fetched code (" + std::to_string(result.body.size()) + " bytes) has " + got +
                   "; not loaded");
        return;
      }
      fetch_successes.inc();
      cache[sha256] = result.body;
      cache_entries.set(static_cast<int64_t>(cache.size()));
      finish(sha256, std::move(result.body), "");
      return;
    }
    fetch_failures.inc();
    if (fetch.attempt <= source.num_retries) {
      // Exponential backoff from base_interval, capped at max_interval.
      auto delay = source.base_interval;
      for (uint32_t i = 1; i < fetch.attempt && delay < source.max_interval; ++i) delay *= 2;
      delay = std::min(delay, source.max_interval);
      SKIFF_LOG(kWasm, warn, "wasm: code.remote {} from cluster {}: {}; retry {}/{} in {} ms", source.uri,
                source.cluster, error, fetch.attempt, source.num_retries, delay.count());
      fetch.timer = std::make_unique<asio::steady_timer>(loop, delay);
      fetch.timer->async_wait([this, weak, sha256](const std::error_code& ec) {
        auto a = weak.lock();
        if (!ec && a && *a) attempt(sha256);
      });
      return;
    }
    finish(sha256, "",
           "code.remote " + source.uri + " from cluster '" + source.cluster + "': " + error + " (after " +
               std::to_string(fetch.attempt) + (fetch.attempt == 1 ? " attempt)" : " attempts)"));
  });
}

void RemoteCodeLoader::Impl::finish(const std::string& sha256, std::string code, const std::string& error) {
  auto it = fetches.find(sha256);
  if (it == fetches.end()) return;
  auto waiters = std::move(it->second->waiters);
  fetches.erase(it);
  for (auto& done : waiters) done(code, error);
}

}  // namespace skiff::wasm
