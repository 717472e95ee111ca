// Per-worker load balancers: candidate selection (priority, health, panic) and RR / least-request / random.
#include "skiff/upstream/load_balancer.h"

#include <algorithm>
#include <map>
#include <queue>

namespace skiff::upstream {
namespace {

// splitmix64: 8 bytes of state instead of mt19937_64's 2.5 KB, and one balancer exists per cluster per
// worker (10k clusters x N workers). Plenty for spreading picks.
class SmallRng {
 public:
  using result_type = uint64_t;
  explicit SmallRng(uint64_t seed) : state_(seed) {}
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }
  result_type operator()() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

bool usable(const Host& host) {
  return host.healthy.load(std::memory_order_relaxed) && healthStatusIsUsable(host.health_status);
}

// The hosts a balancer picks from, fixed when the balancer is built.
struct Candidates {
  std::vector<HostSharedPtr> hosts;
  bool panic = false;
  bool equal_weights = true;
};

Candidates selectCandidates(const ClusterInfo& info, const HostSet& set) {
  Candidates out;
  std::map<uint32_t, std::vector<HostSharedPtr>> all, healthy;
  size_t healthy_count = 0;
  for (const auto& host : set.hosts) {
    all[host->priority].push_back(host);
    if (usable(*host)) {
      healthy[host->priority].push_back(host);
      ++healthy_count;
    }
  }
  if (all.empty()) return out;
  const size_t total = set.hosts.size();
  if (healthy_count * 100 < static_cast<size_t>(info.healthy_panic_threshold) * total) {
    // Too few healthy hosts: Envoy's panic mode spreads load over every host of the first priority.
    out.panic = true;
    out.hosts = all.begin()->second;
  } else if (!healthy.empty()) {
    out.hosts = healthy.begin()->second;  // lowest priority that has a healthy host
  }
  for (const auto& host : out.hosts) {
    if (host->weight != out.hosts.front()->weight) out.equal_weights = false;
  }
  return out;
}

class BaseLb : public LoadBalancer {
 public:
  BaseLb(const ClusterInfo& info, const HostSet& set, uint64_t seed)
      : info_(info), c_(selectCandidates(info, set)), rng_(seed != 0 ? seed : std::random_device{}()) {
    for (const auto& host : c_.hosts) {
      total_weight_ += host->weight;
      cumulative_.push_back(total_weight_);
    }
  }

  HostSharedPtr chooseHost(const LbContext& ctx) final {
    if (c_.hosts.empty()) return nullptr;
    if (c_.panic) info_.trafficStats().lb_healthy_panic.inc();
    if (c_.hosts.size() == 1) return c_.hosts.front();
    return pick(ctx.avoid);
  }

 protected:
  virtual HostSharedPtr pick(const Host* avoid) = 0;

  // Index of `avoid` among the candidates, or npos.
  size_t indexOf(const Host* avoid) const {
    if (avoid == nullptr) return std::string::npos;
    for (size_t i = 0; i < c_.hosts.size(); ++i) {
      if (c_.hosts[i].get() == avoid) return i;
    }
    return std::string::npos;
  }

  // A random candidate index other than `skip` (uniform, or by weight when weights differ).
  size_t randomIndex(size_t skip) {
    const size_t n = c_.hosts.size();
    if (c_.equal_weights) {
      if (skip == std::string::npos) return rng_() % n;
      size_t i = rng_() % (n - 1);
      return i >= skip ? i + 1 : i;
    }
    const uint64_t skip_weight = skip == std::string::npos ? 0 : c_.hosts[skip]->weight;
    if (skip_weight == total_weight_) return rng_() % n;  // degenerate: only weight-0 others
    uint64_t r = rng_() % (total_weight_ - skip_weight);
    // Map r onto the weight line with the skipped host's segment removed.
    if (skip != std::string::npos && r >= cumulative_[skip] - skip_weight) r += skip_weight;
    return std::upper_bound(cumulative_.begin(), cumulative_.end(), r) - cumulative_.begin();
  }

  const ClusterInfo& info_;
  Candidates c_;
  SmallRng rng_;
  std::vector<uint64_t> cumulative_;
  uint64_t total_weight_ = 0;
};

class RoundRobinLb : public BaseLb {
 public:
  RoundRobinLb(const ClusterInfo& info, const HostSet& set, uint64_t seed) : BaseLb(info, set, seed) {
    if (c_.hosts.empty()) return;
    // Workers start at different offsets so they do not all hit the first host together.
    next_ = rng_() % c_.hosts.size();
    if (!c_.equal_weights) {
      for (size_t i = 0; i < c_.hosts.size(); ++i) push(i, 0.0);
    }
  }

 private:
  struct Entry {
    double deadline;
    uint64_t seq;
    size_t index;
    bool operator>(const Entry& o) const {
      return deadline != o.deadline ? deadline > o.deadline : seq > o.seq;
    }
  };

  void push(size_t index, double now) {
    const double weight = std::max<uint32_t>(c_.hosts[index]->weight, 1);
    schedule_.push(Entry{now + 1.0 / weight, seq_++, index});
  }

