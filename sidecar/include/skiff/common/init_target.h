// Envoy's init targets for a listener: work its filters need done before the listener may go active (a
// Wasm plugin's code.remote fetch). The listener manager opens an InitScope around building a listener;
// a filter factory built inside it registers a target and later marks it ready, on the main thread.
// Header-only; main thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace skiff::init {

class Targets : public std::enable_shared_from_this<Targets> {
 public:
  // Registers a target named `name` (names may repeat: each target has its own id); the returned function
  // marks it ready. Once: every copy of the function shares one flag, and calls after this object is gone
  // do nothing.
  std::function<void()> add(std::string name) {
    const uint64_t id = next_id_++;
    pending_.push_back({id, std::move(name)});
    return [weak = weak_from_this(), id, done = std::make_shared<bool>(false)] {
      if (*done) return;
      *done = true;
      if (auto self = weak.lock()) self->markReady(id);
    };
  }
  bool ready() const { return pending_.empty(); }
  // The names of the targets not ready yet, in the order they were added.
  std::vector<std::string> pending() const {
    std::vector<std::string> names;
    names.reserve(pending_.size());
    for (const auto& target : pending_) names.push_back(target.name);
    return names;
  }
  // Runs `callback` when the last pending target becomes ready (never when already ready).
  void onReady(std::function<void()> callback) { on_ready_ = std::move(callback); }

 private:
  struct Target {
    uint64_t id;
    std::string name;
  };

  void markReady(uint64_t id) {
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->id == id) {
        pending_.erase(it);
        break;
      }
    }
    if (pending_.empty() && on_ready_) {
      auto callback = std::move(on_ready_);
      on_ready_ = nullptr;
      callback();  // may destroy this object
    }
  }

  std::vector<Target> pending_;
  uint64_t next_id_ = 0;
  std::function<void()> on_ready_;
};

// While alive, InitScope::current() is the targets of the listener being built on this thread.
class InitScope {
 public:
  InitScope() : targets_(std::make_shared<Targets>()), previous_(current_) { current_ = this; }
  ~InitScope() { current_ = previous_; }
  InitScope(const InitScope&) = delete;
  InitScope& operator=(const InitScope&) = delete;

  // The innermost scope's targets, or nullptr outside any (config validation, tests): nothing waits.
  static Targets* current() { return current_ ? current_->targets_.get() : nullptr; }
  const std::shared_ptr<Targets>& targets() const { return targets_; }

 private:
  std::shared_ptr<Targets> targets_;
  InitScope* previous_;
  static inline thread_local InitScope* current_ = nullptr;
};

}  // namespace skiff::init
