// Remote Wasm code for the filters: the main-loop transport (an HttpCallout through the named cluster) the
// server installs, and loadRemoteCode (cache, else the process loader) that both Wasm filters use.
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <vector>

#include "filters/http/common/http_callout.h"
#include "filters/http/wasm/wasm_plugin_config.h"
#include "skiff/common/logging.h"
#include "skiff/upstream/cluster_manager.h"
#include "skiff/upstream/conn_pool.h"
#include "skiff/upstream/thread_local_cluster.h"

namespace skiff::filters::wasm {
namespace {

using skiff::wasm::RemoteSource;
using skiff::wasm::RemoteTransport;

// Modules are rarely above a few MiB; the cap keeps a wrong URI from filling the main thread's memory.
constexpr uint32_t kMaxCodeBytes = 64 << 20;

// GETs on the main loop with a private view of the clusters, copied from the cluster manager's last
// published snapshot at each attempt (so a cluster that is still warming is simply retried later).
class CalloutTransport final : public RemoteTransport {
 public:
  CalloutTransport(asio::io_context& loop, const upstream::ClusterManager& clusters)
      : loop_(loop), cluster_manager_(clusters), pools_(loop) {}
  ~CalloutTransport() override {
    for (auto& weak : calls_) {
      if (auto call = weak.lock()) call->cancel();
    }
  }

  void get(const RemoteSource& source, std::function<void(Result)> done) override {
    auto fail = [&](std::string why) {
      asio::post(loop_, [done = std::move(done), why = std::move(why)] { done(Result{false, 0, "", why}); });
    };
    auto info = cluster_manager_.info(source.cluster);
    auto hosts = cluster_manager_.hosts(source.cluster);
    if (!info || !hosts) return fail("unknown cluster '" + source.cluster + "' (or it has no hosts yet)");
    clusters_.update(source.cluster, info, hosts);
    // http[s]://authority/path
    const size_t scheme_end = source.uri.find("://");
    const size_t path_at = source.uri.find('/', scheme_end + 3);
    const std::string authority = source.uri.substr(scheme_end + 3, path_at - (scheme_end + 3));
    const std::string path = path_at == std::string::npos ? "/" : source.uri.substr(path_at);
    http::HeaderMap headers;
    headers.add(":method", "GET");
    headers.add(":path", path);
    headers.add(":authority", authority);
    headers.add(":scheme", source.uri.substr(0, scheme_end));
    HttpCallout::StartError error;
    auto call = HttpCallout::start(
        CalloutTarget{&loop_, &clusters_, &pools_}, kMaxCodeBytes, source.cluster, std::move(headers), "",
        source.timeout,
        [done](HttpCallout::Response r) {
          if (!r.headers) return done(Result{false, 0, "", "the fetch failed (reset, refused or timed out)"});
          const std::string* status = r.headers->get(":status");
          done(Result{true, status == nullptr ? 0u : static_cast<uint32_t>(std::atoi(status->c_str())),
                      std::move(r.body), ""});
        },
        &error);
    if (!call) {
      return fail(error == HttpCallout::StartError::kUnknownCluster
                      ? "unknown cluster '" + source.cluster + "'"
                      : "no healthy host in cluster '" + source.cluster + "'");
    }
    // Remember it for cancellation at shutdown; finished calls are dropped as new ones come.
    std::erase_if(calls_, [](const std::weak_ptr<HttpCallout>& w) { return w.expired(); });
    calls_.push_back(call);
  }

 private:
  asio::io_context& loop_;
  const upstream::ClusterManager& cluster_manager_;
  upstream::ThreadLocalClusterManager clusters_;
  upstream::ConnPoolMap pools_;
  std::vector<std::weak_ptr<HttpCallout>> calls_;
};

}  // namespace

void installRemoteCodeFetch(asio::io_context& main, const upstream::ClusterManager& clusters,
                            stats::Store& stats) {
  skiff::wasm::RemoteCodeLoader::install(main, std::make_unique<CalloutTransport>(main, clusters), stats);
}

bool loadRemoteCode(std::shared_ptr<skiff::wasm::PluginSpec> spec, const RemoteSource& remote,
                    std::function<void(std::shared_ptr<skiff::wasm::PluginSpec>, std::string error)> done) {
  auto* loader = skiff::wasm::RemoteCodeLoader::instance();
  if (loader == nullptr) return false;
  if (auto code = loader->cached(remote.sha256)) {
    spec->code = std::move(*code);
    done(std::move(spec), "");
    return true;
  }
  SKIFF_LOG(kWasm, info, "wasm plugin {}: fetching code.remote {} through cluster {}", spec->name, remote.uri,
            remote.cluster);
  loader->load(remote, [spec, done = std::move(done)](std::string code, std::string error) mutable {
    if (!error.empty()) return done(std::move(spec), std::move(error));
    spec->code = std::move(code);
    done(std::move(spec), "");
  });
  return true;
}

}  // namespace skiff::filters::wasm
