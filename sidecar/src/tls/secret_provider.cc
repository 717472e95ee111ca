// SecretStore (in-memory secrets with change callbacks), FileSecretSource (file-based SDS with a polled
// watched directory) and SecretManager (which provider an SdsSecretConfig names).
#include "skiff/tls/secret_provider.h"

#include <sys/stat.h>
#include <unistd.h>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "envoy/config/core/v3/config_source.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "skiff/common/logging.h"
#include "skiff/config/config_error.h"
#include "skiff/config/yaml_to_proto.h"

// Deprecated Envoy fields (match_subject_alt_names, ConfigSource.path, old provider fields) are still read.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace skiff::tls {
namespace {

using envoy::config::core::v3::DataSource;

std::string readFileOrThrow(const std::string& file, const std::string& what) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::invalid_argument(what + ": cannot read file " + file);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Replaces a filename data source with the file's bytes.
void inlineFile(DataSource* ds, const std::string& what) {
  if (ds->specifier_case() != DataSource::kFilename) return;
  std::string bytes = readFileOrThrow(ds->filename(), what);
  ds->set_inline_bytes(std::move(bytes));
}

Secret resolveFiles(const Secret& in) {
  Secret out = in;
  const std::string what = "secret " + in.name();
  if (out.has_tls_certificate()) {
    auto* cert = out.mutable_tls_certificate();
    inlineFile(cert->mutable_certificate_chain(), what + " certificate_chain");
    inlineFile(cert->mutable_private_key(), what + " private_key");
  }
  if (out.has_validation_context() && out.validation_context().has_trusted_ca()) {
    inlineFile(out.mutable_validation_context()->mutable_trusted_ca(), what + " trusted_ca");
  }
  return out;
}

}  // namespace

struct SecretStore::State {
  struct Subscriber {
    std::string name;
    std::function<void()> callback;
  };
  mutable std::mutex mu;
  std::map<std::string, SecretConstSharedPtr> secrets;
  std::map<uint64_t, Subscriber> subscribers;
  uint64_t next_id = 1;

  void notify(const std::string& name) {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [id, sub] : subscribers) {
        if (sub.name == name) callbacks.push_back(sub.callback);
      }
    }
    for (auto& cb : callbacks) cb();
  }
};

namespace {
class StoreSubscription : public SecretSubscription {
 public:
  StoreSubscription(std::weak_ptr<SecretStore::State> state, uint64_t id)
      : state_(std::move(state)), id_(id) {}
  ~StoreSubscription() override {
    if (auto state = state_.lock()) {
      std::lock_guard<std::mutex> lock(state->mu);
      state->subscribers.erase(id_);
    }
  }

 private:
  std::weak_ptr<SecretStore::State> state_;
  uint64_t id_;
};
}  // namespace

SecretStore::SecretStore() : state_(std::make_shared<State>()) {}
SecretStore::~SecretStore() = default;

SecretConstSharedPtr SecretStore::secret(const std::string& name) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->secrets.find(name);
  return it == state_->secrets.end() ? nullptr : it->second;
}

SecretSubscriptionPtr SecretStore::subscribe(const std::string& name, std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(state_->mu);
  uint64_t id = state_->next_id++;
  state_->subscribers.emplace(id, State::Subscriber{name, std::move(callback)});
  return std::make_unique<StoreSubscription>(state_, id);
}

void SecretStore::update(const Secret& secret) {
  if (secret.name().empty()) throw std::invalid_argument("secret without a name");
  auto resolved = std::make_shared<const Secret>(resolveFiles(secret));
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    auto& slot = state_->secrets[secret.name()];
    if (slot && slot->SerializeAsString() == resolved->SerializeAsString()) return;
    slot = std::move(resolved);
  }
  state_->notify(secret.name());
}

void SecretStore::remove(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->secrets.erase(name) == 0) return;
  }
  state_->notify(name);
}

// ---- FileSecretSource ----

