// /stats/prometheus renderer: Envoy's tag-extracted, sanitized names in text exposition format 0.0.4.
#include <fmt/format.h>

#include <map>

#include "skiff/stats/stats.h"
#include "stats/render_util.h"

namespace skiff::stats {
namespace {

struct Family {
  std::string lines;
};

void sanitizeInto(std::string_view in, std::string& out) {
  for (char c : in) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
}

// Metric family name: custom namespaces (Istio's, Wasm modules') are stripped and unprefixed, everything
// else gets envoy_.
std::string metricName(std::string_view extracted) {
  constexpr std::string_view kCustom = "istiocustom.";
  constexpr std::string_view kWasmCustom = "wasmcustom.";
  std::string out;
  if (extracted.substr(0, kCustom.size()) == kCustom) {
    extracted.remove_prefix(kCustom.size());
  } else if (extracted.substr(0, kWasmCustom.size()) == kWasmCustom) {
    extracted.remove_prefix(kWasmCustom.size());
  } else if (extracted.substr(0, 5) != "istio") {
    out = "envoy_";
  }
  sanitizeInto(extracted, out);
  return out;
}

void appendLabelValue(std::string_view v, std::string& out) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// `{a="x",b="y"}` from the tags plus an optional extra label (le); empty when there are no labels.
std::string labels(const ExtractedName& n, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (n.tags.empty() && extra_name.empty()) return {};
  std::string out = "{";
  bool first = true;
  auto add = [&](std::string_view name, std::string_view value) {
    if (!first) out += ',';
    first = false;
    sanitizeInto(name, out);
    out += "=\"";
    appendLabelValue(value, out);
    out += '"';
  };
  for (const auto& [k, v] : n.tags) add(k, v);
  if (!extra_name.empty()) add(extra_name, extra_value);
  out += '}';
  return out;
}

std::string formatDouble(double v) {
  return fmt::format("{:.32g}", v);
}

}  // namespace

std::string renderPrometheus(const std::vector<StatValue>& stats) {
  // One map per type so the output groups counters, then gauges, then histograms, each name-sorted.
  std::map<std::string, Family> counters, gauges, histograms;
  const auto& bounds = defaultBuckets();
  for (const auto& s : stats) {
    if (s.type == StatType::kTextReadout) continue;  // Envoy only emits these when asked (text_readouts)
    ExtractedName n = extractTags(s.name);
    std::string metric = metricName(n.name);
    if (s.type == StatType::kCounter) {
      counters[metric].lines += fmt::format("{}{} {}\n", metric, labels(n), s.counter);
    } else if (s.type == StatType::kGauge) {
      // Unsigned as in Envoy (hash-valued `version` gauges).
      gauges[metric].lines += fmt::format("{}{} {}\n", metric, labels(n), static_cast<uint64_t>(s.gauge));
    } else {
      std::string& out = histograms[metric].lines;
      const auto& counts = s.histogram.bucket_counts;
      uint64_t cumulative = 0;
      for (size_t b = 0; b < bounds.size(); ++b) {
        cumulative += b < counts.size() ? counts[b] : 0;
        out += fmt::format("{}_bucket{} {}\n", metric, labels(n, "le", formatDouble(bounds[b])), cumulative);
      }
      out += fmt::format("{}_bucket{} {}\n", metric, labels(n, "le", "+Inf"), s.histogram.sample_count);
      out += fmt::format("{}_sum{} {}\n", metric, labels(n), formatDouble(s.histogram.sample_sum));
      out += fmt::format("{}_count{} {}\n", metric, labels(n), s.histogram.sample_count);
    }
  }
  std::string out;
  auto emit = [&](const std::map<std::string, Family>& families, std::string_view type) {
    for (const auto& [name, f] : families) {
      out += fmt::format("# TYPE {} {}\n", name, type);
      out += f.lines;
    }
  };
  emit(counters, "counter");
  emit(gauges, "gauge");
  emit(histograms, "histogram");
  return out;
}

}  // namespace skiff::stats
