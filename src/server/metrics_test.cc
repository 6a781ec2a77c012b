#include "server/metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace polyrun::server {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, RendersTheWarmPoolsAndZygotesGivenPerLanguage) {
  Metrics metrics;
  engine::WarmPool::Stats warm;
  warm.ready = 2;
  warm.target = 3;
  warm.missed = 5;
  warm.memory_bytes = 9437184;
  engine::Zygotes::Stats zygote;
  zygote.ready = true;
  zygote.started = 2;
  zygote.runs = 40;
  zygote.runs_ahead = 31;
  zygote.ahead = 2;
  zygote.memory_bytes = 15728640;
  engine::WarmPool::Stats prebuilt;
  prebuilt.ready = 1;
  prebuilt.memory_bytes = 262144;
  const std::string text =
      metrics.Render(1, 0, {{"javascript", warm}}, {{"python", zygote}}, 2, {{"c", prebuilt}});
  EXPECT_TRUE(Has(text, "polyrun_queue_depth 1")) << text;
  EXPECT_TRUE(Has(text, "polyrun_sandbox_teardown_failures_total 2")) << text;
  EXPECT_TRUE(Has(text, "polyrun_warm_pool_ready{language=\"javascript\"} 2")) << text;
  EXPECT_TRUE(Has(text, "polyrun_warm_pool_target{language=\"javascript\"} 3")) << text;
  EXPECT_TRUE(Has(text, "polyrun_warm_pool_missed_total{language=\"javascript\"} 5")) << text;
  EXPECT_TRUE(Has(text, "# TYPE polyrun_warm_pool_missed_total counter")) << text;
  EXPECT_TRUE(Has(text, "polyrun_warm_pool_memory_bytes{language=\"javascript\"} 9437184")) << text;
  EXPECT_TRUE(Has(text, "polyrun_prebuilt_ready{language=\"c\"} 1")) << text;
  EXPECT_TRUE(Has(text, "polyrun_prebuilt_memory_bytes{language=\"c\"} 262144")) << text;
  EXPECT_TRUE(Has(text, "polyrun_zygote_ready{language=\"python\"} 1")) << text;
  EXPECT_TRUE(Has(text, "polyrun_zygote_starts_total{language=\"python\"} 2")) << text;
  EXPECT_TRUE(Has(text, "polyrun_zygote_runs{language=\"python\"} 40")) << text;
  EXPECT_TRUE(Has(text, "polyrun_zygote_runs_ahead{language=\"python\"} 31")) << text;
  EXPECT_TRUE(Has(text, "polyrun_zygote_forked_ahead{language=\"python\"} 2")) << text;
  EXPECT_TRUE(Has(text, "polyrun_zygote_memory_bytes{language=\"python\"} 15728640")) << text;
  EXPECT_EQ(text.find("polyrun_zygote_ready{language=\"javascript\"}"), std::string::npos)
      << "a language without a zygote has no zygote gauges";

  // A server that died reads 0 until it is replaced; a replacement's runs count from 0.
  zygote.ready = false;
  zygote.started = 3;
  zygote.runs = 0;
  zygote.runs_ahead = 0;
  zygote.ahead = 0;
  const std::string later = metrics.Render(0, 0, {}, {{"python", zygote}}, 3);
  EXPECT_TRUE(Has(later, "polyrun_sandbox_teardown_failures_total 3")) << later;
  EXPECT_TRUE(Has(later, "polyrun_zygote_ready{language=\"python\"} 0")) << later;
  EXPECT_TRUE(Has(later, "polyrun_zygote_starts_total{language=\"python\"} 3")) << later;
  EXPECT_TRUE(Has(later, "polyrun_zygote_runs{language=\"python\"} 0")) << later;
  EXPECT_TRUE(Has(later, "polyrun_zygote_forked_ahead{language=\"python\"} 0")) << later;
}

TEST(Metrics, CountersFollowTheEnginesGrowingTotals) {
  Metrics metrics;
  engine::WarmPool::Stats warm;
  warm.missed = 5;
  engine::Zygotes::Stats zygote;
  zygote.started = 1;
  (void)metrics.Render(0, 0, {{"python", warm}}, {{"python", zygote}}, 1, {});
  warm.missed = 7;
  zygote.started = 3;
  const std::string text = metrics.Render(0, 0, {{"python", warm}}, {{"python", zygote}}, 4, {});
  EXPECT_TRUE(Has(text, "polyrun_warm_pool_missed_total{language=\"python\"} 7")) << text;
  EXPECT_TRUE(Has(text, "polyrun_zygote_starts_total{language=\"python\"} 3")) << text;
  EXPECT_TRUE(Has(text, "polyrun_sandbox_teardown_failures_total 4")) << text;
}

}  // namespace
}  // namespace polyrun::server