  HostSharedPtr pick(const Host* avoid) override {
    if (c_.equal_weights) {
      size_t i = next_++ % c_.hosts.size();
      if (avoid != nullptr && c_.hosts[i].get() == avoid) i = next_++ % c_.hosts.size();
      return c_.hosts[i];
    }
    // Earliest deadline first: a host of weight w is due every 1/w, so picks interleave by weight. Each
    // host has exactly one entry, so when the earliest is the host to avoid, the next one is another host
    // and the avoided entry goes back untouched (keeping its turn).
    Entry e = schedule_.top();
    schedule_.pop();
    if (avoid != nullptr && c_.hosts[e.index].get() == avoid) {
      Entry other = schedule_.top();
      schedule_.pop();
      schedule_.push(e);
      e = other;
    }
    push(e.index, e.deadline);
    return c_.hosts[e.index];
  }

  size_t next_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> schedule_;
};

class LeastRequestLb : public BaseLb {
 public:
  LeastRequestLb(const ClusterInfo& info, const HostSet& set, uint64_t seed)
      : BaseLb(info, set, seed), choices_(std::max<uint32_t>(info.least_request_choice_count, 2)) {}

 private:
  HostSharedPtr pick(const Host* avoid) override {
    const size_t skip = indexOf(avoid);
    size_t best = randomIndex(skip);
    for (uint32_t k = 1; k < choices_; ++k) {
      const size_t other = randomIndex(skip);
      if (c_.hosts[other]->peekStats().rq_active.load(std::memory_order_relaxed) <
          c_.hosts[best]->peekStats().rq_active.load(std::memory_order_relaxed)) {
        best = other;
      }
    }
    return c_.hosts[best];
  }

  uint32_t choices_;
};

class RandomLb : public BaseLb {
 public:
  using BaseLb::BaseLb;

 private:
  HostSharedPtr pick(const Host* avoid) override {
    const size_t skip = indexOf(avoid);
    const size_t n = c_.hosts.size();
    if (skip == std::string::npos) return c_.hosts[rng_() % n];
    const size_t i = rng_() % (n - 1);
    return c_.hosts[i >= skip ? i + 1 : i];
  }
};

}  // namespace

std::optional<asio::ip::tcp::endpoint> parseIpPort(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= text.size()) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // an IPv6 literal must be bracketed
  }
  uint32_t port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9' || port > 65535) return std::nullopt;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port > 65535) return std::nullopt;
  std::error_code ec;
  const auto address = asio::ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  return asio::ip::tcp::endpoint(address, static_cast<uint16_t>(port));
}

OriginalDstLoadBalancer::OriginalDstLoadBalancer(const ClusterInfo& info) : info_(info) {}

HostSharedPtr OriginalDstLoadBalancer::chooseHost(const LbContext& ctx) {
  const auto now = std::chrono::steady_clock::now();
  const auto* od = info_.original_dst ? &*info_.original_dst : nullptr;
  if (od != nullptr && now - last_cleanup_ >= od->cleanup_interval) cleanup(now);

  std::optional<asio::ip::tcp::endpoint> destination;
  if (od != nullptr && od->use_http_header && !ctx.override_host.empty()) {
    destination = parseIpPort(ctx.override_host);
  }
  if (!destination && ctx.connection != nullptr && ctx.connection->local_restored) {
    destination = ctx.connection->local;
  }
  if (!destination) return nullptr;
  if (od != nullptr && od->port_override) destination->port(*od->port_override);

  auto it = hosts_.find(*destination);
  if (it != hosts_.end()) {
    it->second.used = true;
    return it->second.host;
  }
  auto host = std::make_shared<Host>();
  host->endpoint = *destination;
  HostSharedPtr shared = host;
  hosts_.emplace(*destination, Entry{shared, true});
  return shared;
}

void OriginalDstLoadBalancer::cleanup(std::chrono::steady_clock::time_point now) {
  last_cleanup_ = now;
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    if (!it->second.used) {
      it = hosts_.erase(it);  // connections still using the host keep it alive through their shared_ptr
    } else {
      it->second.used = false;
      ++it;
    }
  }
}

std::unique_ptr<LoadBalancer> createLoadBalancer(const ClusterInfo& info, const HostSetConstSharedPtr& hosts,
                                                 uint64_t seed) {
  static const HostSet kEmpty;
  if (info.lb_policy == LbPolicy::kClusterProvided || info.original_dst) {
    return std::make_unique<OriginalDstLoadBalancer>(info);
  }
  const HostSet& set = hosts ? *hosts : kEmpty;
  switch (info.lb_policy) {
    case LbPolicy::kLeastRequest:
      return std::make_unique<LeastRequestLb>(info, set, seed);
    case LbPolicy::kRandom:
      return std::make_unique<RandomLb>(info, set, seed);
    case LbPolicy::kRoundRobin:
    case LbPolicy::kClusterProvided:
      break;
  }
  return std::make_unique<RoundRobinLb>(info, set, seed);
}

}  // namespace skiff::upstream
