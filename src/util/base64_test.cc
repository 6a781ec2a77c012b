#include "util/base64.h"

#include <gtest/gtest.h>

namespace polyrun {
namespace {

TEST(Base64, RoundTripsEveryLengthAndByte) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  for (size_t len : {0u, 1u, 2u, 3u, 4u, 255u, 256u}) {
    std::string in = bytes.substr(0, len);
    auto out = Base64Decode(Base64Encode(in));
    ASSERT_TRUE(out) << out.error().message();
    EXPECT_EQ(*out, in) << len;
  }
}

TEST(Base64, KnownVectors) {
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(*Base64Decode("Zm9v\nYmE="), "fooba");
  EXPECT_EQ(*Base64Decode("AGFzbQEAAAA="), std::string("\0asm\1\0\0\0", 8));
}

TEST(Base64, RejectsGarbageNamingTheOffset) {
  auto r = Base64Decode("Zm9v*mFy");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("offset 4"), std::string::npos) << r.error().message();
  EXPECT_FALSE(Base64Decode("Zm9=vYmFy"));  // data after padding
  EXPECT_FALSE(Base64Decode("Zm9vY"));      // truncated
}

}  // namespace
}  // namespace polyrun
