#include "languages/named_regex.h"

#include <gtest/gtest.h>

namespace polyrun::languages {
namespace {

TEST(NamedRegex, MapsNamedGroupsAroundPlainAndNonCapturingOnes) {
  auto re =
      NamedRegex::Compile(R"re(^(a|b)(?:x)(?P<file>[^:(]+):(?P<line>\d+)(?::(?P<column>\d+))?$)re");
  ASSERT_TRUE(re) << re.error().message();
  auto m = re->Match("axmain.c:12:5");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->at("file"), "main.c");
  EXPECT_EQ(m->at("line"), "12");
  EXPECT_EQ(m->at("column"), "5");
  auto no_col = re->Match("bxmain.c:3");
  ASSERT_TRUE(no_col);
  EXPECT_FALSE(no_col->contains("column"));
  EXPECT_FALSE(re->Match("nope"));
}

TEST(NamedRegex, ParenthesesInsideClassesAndEscapesAreNotGroups) {
  auto re = NamedRegex::Compile(R"re(\((?P<inner>[()a-z]+)\) (?P<n>\d))re");
  ASSERT_TRUE(re);
  auto m = re->Match("(ab()) 7");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->at("inner"), "ab()");
  EXPECT_EQ(m->at("n"), "7");
}

TEST(NamedRegex, BadPatternsAreErrors) {
  EXPECT_FALSE(NamedRegex::Compile("(?P<unterminated"));
  // The automaton is built lazily: Validate() reports a bad pattern, Match() never matches.
  auto bad = NamedRegex::Compile("([a-");
  ASSERT_TRUE(bad);
  auto v = bad->Validate();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Errc::kParse);
  EXPECT_NE(v.error().message().find("([a-"), std::string::npos);
  EXPECT_FALSE(bad->Match("anything"));
}

}  // namespace
}  // namespace polyrun::languages
