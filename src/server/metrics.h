#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "engine/result.h"
#include "engine/warm_pool.h"
#include "engine/zygotes.h"

namespace polyrun::server {

// The server's Prometheus metrics (GET /metrics, text exposition format 0.0.4). Thread-safe.
class Metrics {
 public:
  Metrics();

  // A finished execution: counted by language and status, its wall time observed; an
  // internal_error also counts as a sandbox failure.
  void Finished(const engine::ExecutionResult& result);
  // An HTTP request answered: by route template ("/v1/executions/{id}") and status code.
  void Request(const std::string& route, unsigned status, double seconds);
  // A request refused by admission: "queue_full", "shutting_down", "rate_limited",
  // "key_concurrency".
  void Refused(const std::string& why);

  // The text exposition, with the queue, warm-pool, zygote and prebuilt-sandbox gauges, and the
  // sandbox's count of cgroups it could not remove, set from the values given.
  std::string Render(size_t queued, size_t running,
                     const std::map<std::string, engine::WarmPool::Stats>& warm = {},
                     const std::map<std::string, engine::Zygotes::Stats>& zygotes = {},
                     uint64_t teardown_failures = 0,
                     const std::map<std::string, engine::WarmPool::Stats>& prebuilt = {});

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& executions_;
  prometheus::Family<prometheus::Histogram>& execution_seconds_;
  prometheus::Family<prometheus::Counter>& sandbox_failures_;
  prometheus::Counter& teardown_failures_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  prometheus::Family<prometheus::Histogram>& http_seconds_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Family<prometheus::Counter>& starts_;
  prometheus::Family<prometheus::Gauge>& warm_ready_;
  prometheus::Family<prometheus::Gauge>& warm_target_;
  prometheus::Family<prometheus::Gauge>& warm_memory_;
  prometheus::Family<prometheus::Counter>& warm_missed_;
  prometheus::Family<prometheus::Gauge>& zygote_ready_;
  prometheus::Family<prometheus::Counter>& zygote_starts_;
  prometheus::Family<prometheus::Gauge>& zygote_runs_;
  prometheus::Family<prometheus::Gauge>& zygote_runs_ahead_;
  prometheus::Family<prometheus::Gauge>& zygote_ahead_;
  prometheus::Family<prometheus::Gauge>& zygote_memory_;
  prometheus::Family<prometheus::Gauge>& prebuilt_ready_;
  prometheus::Family<prometheus::Gauge>& prebuilt_memory_;
  prometheus::Gauge& queued_;
  prometheus::Gauge& running_;
};

}  // namespace polyrun::server
