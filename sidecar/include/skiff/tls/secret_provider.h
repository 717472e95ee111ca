// Where TLS secrets (certificates, keys, trust bundles) come from: a name -> current Secret map that tells
// its subscribers when a secret changes. Static bootstrap secrets, file-based SDS (path_config_source) and,
// later, ADS all feed the same interface, so contexts never care which one they read.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace asio {
class io_context;
}
namespace envoy::extensions::transport_sockets::tls::v3 {
class Secret;
class SdsSecretConfig;
}  // namespace envoy::extensions::transport_sockets::tls::v3
namespace envoy::config::core::v3 {
class ConfigSource;
}

namespace skiff::tls {

using Secret = envoy::extensions::transport_sockets::tls::v3::Secret;
using SecretConstSharedPtr = std::shared_ptr<const Secret>;

// Unsubscribes when destroyed.
class SecretSubscription {
 public:
  virtual ~SecretSubscription() = default;
};
using SecretSubscriptionPtr = std::unique_ptr<SecretSubscription>;

class SecretProvider {
 public:
  virtual ~SecretProvider() = default;
  // The current secret called `name`, or nullptr while it is unknown (not yet delivered, or removed).
  virtual SecretConstSharedPtr secret(const std::string& name) const = 0;
  // `callback` runs after `name` changes, on the thread that applied the update (the main thread for ADS,
  // the secrets thread for file SDS). Dropping the subscription does not wait for a callback already
  // running. The subscription must not outlive the provider.
  virtual SecretSubscriptionPtr subscribe(const std::string& name, std::function<void()> callback) = 0;
};
using SecretProviderSharedPtr = std::shared_ptr<SecretProvider>;

// An in-memory provider: bootstrap `static_resources.secrets`, and the sink for file SDS and ADS.
// Data sources naming files are read when a secret is stored (the secret then carries the bytes), so a
// context rebuild never touches the disk and an unchanged file is not an update.
class SecretStore : public SecretProvider {
 public:
  SecretStore();
  ~SecretStore() override;

  SecretConstSharedPtr secret(const std::string& name) const override;
  SecretSubscriptionPtr subscribe(const std::string& name, std::function<void()> callback) override;

  // Stores `secret` (filenames resolved to inline bytes); notifies subscribers when its content changed.
  // Throws std::invalid_argument naming the secret and file when a referenced file cannot be read.
  void update(const Secret& secret);
  void remove(const std::string& name);

  struct State;  // defined in secret_provider.cc

 private:
  std::shared_ptr<State> state_;
};

// File-based SDS (`sds_config.path_config_source`): the file holds a DiscoveryResponse-like document
// (`resources:` of Secrets, YAML or JSON). reload() re-reads it; start() polls the file and the watched
// directory (the `..data` symlink swap of Kubernetes volumes and skiff-certs) on the caller's io_context.
class FileSecretSource {
 public:
  FileSecretSource(std::string path, std::string watched_directory);
  ~FileSecretSource();

  const std::shared_ptr<SecretStore>& store() const { return store_; }
  // Reads the file and every file its secrets name; stores the secrets. Throws std::invalid_argument naming
  // the file on any error (the previous secrets stay in place).
  void reload();
  // Polls every `interval` for changes and reloads; errors are logged and retried on the next change.
  void start(asio::io_context& io, std::chrono::milliseconds interval = std::chrono::milliseconds(200));
  void stop();
  // Reloads that changed nothing or something; for tests and stats.
  uint64_t reloadCount() const;

 private:
  struct Watch;
  void arm();
  std::string path_;
  std::string watched_directory_;
  std::shared_ptr<SecretStore> store_;
  std::shared_ptr<Watch> watch_;
};

// Resolves an SdsSecretConfig's `sds_config` to a provider: no config source (or ADS, until the xDS
// client feeds it) -> the static store; path / path_config_source -> one FileSecretSource per path.
class SecretManager {
 public:
  SecretManager();
  ~SecretManager();

  SecretStore& staticStore() { return *static_store_; }
  // Adds bootstrap `static_resources.secrets`.
  void addStaticSecret(const Secret& secret) { static_store_->update(secret); }
  // Throws std::invalid_argument naming `field_path` when the source is unsupported or its file is bad.
  SecretProviderSharedPtr providerFor(const envoy::config::core::v3::ConfigSource& source,
                                      const std::string& field_path);
  // Starts polling every file source created so far (and later ones) on `io`.
  void startWatching(asio::io_context& io,
                     std::chrono::milliseconds interval = std::chrono::milliseconds(200));

 private:
  std::shared_ptr<SecretStore> static_store_;
  std::map<std::string, std::shared_ptr<FileSecretSource>> files_;
  asio::io_context* io_ = nullptr;
  std::chrono::milliseconds interval_{200};
};

// The proxy's one SecretManager (listeners and clusters resolve their SDS references through it). File
// sources are polled on a small thread of its own, so rotation needs nothing from the main loop; context
// rebuilds run there and swap snapshots under their mutex.
SecretManager& processSecretManager();

}  // namespace skiff::tls
