#pragma once
// How every benchmark of the suite summarises what it timed, so that bench/plot.py can read any
// of their JSON files alike.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

namespace polyrun::bench {

inline double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Nearest-rank percentile of an unsorted sample; 0 for an empty one.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// {"median", "p90", "p99", "n", "samples_ms"}: the samples in the order taken, in ms rounded to
// the microsecond, for the latency plots.
inline nlohmann::json SummaryJson(const std::vector<double>& v) {
  nlohmann::json samples = nlohmann::json::array();
  for (double x : v) samples.push_back(std::round(x * 1000) / 1000);
  return {{"median", Percentile(v, 50)},
          {"p90", Percentile(v, 90)},
          {"p99", Percentile(v, 99)},
          {"n", v.size()},
          {"samples_ms", std::move(samples)}};
}

}  // namespace polyrun::bench
