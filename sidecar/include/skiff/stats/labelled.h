// Labelled metric families (Prometheus-style: one metric name, series told apart by label values) on top
// of the name-based Store.
//
// A LabelledMetrics object owns several metrics that share one list of label names (Istio's
// istio_requests_total, istio_request_duration_milliseconds, ... all carry the same labels). Each distinct
// tuple of label values is a series: its stats are ordinary Store stats named
// "<namespace>.<metric>.<label1>.<value1>.<label2>.<value2>..." (what Envoy shows for tagged stats in
// /stats), and /stats/prometheus renders them as `<metric>{label1="value1",...}`.
//
// Recording path: series() hashes the values and looks them up in the calling thread's cache; a label set
// the thread has seen before costs the hash and one probe, with no lock and no allocation. The first use
// of a label set on a thread takes a mutex (and creates the stats on the first use anywhere). Cardinality
// is bounded: past `max_series` distinct label sets, new ones are folded into a single overflow series
// whose label values are all "overflow" (logged once). At most 32 metrics per object.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "skiff/stats/stats.h"

namespace skiff::stats {

class LabelledMetrics {
 public:
  struct Metric {
    std::string name;  // e.g. "istio_requests_total"
    StatType type;     // kCounter or kHistogram
    Histogram::Unit unit = Histogram::Unit::kUnspecified;
  };
  // The handles of one series, by metric index (a counter metric's histogram handle is invalid and
  // the other way round).
  struct Series {
    std::vector<Counter> counters;
    std::vector<Histogram> histograms;
  };

  // `stat_namespace` prefixes the /stats names ("istiocustom"; stripped again for Prometheus).
  LabelledMetrics(Store& store, std::string stat_namespace, std::vector<Metric> metrics,
                  std::vector<std::string> label_names, size_t max_series = 10000);
  ~LabelledMetrics();
  LabelledMetrics(const LabelledMetrics&) = delete;
  LabelledMetrics& operator=(const LabelledMetrics&) = delete;

  // The series for `values` (one per label name, in label_names order). Worker-safe; the reference stays
  // valid for the life of this object. Only the metrics in `metrics_mask` (bit i = metric i) are
  // guaranteed to exist: a metric never asked for is not created, so it does not show up empty in /stats.
  const Series& series(std::span<const std::string_view> values, uint32_t metrics_mask = ~0u);

  size_t labelCount() const { return label_names_.size(); }
  size_t metricCount() const { return metrics_.size(); }
  // Distinct label sets created so far (the overflow series included).
  size_t seriesCount() const;
  // Hash buckets in the series index (exposed for tests: stays bounded by max_series).
  size_t lookupBucketCount() const;

  // The /stats name of `metric` for `values` (exposed for tests).
  std::string statName(size_t metric, std::span<const std::string_view> values) const;

 private:
  struct Impl;
  struct Entry;
  void addStats(Entry& entry, uint32_t mask);
  const Series& create(std::span<const std::string_view> values, uint64_t hash, uint32_t mask);

  Store& store_;
  std::string namespace_;
  std::vector<Metric> metrics_;
  std::vector<std::string> label_names_;
  size_t max_series_;
  uint32_t all_metrics_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::stats
