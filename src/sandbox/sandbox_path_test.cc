#include <gtest/gtest.h>

#include "sandbox/sandbox.h"

namespace polyrun::sandbox {
namespace {

TEST(ValidateRelativePath, AcceptsNestedNames) {
  EXPECT_TRUE(ValidateRelativePath("main.py"));
  EXPECT_TRUE(ValidateRelativePath("pkg/util.py"));
  EXPECT_TRUE(ValidateRelativePath(".hidden"));
}

TEST(ValidateRelativePath, RejectsEscapesAndOddities) {
  for (const std::string& bad :
       std::vector<std::string>{"", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.",
                                std::string("a\0b", 3), std::string(300, 'x')}) {
    auto r = ValidateRelativePath(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace polyrun::sandbox