struct FileSecretSource::Watch {
  explicit Watch(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
  std::chrono::milliseconds interval{200};
  std::string fingerprint;
  bool stopped = false;
  uint64_t reloads = 0;
};

namespace {
// Changes whenever the file is replaced or rewritten, or the watched directory's `..data` link (or the
// directory itself) changes.
std::string fingerprintOf(const std::string& path, const std::string& dir) {
  std::string out;
  auto add = [&out](const std::string& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {
      out += "missing;";
      return;
    }
    out += std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ";";
  };
  add(path);
  if (!dir.empty()) {
    add(dir);
    char target[4096];
    ssize_t n = ::readlink((dir + "/..data").c_str(), target, sizeof(target));
    if (n > 0) out.append(target, static_cast<size_t>(n));
  }
  return out;
}
}  // namespace

FileSecretSource::FileSecretSource(std::string path, std::string watched_directory)
    : path_(std::move(path)),
      watched_directory_(std::move(watched_directory)),
      store_(std::make_shared<SecretStore>()) {}

FileSecretSource::~FileSecretSource() {
  stop();
}

void FileSecretSource::reload() {
  std::string text = readFileOrThrow(path_, "SDS file");
  envoy::service::discovery::v3::DiscoveryResponse response;
  std::vector<std::string> warnings;
  try {
    config::loadMessageYaml(text, response, warnings);
  } catch (const std::exception& e) {
    throw std::invalid_argument("SDS file " + path_ + ": " + e.what());
  }
  std::vector<Secret> secrets;
  for (int i = 0; i < response.resources_size(); ++i) {
    Secret secret;
    if (!response.resources(i).UnpackTo(&secret)) {
      throw std::invalid_argument("SDS file " + path_ + ": resources[" + std::to_string(i) + "] is " +
                                  response.resources(i).type_url() + ", not a Secret");
    }
    // Read every referenced file before storing anything, so a half-written generation is never applied.
    secrets.push_back(resolveFiles(secret));
  }
  for (const auto& secret : secrets) store_->update(secret);
  if (watch_) ++watch_->reloads;
}

void FileSecretSource::start(asio::io_context& io, std::chrono::milliseconds interval) {
  if (watch_) return;
  watch_ = std::make_shared<Watch>(io);
  watch_->interval = interval;
  watch_->fingerprint = fingerprintOf(path_, watched_directory_);
  arm();
}

void FileSecretSource::arm() {
  std::weak_ptr<Watch> weak = watch_;
  watch_->timer.expires_after(watch_->interval);
  watch_->timer.async_wait([this, weak](const std::error_code& ec) {
    auto watch = weak.lock();
    if (ec || !watch || watch->stopped) return;
    std::string now = fingerprintOf(path_, watched_directory_);
    if (now != watch->fingerprint) {
      try {
        reload();
        watch->fingerprint = now;  // only after a good reload: a torn write is retried on the next tick
      } catch (const std::exception& e) {
        SKIFF_LOG(kConfig, warn, "SDS reload of {} failed (keeping the previous secrets): {}", path_,
                  e.what());
      }
    }
    arm();
  });
}

void FileSecretSource::stop() {
  if (!watch_) return;
  watch_->stopped = true;
  watch_->timer.cancel();
  watch_.reset();
}

uint64_t FileSecretSource::reloadCount() const {
  return watch_ ? watch_->reloads : 0;
}

// ---- SecretManager ----

SecretManager::SecretManager() : static_store_(std::make_shared<SecretStore>()) {}
SecretManager::~SecretManager() = default;

SecretProviderSharedPtr SecretManager::providerFor(const envoy::config::core::v3::ConfigSource& source,
                                                   const std::string& field_path) {
  using CS = envoy::config::core::v3::ConfigSource;
  std::string path;
  std::string dir;
  switch (source.config_source_specifier_case()) {
    case CS::CONFIG_SOURCE_SPECIFIER_NOT_SET:
    case CS::kAds:
    case CS::kApiConfigSource:
      // Static secrets; ADS/API-delivered secrets will be stored here by the xDS client.
      return static_store_;
    case CS::kPath:
      path = source.path();
      break;
    case CS::kPathConfigSource:
      path = source.path_config_source().path();
      dir = source.path_config_source().watched_directory().path();
      break;
    default:
      throw std::invalid_argument(field_path + ": unsupported config source for SDS");
  }
  if (path.empty()) throw std::invalid_argument(field_path + ".path_config_source.path: empty");
  auto it = files_.find(path);
  if (it == files_.end()) {
    auto source_ptr = std::make_shared<FileSecretSource>(path, dir);
    try {
      source_ptr->reload();
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(field_path + ": " + e.what());
    }
    if (io_ != nullptr) source_ptr->start(*io_, interval_);
    it = files_.emplace(path, std::move(source_ptr)).first;
  }
  // The provider's lifetime is tied to the manager; hand out the store (aliasing keeps the source alive).
  return SecretProviderSharedPtr(it->second, it->second->store().get());
}

void SecretManager::startWatching(asio::io_context& io, std::chrono::milliseconds interval) {
  io_ = &io;
  interval_ = interval;
  for (auto& [path, source] : files_) source->start(io, interval);
}

}  // namespace skiff::tls
