// TLS contexts: an immutable snapshot (one SSL_CTX plus what verification needs) per configuration and
// set of secrets. When an SDS secret changes a NEW snapshot is built and swapped in: new handshakes use it,
// connections already made keep the snapshot they started with (they hold a reference).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "skiff/tls/context_config.h"

namespace skiff::stats {
class Store;
}

namespace skiff::tls {

// Opaque: the SSL_CTX and its verification data (defined in src/tls).
class ContextSnapshot;
using ContextSnapshotConstSharedPtr = std::shared_ptr<const ContextSnapshot>;

class TlsContext {
 public:
  // Builds the first snapshot. Throws std::invalid_argument when inline/file material is unusable (a
  // missing SDS secret is not an error: current() stays null until it arrives). Stats are named
  // `<stat_prefix>connection_error`, `<stat_prefix>handshake`, ... (prefix e.g. "cluster.x.ssl.",
  // "listener.0.0.0.0_443.ssl.").
  static std::shared_ptr<TlsContext> makeServer(ServerContextConfig config, stats::Store& store,
                                                std::string stat_prefix);
  static std::shared_ptr<TlsContext> makeClient(ClientContextConfig config, stats::Store& store,
                                                std::string stat_prefix);
  ~TlsContext();

  bool isServer() const;
  // The snapshot new handshakes use; nullptr while an SDS secret is missing or invalid.
  ContextSnapshotConstSharedPtr current() const;
  // Bumped on every successful rebuild.
  uint64_t generation() const;
  // Why the last rebuild failed ("" when it succeeded).
  std::string lastError() const;
  // Rebuilds from the providers' current secrets (SDS callbacks call this). Returns false (and keeps the
  // previous snapshot) when the new material is unusable.
  bool rebuild();

  struct Impl;

 private:
  explicit TlsContext(std::unique_ptr<Impl> impl);
  // SDS updates reach the context through `self`: the last reference may drop on a worker while the secrets
  // thread is notifying, so a callback must never hold a raw pointer.
  static void subscribe(const std::shared_ptr<TlsContext>& self);
  std::unique_ptr<Impl> impl_;
};
using TlsContextSharedPtr = std::shared_ptr<TlsContext>;

}  // namespace skiff::tls
