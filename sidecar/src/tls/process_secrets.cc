// processSecretManager(): the process-wide SecretManager and the thread that polls file-based SDS.
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <thread>

#include "skiff/tls/secret_provider.h"

namespace skiff::tls {
namespace {

struct ProcessSecrets {
  ProcessSecrets() : work(io.get_executor()) {
    // OpenSSL registers its atexit cleanup on first initialisation; doing it before this static finishes
    // construction makes that cleanup run after our destructor, so the thread's OPENSSL_thread_stop()
    // below still frees its state.
    OPENSSL_init_ssl(0, nullptr);
    manager.startWatching(io);
    thread = std::thread([this] {
      io.run();
      OPENSSL_thread_stop();  // this thread's error queue and caches (a failed reload leaves entries there)
    });
  }
  ~ProcessSecrets() {
    work.reset();
    io.stop();
    if (thread.joinable()) thread.join();
  }
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  SecretManager manager;
  std::thread thread;
};

}  // namespace

SecretManager& processSecretManager() {
  static ProcessSecrets secrets;
  return secrets.manager;
}

}  // namespace skiff::tls
