#include "util/digest.h"

#include <gtest/gtest.h>

namespace polyrun {
namespace {

TEST(Sha256, IsDeterministicAndFieldSeparated) {
  EXPECT_EQ(Sha256().Add("abc").HexDigest(), Sha256().Add("abc").HexDigest());
  EXPECT_EQ(Sha256().Add("abc").HexDigest().size(), 64u);
  EXPECT_NE(Sha256().Add("ab").Add("c").HexDigest(), Sha256().Add("a").Add("bc").HexDigest());
  EXPECT_NE(Sha256().Add("abc").HexDigest(), Sha256().Add("abd").HexDigest());
}

TEST(Sha256, MatchesAKnownVector) {
  // SHA-256 of the 8-byte little-endian length 3 followed by "abc" (computed with sha256sum).
  EXPECT_EQ(Sha256().Add("abc").HexDigest(),
            "ce91dc5eec0139adf091900d225971d6ad246a845bad791b5693a9d0d55dd391");
}

TEST(Sha256, AddRawMatchesSha256sum) {
  // printf abc | sha256sum
  EXPECT_EQ(Sha256().AddRaw("abc").HexDigest(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace polyrun
