#include "util/strings.h"

#include <gtest/gtest.h>

namespace polyrun {
namespace {

TEST(Strings, TrimAndSplit) {
  EXPECT_EQ(Trim("  a b \n"), "a b");
  EXPECT_EQ(Trim("   "), "");
  EXPECT_EQ(Split("a:b::c", ':'), (std::vector<std::string>{"a", "b", "", "c"}));
}

TEST(Strings, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("héllo ✓ 𝄞"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));  // surrogate
}

TEST(Strings, ReplaceAllReplacesEveryOccurrenceOnce) {
  std::string s = "{x}/a/{x}";
  EXPECT_TRUE(ReplaceAll(s, "{x}", "{x}{x}"));  // a replacement is not scanned again
  EXPECT_EQ(s, "{x}{x}/a/{x}{x}");
  EXPECT_FALSE(ReplaceAll(s, "{y}", "z"));
  EXPECT_EQ(s, "{x}{x}/a/{x}{x}");
}

}  // namespace
}  // namespace polyrun
