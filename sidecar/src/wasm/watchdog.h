// The execution-time limit: a guest call that runs longer than the limit is terminated from a watchdog
// thread (V8 TerminateExecution), so a module stuck in a loop fails its VM instead of hanging a worker.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace skiff::wasm {

namespace engine {
class Instance;
}

// What a Vm shares with the watchdog. The owner thread marks calls; the watchdog only reads the marks
// and, for an overrunning call, swaps in kTerminating and terminates the instance.
class WatchedCall {
 public:
  static constexpr uint64_t kTerminating = ~uint64_t{0};

  // Outermost guest call of the owner thread: two atomic operations, no clock read.
  void enter() { busy_.store(++generation_, std::memory_order_relaxed); }
  // Returns true when the watchdog terminated this call (the instance's termination is then cancelled so
  // the next call can run).
  bool leave(engine::Instance& instance);

 private:
  friend class Watchdog;
  std::atomic<uint64_t> busy_{0};  // generation of the running call, 0 idle
  std::atomic<bool> terminate_done_{false};
  uint64_t generation_ = 0;  // owner thread only
  // Watchdog-only bookkeeping.
  uint64_t seen_ = 0;
  std::chrono::steady_clock::time_point seen_since_{};
  engine::Instance* instance_ = nullptr;
};

// Limit for one guest call (0: none). Default 1000 ms, or $SKIFF_WASM_MAX_EXECUTION_MS.
std::chrono::milliseconds executionTimeLimit();
void setExecutionTimeLimit(std::chrono::milliseconds limit);

// Starts watching `call` (its instance terminated when it overruns) until unwatch().
void watch(WatchedCall* call, engine::Instance* instance);
void unwatch(WatchedCall* call);

}  // namespace skiff::wasm
