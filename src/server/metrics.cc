#include "server/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>

namespace polyrun::server {

namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return b;
}

// Brings `counter` up to `count`, a total the engine keeps that only grows.
void Follow(prometheus::Counter& counter, uint64_t count) {
  counter.Increment(std::max(0.0, static_cast<double>(count) - counter.Value()));
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      executions_(prometheus::BuildCounter()
                      .Name("polyrun_executions_total")
                      .Help("Finished executions by language and status")
                      .Register(*registry_)),
      execution_seconds_(prometheus::BuildHistogram()
                             .Name("polyrun_execution_duration_seconds")
                             .Help("Wall time of finished executions, queueing excluded")
                             .Register(*registry_)),
      sandbox_failures_(prometheus::BuildCounter()
                            .Name("polyrun_sandbox_failures_total")
                            .Help("Executions that ended in internal_error (our fault)")
                            .Register(*registry_)),
      teardown_failures_(prometheus::BuildCounter()
                             .Name("polyrun_sandbox_teardown_failures_total")
                             .Help("Run cgroups the sandbox could not remove after their run")
                             .Register(*registry_)
                             .Add({})),
      http_requests_(prometheus::BuildCounter()
                         .Name("polyrun_http_requests_total")
                         .Help("HTTP requests by route and status code")
                         .Register(*registry_)),
      http_seconds_(prometheus::BuildHistogram()
                        .Name("polyrun_http_request_duration_seconds")
                        .Help("Time from request to response by route")
                        .Register(*registry_)),
      refused_(prometheus::BuildCounter()
                   .Name("polyrun_admission_refused_total")
                   .Help("Requests refused by admission control, by reason")
                   .Register(*registry_)),
      starts_(prometheus::BuildCounter()
                  .Name("polyrun_execution_starts_total")
                  .Help("Finished executions by how their process started: cold (a sandbox "
                        "built for it), prebuilt (in a sandbox built ahead of it), warm (from a "
                        "warm pool), zygote (forked from the language's fork server) or session")
                  .Register(*registry_)),
      warm_ready_(prometheus::BuildGauge()
                      .Name("polyrun_warm_pool_ready")
                      .Help("Warm sandboxes waiting, by language")
                      .Register(*registry_)),
      warm_target_(prometheus::BuildGauge()
                       .Name("polyrun_warm_pool_target")
                       .Help("Warm sandboxes the pool keeps ready now (adapts to demand)")
                       .Register(*registry_)),
      warm_memory_(prometheus::BuildGauge()
                       .Name("polyrun_warm_pool_memory_bytes")
                       .Help("Memory of the waiting warm sandboxes, by language")
                       .Register(*registry_)),
      warm_missed_(prometheus::BuildCounter()
                       .Name("polyrun_warm_pool_missed_total")
                       .Help("Runs that found their language's warm pool empty (and started "
                             "from a zygote, a prebuilt sandbox or cold)")
                       .Register(*registry_)),
      zygote_ready_(prometheus::BuildGauge()
                        .Name("polyrun_zygote_ready")
                        .Help("1 while the language's fork server runs, else 0")
                        .Register(*registry_)),
      zygote_starts_(prometheus::BuildCounter()
                         .Name("polyrun_zygote_starts_total")
                         .Help("Fork servers started for the language, replacements included")
                         .Register(*registry_)),
      zygote_runs_(prometheus::BuildGauge()
                       .Name("polyrun_zygote_runs")
                       .Help("Runs forked by the language's current fork server")
                       .Register(*registry_)),
      zygote_runs_ahead_(prometheus::BuildGauge()
                             .Name("polyrun_zygote_runs_ahead")
                             .Help("Of those, runs that took a run forked ahead of need")
                             .Register(*registry_)),
      zygote_ahead_(prometheus::BuildGauge()
                        .Name("polyrun_zygote_forked_ahead")
                        .Help("Runs forked ahead of need, waiting for a run")
                        .Register(*registry_)),
      zygote_memory_(prometheus::BuildGauge()
                         .Name("polyrun_zygote_memory_bytes")
                         .Help("Memory of the language's fork server and its runs forked ahead")
                         .Register(*registry_)),
      prebuilt_ready_(prometheus::BuildGauge()
                          .Name("polyrun_prebuilt_ready")
                          .Help("Sandboxes built ahead of need waiting for a run, by language")
                          .Register(*registry_)),
      prebuilt_memory_(prometheus::BuildGauge()
                           .Name("polyrun_prebuilt_memory_bytes")
                           .Help("Memory of the waiting prebuilt sandboxes, by language")
                           .Register(*registry_)),
      queued_(prometheus::BuildGauge()
                  .Name("polyrun_queue_depth")
                  .Help("Executions admitted and waiting to run")
                  .Register(*registry_)
                  .Add({})),
      running_(prometheus::BuildGauge()
                   .Name("polyrun_running")
                   .Help("Executions running now")
                   .Register(*registry_)
                   .Add({})) {}

void Metrics::Finished(const engine::ExecutionResult& r) {
  const std::string status(engine::StatusName(r.status));
  executions_.Add({{"language", r.language}, {"status", status}}).Increment();
  execution_seconds_.Add({{"language", r.language}}, LatencyBuckets())
      .Observe(static_cast<double>(r.usage.wall_ms) / 1000.0);
  if (!r.usage.start.empty()) {
    starts_.Add({{"language", r.language}, {"start", r.usage.start}}).Increment();
  }
  if (r.status == engine::Status::kInternalError) {
    sandbox_failures_.Add({{"language", r.language}}).Increment();
  }
}

void Metrics::Request(const std::string& route, unsigned status, double seconds) {
  http_requests_.Add({{"route", route}, {"code", std::to_string(status)}}).Increment();
  http_seconds_.Add({{"route", route}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::Refused(const std::string& why) {
  refused_.Add({{"reason", why}}).Increment();
}

std::string Metrics::Render(size_t queued, size_t running,
                            const std::map<std::string, engine::WarmPool::Stats>& warm,
                            const std::map<std::string, engine::Zygotes::Stats>& zygotes,
                            uint64_t teardown_failures,
                            const std::map<std::string, engine::WarmPool::Stats>& prebuilt) {
  queued_.Set(static_cast<double>(queued));
  Follow(teardown_failures_, teardown_failures);
  running_.Set(static_cast<double>(running));
  for (const auto& [language, s] : warm) {
    warm_ready_.Add({{"language", language}}).Set(static_cast<double>(s.ready));
    warm_target_.Add({{"language", language}}).Set(static_cast<double>(s.target));
    warm_memory_.Add({{"language", language}}).Set(static_cast<double>(s.memory_bytes));
    Follow(warm_missed_.Add({{"language", language}}), s.missed);
  }
  for (const auto& [language, s] : prebuilt) {
    prebuilt_ready_.Add({{"language", language}}).Set(static_cast<double>(s.ready));
    prebuilt_memory_.Add({{"language", language}}).Set(static_cast<double>(s.memory_bytes));
  }
  for (const auto& [language, s] : zygotes) {
    zygote_ready_.Add({{"language", language}}).Set(s.ready ? 1 : 0);
    Follow(zygote_starts_.Add({{"language", language}}), s.started);
    zygote_runs_.Add({{"language", language}}).Set(static_cast<double>(s.runs));
    zygote_runs_ahead_.Add({{"language", language}}).Set(static_cast<double>(s.runs_ahead));
    zygote_ahead_.Add({{"language", language}}).Set(static_cast<double>(s.ahead));
    zygote_memory_.Add({{"language", language}}).Set(static_cast<double>(s.memory_bytes));
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace polyrun::server
