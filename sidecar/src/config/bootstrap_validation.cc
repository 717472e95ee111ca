// Start-up checks on a parsed Bootstrap: registered extensions, names, endpoints, routes, regexes.
#include <arpa/inet.h>

#include <memory>
#include <optional>
#include <set>
#include <string>

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <re2/re2.h>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/type/matcher/v3/regex.pb.h"
#include "skiff/config/bootstrap_loader.h"
#include "skiff/config/extension_registry.h"
#include "udpa/type/v1/typed_struct.pb.h"

namespace skiff::config {
namespace {

using envoy::config::accesslog::v3::AccessLog;
using envoy::config::bootstrap::v3::Bootstrap;
using envoy::config::cluster::v3::Cluster;
using envoy::config::core::v3::Address;
using envoy::config::listener::v3::FilterChain;
using envoy::config::listener::v3::Listener;
using envoy::config::route::v3::RouteConfiguration;
using HttpConnectionManager =
    envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
using google::protobuf::Message;
using google::protobuf::RepeatedPtrField;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw ConfigError(fmt::format("{}: {}", path, what));
}

bool isIpAddress(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// The type an Any stands for; a TypedStruct left by the parser wraps a type this build lacks.
std::string effectiveTypeUrl(const google::protobuf::Any& any) {
  udpa::type::v1::TypedStruct wrapped;
  if (any.Is<udpa::type::v1::TypedStruct>() && any.UnpackTo(&wrapped)) return wrapped.type_url();
  return any.type_url();
}

// An error text when the extension is not usable in `category`, nullopt when it is.
std::optional<std::string> extensionProblem(Category category, const std::string& name,
                                            const google::protobuf::Any* typed_config) {
  if (typed_config != nullptr) {
    const std::string type_url = effectiveTypeUrl(*typed_config);
    if (findByTypeUrl(type_url, category) != nullptr) return std::nullopt;
    const Extension* ext = findByTypeUrl(type_url);
    if (ext == nullptr) {
      return fmt::format("{} '{}' has type '{}', which is not implemented", categoryName(category), name,
                         type_url);
    }
    if (ext->category != category) {
      return fmt::format("type '{}' is a {}, not a {}", type_url, categoryName(ext->category),
                         categoryName(category));
    }
    return std::nullopt;
  }
  const Extension* ext = findByName(name);
  if (ext == nullptr || ext->category != category) {
    return fmt::format("{} '{}' has no typed_config and is not a known {} name", categoryName(category), name,
                       categoryName(category));
  }
  return std::nullopt;
}

void requireExtension(Category category, const std::string& name, const google::protobuf::Any* typed_config,
                      const std::string& path) {
  if (auto problem = extensionProblem(category, name, typed_config)) fail(path, *problem);
}

class Validator {
 public:
  Validator(Bootstrap& bootstrap, std::vector<std::string>& warnings)
      : bootstrap_(bootstrap), warnings_(warnings) {}

  void run() {
    auto* resources = bootstrap_.mutable_static_resources();
    for (int i = 0; i < resources->clusters_size(); ++i) {
      cluster(resources->clusters(i), fmt::format("static_resources.clusters[{}]", i));
    }
    check_route_clusters_ = !bootstrap_.dynamic_resources().has_cds_config();
    std::set<std::string> listener_names;
    for (int i = 0; i < resources->listeners_size(); ++i) {
      const std::string path = fmt::format("static_resources.listeners[{}]", i);
      Listener& l = *resources->mutable_listeners(i);
      if (!l.name().empty() && !listener_names.insert(l.name()).second) {
        fail(path + ".name", fmt::format("duplicate listener name '{}'", l.name()));
      }
      listener(l, path);
    }
    if (bootstrap_.has_admin()) {
      accessLogs(bootstrap_.admin().access_log(), "admin.access_log");
      if (bootstrap_.admin().has_address()) address(bootstrap_.admin().address(), "admin.address", true);
    }
    regexes(bootstrap_, "");
  }

 private:
  void address(const Address& addr, const std::string& path, bool need_ip) {
    if (addr.has_socket_address()) {
      const auto& sa = addr.socket_address();
      if (need_ip && !isIpAddress(sa.address())) {
        fail(path + ".socket_address.address", fmt::format("'{}' is not an IP address", sa.address()));
      }
      if (sa.port_specifier_case() == envoy::config::core::v3::SocketAddress::kNamedPort) {
        fail(path + ".socket_address.named_port", "named ports are not supported; use port_value");
      }
    } else if (addr.has_pipe()) {
      if (addr.pipe().path().empty()) fail(path + ".pipe.path", "a pipe needs a path");
    } else if (!addr.has_envoy_internal_address()) {
      fail(path, "an address needs socket_address, pipe or envoy_internal_address");
    }
  }

  void listener(Listener& l, const std::string& path) {
    if (l.has_api_listener()) return;
    if (!l.has_address() && !l.has_internal_listener())
      fail(path + ".address", "a listener needs an address");
    if (l.has_address()) address(l.address(), path + ".address", true);
    if (l.filter_chains_size() == 0 && !l.has_default_filter_chain()) {
      fail(path + ".filter_chains", "no filter chains specified");
    }
    for (int i = 0; i < l.listener_filters_size(); ++i) {
      const auto& f = l.listener_filters(i);
      if (f.has_config_discovery()) continue;
      requireExtension(Category::kListenerFilter, f.name(),
                       f.has_typed_config() ? &f.typed_config() : nullptr,
                       fmt::format("{}.listener_filters[{}]", path, i));
    }
    for (int i = 0; i < l.filter_chains_size(); ++i) {
      filterChain(*l.mutable_filter_chains(i), fmt::format("{}.filter_chains[{}]", path, i));
    }
    if (l.has_default_filter_chain())
      filterChain(*l.mutable_default_filter_chain(), path + ".default_filter_chain");
    accessLogs(l.access_log(), path + ".access_log");
  }

  void filterChain(FilterChain& chain, const std::string& path) {
    for (int i = 0; i < chain.filters_size(); ++i) {
      auto& f = *chain.mutable_filters(i);
      const std::string fpath = fmt::format("{}.filters[{}]", path, i);
      if (f.has_config_discovery()) continue;
      requireExtension(Category::kNetworkFilter, f.name(), f.has_typed_config() ? &f.typed_config() : nullptr,
                       fpath);
      if (f.has_typed_config() && f.typed_config().Is<HttpConnectionManager>()) {
        auto hcm = unpackTo<HttpConnectionManager>(f.typed_config(), fpath + ".typed_config");
        if (httpConnectionManager(hcm, fpath + ".typed_config")) f.mutable_typed_config()->PackFrom(hcm);
      }
    }
  }

  // Returns true when it changed the config (an optional filter was dropped).
  bool httpConnectionManager(HttpConnectionManager& hcm, const std::string& path) {
    bool changed = false;
    auto* filters = hcm.mutable_http_filters();
    for (int i = 0; i < filters->size();) {
      const auto& f = filters->Get(i);
      const std::string fpath = fmt::format("{}.http_filters[{}]", path, i);
      std::optional<std::string> problem;
      if (!f.has_config_discovery()) {
        problem = extensionProblem(Category::kHttpFilter, f.name(),
                                   f.has_typed_config() ? &f.typed_config() : nullptr);
      }
      if (problem && f.is_optional()) {
        warnings_.push_back(fmt::format("{}: {}; the filter is optional and was removed", fpath, *problem));
        filters->DeleteSubrange(i, 1);
        changed = true;
        continue;
      }
      if (problem) fail(fpath, *problem);
      ++i;
    }
    accessLogs(hcm.access_log(), path + ".access_log");
    if (hcm.has_route_config()) routeClusters(hcm.route_config(), path + ".route_config");
    return changed;
  }

  void accessLogs(const RepeatedPtrField<AccessLog>& logs, const std::string& path) {
    for (int i = 0; i < logs.size(); ++i) {
      const auto& log = logs.Get(i);
      requireExtension(Category::kAccessLogger, log.name(),
                       log.has_typed_config() ? &log.typed_config() : nullptr,
                       fmt::format("{}[{}]", path, i));
    }
  }

  void routeClusters(const RouteConfiguration& rc, const std::string& path) {
    if (!check_route_clusters_) return;
    if (rc.has_validate_clusters() && !rc.validate_clusters().value()) return;
    for (int v = 0; v < rc.virtual_hosts_size(); ++v) {
      const auto& vh = rc.virtual_hosts(v);
      for (int r = 0; r < vh.routes_size(); ++r) {
        const auto& route = vh.routes(r);
        if (!route.has_route()) continue;
        const std::string rpath = fmt::format("{}.virtual_hosts[{}].routes[{}].route", path, v, r);
        const auto& action = route.route();
        if (action.cluster_specifier_case() == action.kCluster) {
          knownCluster(action.cluster(), rpath + ".cluster");
        } else if (action.has_weighted_clusters()) {
          for (int w = 0; w < action.weighted_clusters().clusters_size(); ++w) {
            const auto& cw = action.weighted_clusters().clusters(w);
            if (!cw.name().empty()) {
              knownCluster(cw.name(), fmt::format("{}.weighted_clusters.clusters[{}].name", rpath, w));
            }
          }
        }
      }
    }
  }

  void knownCluster(const std::string& name, const std::string& path) {
    if (cluster_names_.count(name) == 0) {
      fail(path,
           fmt::format("route refers to cluster '{}', which is not defined in static_resources.clusters",
                       name));
    }
  }

  void cluster(const Cluster& c, const std::string& path) {
    if (c.name().empty()) fail(path + ".name", "a cluster needs a name");
    if (!cluster_names_.insert(c.name()).second) {
      fail(path + ".name", fmt::format("duplicate cluster name '{}'", c.name()));
    }
    if (c.has_connect_timeout() &&
        (c.connect_timeout().seconds() < 0 ||
         (c.connect_timeout().seconds() == 0 && c.connect_timeout().nanos() <= 0))) {
      fail(path + ".connect_timeout", "must be greater than 0");
    }
    if (c.has_cluster_type()) return;  // custom cluster: its extension checks its own config
    const std::string la = path + ".load_assignment";
    int endpoint_count = 0;
    for (int l = 0; l < c.load_assignment().endpoints_size(); ++l) {
      const auto& locality = c.load_assignment().endpoints(l);
      for (int e = 0; e < locality.lb_endpoints_size(); ++e) {
        ++endpoint_count;
        const auto& lb = locality.lb_endpoints(e);
        const std::string epath = fmt::format("{}.endpoints[{}].lb_endpoints[{}].endpoint.address", la, l, e);
        if (!lb.has_endpoint()) continue;
        const Address& addr = lb.endpoint().address();
        switch (c.type()) {
          case Cluster::STATIC:
            address(addr, epath, true);
            break;
          case Cluster::STRICT_DNS:
          case Cluster::LOGICAL_DNS:
            if (!addr.has_socket_address()) fail(epath, "DNS clusters need a socket_address");
            if (addr.socket_address().port_specifier_case() !=
                envoy::config::core::v3::SocketAddress::kPortValue) {
              fail(epath + ".socket_address.port_value", "DNS clusters need a port_value");
            }
            if (addr.socket_address().address().empty())
              fail(epath + ".socket_address.address", "empty host name");
            break;
          default:
            break;
        }
      }
    }
    switch (c.type()) {
      case Cluster::STATIC:
        if (endpoint_count == 0)
          warnings_.push_back(fmt::format("{}: static cluster '{}' has no endpoints", la, c.name()));
        break;
      case Cluster::STRICT_DNS:
        if (endpoint_count == 0) fail(la, "a STRICT_DNS cluster needs at least one endpoint");
        break;
      case Cluster::LOGICAL_DNS:
        if (endpoint_count != 1) {
          fail(la, fmt::format("a LOGICAL_DNS cluster needs exactly one endpoint, got {}", endpoint_count));
        }
        break;
      case Cluster::EDS:
        if (!c.has_eds_cluster_config())
          fail(path + ".eds_cluster_config", "an EDS cluster needs eds_cluster_config");
        break;
      default:
        break;
    }
  }

  // Every RegexMatcher anywhere (inside Any payloads too) must compile with RE2.
  void regexes(const Message& msg, const std::string& path) {
    const auto* type = msg.GetDescriptor();
    const auto* reflection = msg.GetReflection();
    if (type->full_name() == "envoy.type.matcher.v3.RegexMatcher") {
      const auto& m = static_cast<const envoy::type::matcher::v3::RegexMatcher&>(msg);
      RE2 re(m.regex(), RE2::Quiet);
      if (!re.ok()) fail(path + ".regex", fmt::format("invalid regex '{}': {}", m.regex(), re.error()));
      return;
    }
    if (type->full_name() == "google.protobuf.Any") {
      const auto& any = static_cast<const google::protobuf::Any&>(msg);
      const auto* inner = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
          std::string(typeNameOfUrl(any.type_url())));
      if (inner == nullptr) return;
      const Message* proto = google::protobuf::MessageFactory::generated_factory()->GetPrototype(inner);
      if (proto == nullptr) return;
      std::unique_ptr<Message> unpacked(proto->New());
      if (unpacked->ParseFromString(any.value())) regexes(*unpacked, path);
      return;
    }
    std::vector<const google::protobuf::FieldDescriptor*> fields;
    reflection->ListFields(msg, &fields);
    for (const auto* field : fields) {
      if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
      const std::string fpath = path.empty() ? field->name() : path + "." + field->name();
      if (field->is_repeated()) {
        const int n = reflection->FieldSize(msg, field);
        for (int i = 0; i < n; ++i) {
          regexes(reflection->GetRepeatedMessage(msg, field, i),
                  field->is_map() ? fpath : fmt::format("{}[{}]", fpath, i));
        }
      } else {
        regexes(reflection->GetMessage(msg, field), fpath);
      }
    }
  }

  Bootstrap& bootstrap_;
  std::vector<std::string>& warnings_;
  std::set<std::string> cluster_names_;
  bool check_route_clusters_ = true;
};

}  // namespace

void validateBootstrap(Bootstrap& bootstrap, std::vector<std::string>& warnings) {
  Validator(bootstrap, warnings).run();
}

}  // namespace skiff::config
