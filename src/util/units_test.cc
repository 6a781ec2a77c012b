#include "util/units.h"

#include <gtest/gtest.h>

namespace polyrun {
namespace {

TEST(ParseDuration, AcceptsUnitsAndBareMilliseconds) {
  EXPECT_EQ(ParseDuration("250ms").value(), Millis(250));
  EXPECT_EQ(ParseDuration("5s").value(), Millis(5000));
  EXPECT_EQ(ParseDuration("1.5s").value(), Millis(1500));
  EXPECT_EQ(ParseDuration("2m").value(), Millis(120000));
  EXPECT_EQ(ParseDuration("1h").value(), Millis(3600000));
  EXPECT_EQ(ParseDuration("42").value(), Millis(42));
  EXPECT_EQ(ParseDuration("0").value(), Millis(0));
}

TEST(ParseDuration, RejectsGarbageWithTheOffendingText) {
  for (const char* bad : {"", "s", "-1s", "5x", "1.2.3s", "0.5ms", "abc", "5 s"}) {
    auto r = ParseDuration(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_NE(r.error().message().find(std::string("\"") + bad + "\""), std::string::npos)
        << r.error().message();
  }
  EXPECT_FALSE(ParseDuration("99999999999h").has_value());
}

TEST(ParseSize, AcceptsBinaryUnits) {
  EXPECT_EQ(ParseSize("512").value(), 512u);
  EXPECT_EQ(ParseSize("64K").value(), 64u * 1024);
  EXPECT_EQ(ParseSize("256M").value(), 256u << 20);
  EXPECT_EQ(ParseSize("256MiB").value(), 256u << 20);
  EXPECT_EQ(ParseSize("1G").value(), 1ull << 30);
  EXPECT_EQ(ParseSize("1GB").value(), 1ull << 30);
  EXPECT_EQ(ParseSize("1.5K").value(), 1536u);
  EXPECT_EQ(ParseSize("2T").value(), 2ull << 40);
}

TEST(ParseSize, RejectsGarbage) {
  for (const char* bad : {"", "M", "-1M", "12Q", "0.3", "1.1K"}) {
    auto r = ParseSize(bad);
    EXPECT_FALSE(r.has_value()) << bad;
  }
}

TEST(Format, RoundTrips) {
  EXPECT_EQ(FormatDuration(Millis(5000)), "5s");
  EXPECT_EQ(FormatDuration(Millis(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(Millis(120000)), "2m");
  EXPECT_EQ(FormatSize(256u << 20), "256M");
  EXPECT_EQ(FormatSize(1000), "1000");
  for (const char* s : {"5s", "1500ms", "2m", "1h", "0ms"}) {
    EXPECT_EQ(FormatDuration(ParseDuration(s).value()), s);
  }
  for (const char* s : {"256M", "1G", "1000", "3K"}) {
    EXPECT_EQ(FormatSize(ParseSize(s).value()), s);
  }
}

}  // namespace
}  // namespace polyrun
