#include "engine/config.h"

#include <gtest/gtest.h>

namespace polyrun::engine {
namespace {

using languages::Limit;

TEST(ParseConfig, ReadsEverySection) {
  auto cfg = ParseConfig(R"(
languages_dir = "/opt/langs"
cache_dir = "/var/cache/polyrun"
zygotes = false
prebuilt_sandboxes = 5
[sandbox]
cgroup_root = "/sys/fs/cgroup/polyrun.slice"
uid = 4000
[limits]
wall_time = "10s"
memory = 268435456
[compile_limits]
cpu_time = "30s"
[ceiling]
memory = "1G"
[languages.python.limits]
memory = "512M"
[languages.c.compile_limits]
wall_time = "1m"
)",
                         "test.toml", {});
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->languages_dir, "/opt/langs");
  EXPECT_EQ(cfg->cache_dir, "/var/cache/polyrun");
  EXPECT_FALSE(cfg->zygotes);
  EXPECT_EQ(cfg->prebuilt_sandboxes, 5u);
  EXPECT_EQ(cfg->cgroup_root, "/sys/fs/cgroup/polyrun.slice");
  EXPECT_EQ(cfg->sandbox_uid, 4000);
  EXPECT_EQ(*cfg->limits[Limit::kWallTime], 10000u);
  EXPECT_EQ(*cfg->limits[Limit::kMemory], 256u << 20);
  EXPECT_EQ(*cfg->compile_limits[Limit::kCpuTime], 30000u);
  EXPECT_EQ(*cfg->ceiling[Limit::kMemory], 1u << 30);
  EXPECT_EQ(*cfg->language_limits.at("python")[Limit::kMemory], 512u << 20);
  EXPECT_EQ(*cfg->language_compile_limits.at("c")[Limit::kWallTime], 60000u);
}

TEST(ParseConfig, ErrorsNameTheFileAndKey) {
  auto unknown = ParseConfig("[limits]\nwal_time = \"5s\"\n", "/etc/polyrun.toml", {});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("/etc/polyrun.toml"), std::string::npos);
  EXPECT_NE(unknown.error().message().find("limits.wal_time"), std::string::npos)
      << unknown.error().message();
  auto bad = ParseConfig("[limits]\nmemory = \"lots\"\n", "c.toml", {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("limits.memory"), std::string::npos)
      << bad.error().message();
  auto top = ParseConfig("colour = \"blue\"\n", "c.toml", {});
  ASSERT_FALSE(top);
  EXPECT_NE(top.error().message().find("colour: unknown key"), std::string::npos);
  auto prebuilt = ParseConfig("prebuilt_sandboxes = 65\n", "c.toml", {});
  ASSERT_FALSE(prebuilt);
  EXPECT_NE(prebuilt.error().message().find("prebuilt_sandboxes"), std::string::npos)
      << prebuilt.error().message();
  auto zygotes = ParseConfig("zygotes = \"yes\"\n", "c.toml", {});
  ASSERT_FALSE(zygotes);
  EXPECT_NE(zygotes.error().message().find("zygotes: expected true or false"), std::string::npos)
      << zygotes.error().message();
  auto syntax = ParseConfig("[limits\n", "c.toml", {});
  ASSERT_FALSE(syntax);
  EXPECT_EQ(syntax.error().code, Errc::kParse);
}

TEST(OptionsMarkdown, ListsEveryDeclaredOption) {
  std::string md = OptionsMarkdown();
  for (const auto& d : languages::LimitDecls()) {
    EXPECT_NE(md.find("`" + std::string(d.name) + "`"), std::string::npos) << d.name;
    EXPECT_NE(md.find("`--" + std::string(d.flag) + "`"), std::string::npos) << d.flag;
  }
  for (const auto& d : SettingDecls()) EXPECT_NE(md.find(std::string(d.name)), std::string::npos);
}

}  // namespace
}  // namespace polyrun::engine
