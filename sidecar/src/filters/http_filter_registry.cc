// The process-wide table of HTTP filter factories, filled once at start-up by registerAllHttpFilters().
#include "skiff/filters/http_filter_registry.h"

#include <vector>

#include "skiff/config/extension_registry.h"

namespace skiff::filters {
namespace {
std::vector<HttpFilterRegistration>& table() {
  static std::vector<HttpFilterRegistration> t;
  return t;
}
}  // namespace

void registerHttpFilter(HttpFilterRegistration registration) {
  config::registerExtension(config::Category::kHttpFilter, registration.name, registration.type_url);
  for (auto& r : table()) {
    if (r.type_url == registration.type_url) {
      r = std::move(registration);
      return;
    }
  }
  table().push_back(std::move(registration));
}

const HttpFilterRegistration* findHttpFilter(std::string_view type_url, std::string_view name) {
  for (const auto& r : table()) {
    if (!type_url.empty() ? r.type_url == type_url : r.name == name) return &r;
  }
  return nullptr;
}

}  // namespace skiff::filters
