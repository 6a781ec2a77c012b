#include "languages/manifest.h"

#include <gtest/gtest.h>

namespace polyrun::languages {
namespace {

const char* kGood = R"(
id = "toy"
name = "Toy"
aliases = ["t"]
extensions = ["toy"]
[version]
command = ["/usr/bin/toy", "--version"]
pattern = 'toy (?P<version>\S+)'
[sandbox]
binds = ["/usr"]
optional_binds = ["/etc/toy"]
syscalls = ["sysinfo"]
[compile]
command = ["/usr/bin/toyc", "-o", "main", "{sources}"]
sources = ["toy"]
artifacts = ["main"]
[compile.limits]
wall_time = "20s"
[run]
command = ["/work/main", "{args}"]
env = { TOY = "1" }
[run.limits]
memory = "512M"
[errors]
diagnostic = '^(?P<file>[^:]+):(?P<line>\d+): (?P<message>.*)$'
line_offset = 2
)";

TEST(ParseManifest, ReadsAFullManifest) {
  auto lang = ParseManifest(kGood, "toy/manifest.toml");
  ASSERT_TRUE(lang) << lang.error().message();
  EXPECT_EQ(lang->id, "toy");
  EXPECT_EQ(lang->entry, "main.toy");
  ASSERT_EQ(lang->binds.size(), 2u);
  EXPECT_FALSE(lang->binds[0].optional);
  EXPECT_TRUE(lang->binds[1].optional);
  ASSERT_TRUE(lang->compile);
  EXPECT_EQ(lang->compile->artifacts, std::vector<std::string>{"main"});
  EXPECT_EQ(*lang->compile->limits[Limit::kWallTime], 20000u);
  EXPECT_EQ(*lang->run.limits[Limit::kMemory], 512u << 20);
  EXPECT_EQ(lang->run.env.at("TOY"), "1");
  EXPECT_EQ(lang->errors.line_offset, 2);
  EXPECT_FALSE(lang->zygote);
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

TEST(ParseManifest, ReadsAZygoteWithItsCommandOnly) {
  const std::string zygote = "[zygote]\ncommand = [\"/usr/bin/toy\", \"zygote\"]\n";
  // An interpreted toy: no compile stage.
  const std::string interpreted = Replace(
      Replace(
          kGood,
          "[compile]\ncommand = [\"/usr/bin/toyc\", \"-o\", \"main\", \"{sources}\"]\n"
          "sources = [\"toy\"]\nartifacts = [\"main\"]\n[compile.limits]\nwall_time = \"20s\"\n",
          ""),
      "/work/main", "/usr/bin/toy");
  const std::string with = interpreted + zygote;
  auto lang = ParseManifest(with, "toy/manifest.toml");
  ASSERT_TRUE(lang) << lang.error().message();
  ASSERT_TRUE(lang->zygote);
  EXPECT_EQ(lang->zygote->command, (std::vector<std::string>{"/usr/bin/toy", "zygote"}));
  auto env = ParseManifest(with + "env = { A = \"1\" }\n", "toy/manifest.toml");
  ASSERT_FALSE(env);
  EXPECT_NE(env.error().message().find("zygote: takes only `command`"), std::string::npos)
      << env.error().message();
  auto compiled = ParseManifest(std::string(kGood) + zygote, "toy/manifest.toml");
  ASSERT_FALSE(compiled);
  EXPECT_NE(compiled.error().message().find("zygote: a language with [compile] cannot have one"),
            std::string::npos)
      << compiled.error().message();
}

TEST(ParseManifest, RejectsMistakesNamingTheKey) {
  struct Case {
    std::string text;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {Replace(kGood, "name = \"Toy\"", "nmae = \"Toy\""), "nmae: unknown key"},
      {Replace(kGood, "memory = \"512M\"", "memory = \"lots\""), "run.limits.memory"},
      {Replace(kGood, "\"/work/main\", \"{args}\"", "\"main\""), "run.command"},
      {Replace(kGood, "pattern = 'toy (?P<version>\\S+)'", "pattern = '(['"), "version.pattern"},
      {Replace(kGood, "artifacts = [\"main\"]", ""), "compile.artifacts"},
      {Replace(kGood, "id = \"toy\"", "id = \"Toy!\""), "id:"},
      {Replace(kGood, "binds = [\"/usr\"]", "binds = [\"usr\"]"), "sandbox.binds"},
      {"id = [", "toy/manifest.toml"},
  };
  for (const auto& c : cases) {
    auto lang = ParseManifest(c.text, "toy/manifest.toml");
    ASSERT_FALSE(lang) << c.expect;
    EXPECT_NE(lang.error().message().find(c.expect), std::string::npos) << lang.error().message();
    EXPECT_EQ(lang.error().message().rfind("toy/manifest.toml", 0), 0u);
  }
}

}  // namespace
}  // namespace polyrun::languages

namespace polyrun::languages {
namespace {

TEST(ParseManifest, BadPatternIsCaughtAtLoadUnlessDeferred) {
  std::string text = Replace(kGood, "'^(?P<file>[^:]+):(?P<line>\\d+): (?P<message>.*)$'", "'(['");
  auto strict = ParseManifest(text, "toy/manifest.toml");
  ASSERT_FALSE(strict);
  EXPECT_NE(strict.error().message().find("errors.diagnostic"), std::string::npos)
      << strict.error().message();
  auto lazy = ParseManifest(text, "toy/manifest.toml", /*check_patterns=*/false);
  ASSERT_TRUE(lazy) << lazy.error().message();
  EXPECT_FALSE(lazy->errors.diagnostic->Validate());
}

}  // namespace
}  // namespace polyrun::languages
