// skiff-xds-driver: a command-line ADS client on skiff_xds, for integration tests and debugging.
//
//   skiff-xds-driver --target HOST:PORT [--delta] [--node-id ID] [--backoff-ms N]
//                    --subscribe TYPE_URL[=NAME,NAME...] ...
// Each resource is decoded into its generated type; one that does not decode is NACKed. Prints one JSON line
// per event: {"event":"update",...} / {"event":"connected","value":bool} /
// {"event":"init_fetch_timeout",...}. Stdin commands: "watch TYPE_URL NAME,NAME" (change a named
// subscription), "stats", "quit".

#include <condition_variable>
#include <deque>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "skiff/api/api_types.h"

#include "skiff/xds/ads_client.h"
#include "skiff/xds/node.h"

namespace skiff::xds {}

namespace {

// The driver's owner thread: a queue of closures.
class Loop {
 public:
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  void run() {
    while (true) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return !queue_.empty() || stopped_; });
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopped_ = false;
};

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

std::string list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + quote(items[i]);
  return out + "]";
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Decodes every resource into its generated type; the first failure is the NACK text.
std::string validate(const skiff::xds::ConfigUpdate& update) {
  for (const auto& resource : update.resources) {
    const std::string type_name = update.type_url.substr(update.type_url.rfind('/') + 1);
    const auto* descriptor =
        google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type_name);
    if (!descriptor) return update.type_url + ": type not compiled into this driver";
    std::unique_ptr<google::protobuf::Message> message(
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
    if (!message->ParseFromString(resource.resource.value())) {
      return type_name + " '" + resource.name + "': the resource does not decode (malformed bytes)";
    }
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  skiff::api::linkAllApiTypes();
  skiff::xds::AdsClientOptions options;
  std::vector<std::pair<std::string, std::vector<std::string>>> subscriptions;
  options.node.set_id("skiff-xds-driver");
  options.node.set_cluster("driver");
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--target") {
      options.target = next();
    } else if (arg == "--delta") {
      options.delta = true;
    } else if (arg == "--node-id") {
      options.node.set_id(next());
    } else if (arg == "--backoff-ms") {
      options.backoff_base = std::chrono::milliseconds(std::stoi(next()));
    } else if (arg == "--subscribe") {
      const std::string spec = next();
      const size_t eq = spec.find('=');
      subscriptions.emplace_back(spec.substr(0, eq), eq == std::string::npos ? std::vector<std::string>{}
                                                                             : split(spec.substr(eq + 1)));
    } else {
      std::cerr << "unknown argument " << arg << "\n";
      return 2;
    }
  }
  if (options.target.empty() || subscriptions.empty()) {
    std::cerr << "usage: skiff-xds-driver --target HOST:PORT [--delta] --subscribe TYPE_URL[=NAMES] ...\n";
    return 2;
  }
  skiff::xds::foldIstioMetaEnv(skiff::xds::processEnvironment(), *options.node.mutable_metadata());
  skiff::xds::setSkiffIdentity(options.node);

  Loop loop;
  options.executor = [&loop](std::function<void()> fn) { loop.post(std::move(fn)); };
  options.on_connection_state = [](bool connected) {
    std::cout << "{\"event\":\"connected\",\"value\":" << (connected ? "true" : "false") << "}" << std::endl;
  };
  auto client = std::make_unique<skiff::xds::AdsClient>(options);
  loop.post([&] {
    for (const auto& [type_url, names] : subscriptions) {
      skiff::xds::SubscriptionCallbacks callbacks;
      callbacks.on_update = [](const skiff::xds::ConfigUpdate& update) {
        const std::string error = validate(update);
        std::vector<std::string> names;
        for (const auto& r : update.resources) names.push_back(r.name);
        std::cout << "{\"event\":\"update\",\"type_url\":" << quote(update.type_url)
                  << ",\"version\":" << quote(update.system_version) << ",\"resources\":" << list(names)
                  << ",\"removed\":" << list(update.removed)
                  << ",\"accepted\":" << (error.empty() ? "true" : "false") << ",\"error\":" << quote(error)
                  << "}" << std::endl;
        return error;
      };
      callbacks.on_initial_fetch_timeout = [type_url = type_url] {
        std::cout << "{\"event\":\"init_fetch_timeout\",\"type_url\":" << quote(type_url) << "}" << std::endl;
      };
      client->subscribe(type_url, names, std::move(callbacks));
    }
    client->start();
  });

  std::thread input([&] {
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream words(line);
      std::string command, type_url, names;
      words >> command >> type_url >> names;
      if (command == "quit") break;
      if (command == "watch") {
        loop.post([&client, type_url, names] { client->updateSubscription(type_url, split(names)); });
      } else if (command == "stats") {
        loop.post([&client] {
          const auto& stats = client->stats();
          std::cout << "{\"event\":\"stats\",\"connected\":" << (stats.connected ? "true" : "false")
                    << ",\"streams_started\":" << stats.streams_started
                    << ",\"streams_closed\":" << stats.streams_closed << "}" << std::endl;
        });
      }
    }
    loop.post([&] {
      client.reset();
      loop.stop();
    });
  });
  loop.run();
  input.join();
  return 0;
}
