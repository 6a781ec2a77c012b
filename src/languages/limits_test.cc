#include "languages/limits.h"

#include <gtest/gtest.h>

namespace polyrun::languages {
namespace {

TEST(LimitSet, SetParsesUnitsAndNamesBadLimits) {
  LimitSet s;
  EXPECT_TRUE(s.empty());
  ASSERT_TRUE(s.Set("wall_time", "1.5s"));
  ASSERT_TRUE(s.Set("memory", "512M"));
  ASSERT_TRUE(s.Set("processes", "10"));
  EXPECT_EQ(*s[Limit::kWallTime], 1500u);
  EXPECT_EQ(*s[Limit::kMemory], 512u << 20);
  EXPECT_EQ(*s[Limit::kProcesses], 10u);
  auto unknown = s.Set("colour", "red");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("colour"), std::string::npos);
  auto bad = s.Set("memory", "12Q");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message().rfind("memory: ", 0), 0u) << bad.error().message();
  auto range = s.Set("processes", "0");
  ASSERT_FALSE(range);
  EXPECT_NE(range.error().message().find("out of range"), std::string::npos);
}

TEST(LimitDecls, EveryDeclarationIsCompleteAndItsDefaultParses) {
  auto defaults = DefaultLimits();
  for (size_t i = 0; i < kLimitCount; ++i) {
    const auto& d = LimitDecls()[i];
    EXPECT_FALSE(d.name.empty());
    EXPECT_FALSE(d.flag.empty());
    EXPECT_FALSE(d.help.empty());
    EXPECT_TRUE(defaults.values[i].has_value()) << d.name;
    EXPECT_EQ(LimitByName(d.name), static_cast<Limit>(i));
  }
}

}  // namespace
}  // namespace polyrun::languages

namespace polyrun::languages {
namespace {

TEST(LimitSet, OverFillsOnlyWhatIsUnset) {
  LimitSet top;
  ASSERT_TRUE(top.Set("memory", "1G"));
  LimitSet base;
  ASSERT_TRUE(base.Set("memory", "256M"));
  ASSERT_TRUE(base.Set("wall_time", "3s"));
  LimitSet merged = top.Over(base);
  EXPECT_EQ(merged[Limit::kMemory], 1ull << 30);
  EXPECT_EQ(merged[Limit::kWallTime], 3000u);
  EXPECT_FALSE(merged[Limit::kCpuTime].has_value());
}

}  // namespace
}  // namespace polyrun::languages
