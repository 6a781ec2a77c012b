#include <gtest/gtest.h>

#include "server/api.h"

namespace polyrun::server {
namespace {

TEST(WholeUtf8, HoldsBackACutCharacterUntilItsRestArrives) {
  const std::string euro = "\xe2\x82\xac";  // U+20AC, three bytes
  std::string carry;
  EXPECT_EQ(WholeUtf8("a" + euro.substr(0, 1), carry), "a");
  EXPECT_EQ(carry, euro.substr(0, 1));
  EXPECT_EQ(WholeUtf8(euro.substr(1, 1), carry), "");
  EXPECT_EQ(WholeUtf8(euro.substr(2) + "b", carry), euro + "b");
  EXPECT_TRUE(carry.empty());
  // Bytes that can never become UTF-8 pass through (the JSON writer replaces them).
  EXPECT_EQ(WholeUtf8("\xff", carry), "\xff");
  EXPECT_TRUE(carry.empty());
  const std::string clef = "\xf0\x9d\x84\x9e";  // U+1D11E, four bytes
  EXPECT_EQ(WholeUtf8(clef.substr(0, 3), carry), "");
  EXPECT_EQ(WholeUtf8(clef.substr(3), carry), clef);
}

TEST(Query, DecodesParametersAndKeepsThePath) {
  auto q = QueryOf("/v1/executions?label.artifact_id=a%201&limit=5&flag&x=a+b");
  EXPECT_EQ(q["label.artifact_id"], "a 1");
  EXPECT_EQ(q["limit"], "5");
  EXPECT_EQ(q.count("flag"), 1u);
  EXPECT_EQ(q["x"], "a b");
  EXPECT_EQ(PathOf("/v1/executions?limit=5"), "/v1/executions");
  EXPECT_TRUE(QueryOf("/healthz").empty());
  EXPECT_EQ(QueryOf("/x?bad=%zz")["bad"], "%zz");
}

}  // namespace
}  // namespace polyrun::server
