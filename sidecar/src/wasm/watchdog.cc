// The watchdog thread: started with the first VM, it scans the watched VMs a few times per limit and
// terminates a call whose generation has not changed for longer than the limit.
#include "wasm/watchdog.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "wasm/engine.h"

namespace skiff::wasm {

namespace {
std::chrono::milliseconds initialLimit() {
  if (const char* v = std::getenv("SKIFF_WASM_MAX_EXECUTION_MS"))
    return std::chrono::milliseconds(std::atoll(v));
  return std::chrono::milliseconds(1000);
}
std::atomic<int64_t> g_limit_ms{initialLimit().count()};
}  // namespace

class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog* w = new Watchdog();  // never joined: lives as long as the process
    return *w;
  }

  void add(WatchedCall* call, engine::Instance* instance) {
    std::lock_guard<std::mutex> lock(mu_);
    call->instance_ = instance;
    calls_.push_back(call);
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
  }

  void remove(WatchedCall* call) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.erase(std::remove(calls_.begin(), calls_.end(), call), calls_.end());
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      const auto limit = std::chrono::milliseconds(g_limit_ms.load(std::memory_order_relaxed));
      // A few scans per limit: a stuck call is stopped between 1x and ~1.25x the limit.
      const auto period = limit.count() > 0 ? std::max(limit / 4, std::chrono::milliseconds(5))
                                            : std::chrono::milliseconds(500);
      wake_.wait_for(lock, period);
      if (limit.count() <= 0) continue;
      const auto now = std::chrono::steady_clock::now();
      for (WatchedCall* call : calls_) scan(*call, now, limit);
    }
  }

  static void scan(WatchedCall& call, std::chrono::steady_clock::time_point now,
                   std::chrono::milliseconds limit) {
    uint64_t g = call.busy_.load(std::memory_order_relaxed);
    if (g == 0 || g == WatchedCall::kTerminating) {
      call.seen_ = 0;
      return;
    }
    if (g != call.seen_) {
      call.seen_ = g;
      call.seen_since_ = now;
      return;
    }
    if (now - call.seen_since_ < limit) return;
    // Still the same call: claim it, so the owner cannot start another one before termination lands.
    if (!call.busy_.compare_exchange_strong(g, WatchedCall::kTerminating, std::memory_order_acq_rel)) return;
    call.instance_->terminate();
    call.terminate_done_.store(true, std::memory_order_release);
    call.seen_ = 0;
  }

  std::mutex mu_;  // guards calls_ (registration only; the owners never take it per call)
  std::condition_variable wake_;
  std::vector<WatchedCall*> calls_;
  bool started_ = false;
};

bool WatchedCall::leave(engine::Instance& instance) {
  if (busy_.exchange(0, std::memory_order_acq_rel) != kTerminating) return false;
  while (!terminate_done_.load(std::memory_order_acquire)) std::this_thread::yield();
  terminate_done_.store(false, std::memory_order_relaxed);
  instance.cancelTerminate();
  return true;
}

std::chrono::milliseconds executionTimeLimit() {
  return std::chrono::milliseconds(g_limit_ms.load(std::memory_order_relaxed));
}

void setExecutionTimeLimit(std::chrono::milliseconds limit) {
  g_limit_ms.store(limit.count(), std::memory_order_relaxed);
}

void watch(WatchedCall* call, engine::Instance* instance) {
  Watchdog::instance().add(call, instance);
}

void unwatch(WatchedCall* call) {
  Watchdog::instance().remove(call);
}

}  // namespace skiff::wasm
