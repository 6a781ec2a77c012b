#include "engine/limits.h"

#include <gtest/gtest.h>

namespace polyrun::engine {
namespace {

using languages::Limit;
using languages::LimitSet;

LimitSet With(Limit l, uint64_t v) {
  LimitSet s;
  s[l] = v;
  return s;
}

TEST(ResolveLimits, FillsEveryLimitFromTheDeclaredDefaults) {
  auto r = ResolveLimits({});
  ASSERT_TRUE(r) << r.error().message();
  for (const auto& v : r->values) EXPECT_TRUE(v.has_value());
  EXPECT_EQ(*(*r)[Limit::kWallTime], 5000u);
  EXPECT_EQ(*(*r)[Limit::kMemory], 256u << 20);
  EXPECT_EQ(*(*r)[Limit::kProcesses], 64u);
}

TEST(ResolveLimits, PrecedenceIsRequestThenOperatorThenLanguageThenGlobal) {
  LimitLayers layers;
  layers.global = With(Limit::kMemory, 100u << 20);
  EXPECT_EQ(*ResolveLimits(layers).value()[Limit::kMemory], 100u << 20);
  layers.language = With(Limit::kMemory, 200u << 20);
  EXPECT_EQ(*ResolveLimits(layers).value()[Limit::kMemory], 200u << 20);
  layers.operator_override = With(Limit::kMemory, 300u << 20);
  EXPECT_EQ(*ResolveLimits(layers).value()[Limit::kMemory], 300u << 20);
  layers.request = With(Limit::kMemory, 50u << 20);
  EXPECT_EQ(*ResolveLimits(layers).value()[Limit::kMemory], 50u << 20);
  // Layers are per limit: the request's memory does not hide the language's wall time.
  layers.language[Limit::kWallTime] = 9000;
  EXPECT_EQ(*ResolveLimits(layers).value()[Limit::kWallTime], 9000u);
}

TEST(ResolveLimits, RequestAboveTheCeilingIsRefusedByName) {
  LimitLayers layers;
  layers.ceiling = With(Limit::kMemory, 1u << 30);
  layers.request = With(Limit::kMemory, 2u << 30);
  auto r = ResolveLimits(layers);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "limits.memory: 2G exceeds the operator's ceiling of 1G");
  layers.request = With(Limit::kMemory, 1u << 30);
  EXPECT_TRUE(ResolveLimits(layers));
}

TEST(ResolveLimits, LowerLayersAreClampedToTheCeiling) {
  LimitLayers layers;
  layers.ceiling = With(Limit::kWallTime, 2000);
  layers.language = With(Limit::kWallTime, 10000);
  EXPECT_EQ(*ResolveLimits(layers).value()[Limit::kWallTime], 2000u);
}

TEST(ResolveLimits, RequestOutsideTheDeclaredRangeIsRefused) {
  LimitLayers layers;
  layers.request = With(Limit::kMemory, 1024);  // below the 8M minimum
  auto r = ResolveLimits(layers);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("memory"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace polyrun::engine
