// HTTP filter factories by name and type URL: how an HCM's `http_filters` entry becomes a FilterFactory.
#pragma once

#include <google/protobuf/any.pb.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "skiff/http/filter.h"

namespace skiff::stats {
class Store;
}

namespace skiff::filters {

// What a filter factory may use when it is built (once per HCM config, on the main thread).
struct FactoryContext {
  stats::Store& stats;
  std::string stat_prefix;  // "http.<hcm stat_prefix>."
  // The HttpFilter entry's `name` in the HCM config (Envoy's filterConfigName(): the key for route
  // metadata and typed_per_filter_config); empty when the filter was built without an HCM entry.
  std::string filter_name = {};
};

// Builds a factory from the filter's typed_config (an empty Any when the config gave none). Throws
// std::invalid_argument naming the problem on a bad config.
using FactoryCreator = std::function<http::FilterFactorySharedPtr(const google::protobuf::Any& config,
                                                                  const FactoryContext& context)>;

struct HttpFilterRegistration {
  std::string name;      // well-known name, e.g. "envoy.filters.http.router"
  std::string type_url;  // e.g. "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
  FactoryCreator create;
  bool terminal = false;  // must be last in the chain (the router)
};

void registerHttpFilter(HttpFilterRegistration registration);
// By type URL (preferred) or, when the config has no typed_config, by well-known name.
const HttpFilterRegistration* findHttpFilter(std::string_view type_url, std::string_view name);

// Registers every filter compiled into this binary (a list, so the linker keeps them all).
void registerAllHttpFilters();

}  // namespace skiff::filters
