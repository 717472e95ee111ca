// Admin /stats renderers: Envoy's plain-text and JSON shapes.
#include <fmt/format.h>

#include <cmath>

#include "skiff/common/json.h"
#include "skiff/stats/stats.h"
#include "stats/render_util.h"

namespace skiff::stats {
namespace {

// Envoy's supported quantiles, as fractions.
constexpr double kQuantiles[] = {0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1};

// Interpolation leaves float noise (9.995000000000001); four decimals are plenty for latencies.
double tidy(double v) {
  return std::round(v * 1e4) / 1e4;
}
std::string number(double v) {
  return std::isnan(v) ? "nan" : fmt::format("{}", tidy(v));
}
// Envoy shows stats of a custom namespace (Wasm modules' `wasmcustom.`) without the namespace.
std::string_view shown(std::string_view name) {
  constexpr std::string_view kWasmCustom = "wasmcustom.";
  if (name.substr(0, kWasmCustom.size()) == kWasmCustom) name.remove_prefix(kWasmCustom.size());
  return name;
}

std::string jsonNumber(double v) {
  return std::isnan(v) ? "null" : fmt::format("{}", tidy(v));
}

}  // namespace

// Counters, gauges and text readouts in one name-sorted run, then histograms (the input is name-sorted).
std::string renderText(const std::vector<StatValue>& stats) {
  std::string out;
  for (const auto& s : stats) {
    switch (s.type) {
      case StatType::kCounter:
        out += fmt::format("{}: {}\n", shown(s.name), s.counter);
        break;
      case StatType::kGauge:
        // Envoy's gauges are uint64 (a `version` gauge holds a 64-bit hash): render unsigned.
        out += fmt::format("{}: {}\n", shown(s.name), static_cast<uint64_t>(s.gauge));
        break;
      case StatType::kTextReadout:
        out += shown(s.name);
        out += ": \"";
        appendJsonEscaped(s.text, out);
        out += "\"\n";
        break;
      case StatType::kHistogram:
        break;
    }
  }
  for (const auto& s : stats) {
    if (s.type != StatType::kHistogram) continue;
    out += shown(s.name);
    out += ':';
    if (s.histogram.sample_count == 0) {
      out += " No recorded values\n";
      continue;
    }
    // We keep no per-interval histograms, so the interval column repeats the cumulative value.
    for (double q : kQuantiles) {
      std::string v = number(s.histogram.quantile(q));
      out += fmt::format(" P{:g}({},{})", 100 * q, v, v);
    }
    out += '\n';
  }
  return out;
}

std::string renderJson(const std::vector<StatValue>& stats) {
  std::string out = "{\"stats\":[";
  bool first = true;
  auto open = [&](std::string_view name) {
    if (!first) out += ',';
    first = false;
    out += "{\"name\":\"";
    appendJsonEscaped(name, out);
    out += "\",\"value\":";
  };
  bool any_histogram = false;
  for (const auto& s : stats) {
    switch (s.type) {
      case StatType::kCounter:
        open(shown(s.name));
        out += fmt::format("{}}}", s.counter);
        break;
      case StatType::kGauge:
        open(shown(s.name));
        out += fmt::format("{}}}", static_cast<uint64_t>(s.gauge));
        break;
      case StatType::kTextReadout:
        open(shown(s.name));
        out += '"';
        appendJsonEscaped(s.text, out);
        out += "\"}";
        break;
      case StatType::kHistogram:
        any_histogram = true;
        break;
    }
  }
  if (any_histogram) {
    if (!first) out += ',';
    out += "{\"histograms\":{\"supported_quantiles\":[";
    for (size_t i = 0; i < std::size(kQuantiles); ++i) {
      if (i > 0) out += ',';
      out += fmt::format("{:g}", 100 * kQuantiles[i]);
    }
    out += "],\"computed_quantiles\":[";
    bool first_h = true;
    for (const auto& s : stats) {
      if (s.type != StatType::kHistogram) continue;
      if (!first_h) out += ',';
      first_h = false;
      out += "{\"name\":\"";
      appendJsonEscaped(shown(s.name), out);
      out += "\",\"values\":[";
      for (size_t i = 0; i < std::size(kQuantiles); ++i) {
        if (i > 0) out += ',';
        std::string v = jsonNumber(s.histogram.quantile(kQuantiles[i]));
        out += fmt::format("{{\"interval\":{},\"cumulative\":{}}}", v, v);
      }
      out += "]}";
    }
    out += "]}}";
  }
  out += "]}";
  return out;
}

}  // namespace skiff::stats
