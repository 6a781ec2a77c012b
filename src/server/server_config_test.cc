#include "server/server_config.h"

#include <gtest/gtest.h>

namespace polyrun::server {
namespace {

TEST(ServerConfig, ParsesTheServerTableAndKeys) {
  const std::string toml = R"(
[limits]
wall_time = "5s"
[server]
listen = "0.0.0.0:9000"
max_queued = 10
shutdown_grace = "2s"
max_body = "1M"
allow_anonymous = true
[server.keys.alice]
sha256 = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
runs_per_minute = 30
max_running = 2
)";
  auto s = ParseServeSettings(toml, "test.toml", {});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->server.listen, "0.0.0.0:9000");
  EXPECT_EQ(s->max_queued, 10u);
  EXPECT_EQ(s->server.shutdown_grace, std::chrono::milliseconds(2000));
  EXPECT_EQ(s->server.http.max_body, 1u << 20);
  EXPECT_TRUE(s->server.allow_anonymous);
  ASSERT_FALSE(s->server.keys.empty());
  const ApiKey* k = s->server.keys.Find("abc");  // sha256("abc"), given in upper case
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->name, "alice");
  EXPECT_EQ(k->max_running, 2u);
  EXPECT_EQ(s->server.keys.Find("abd"), nullptr);
}

TEST(ServerConfig, ErrorsNameTheKeyAndTheFile) {
  auto unknown = ParseServeSettings("[server]\nlisten_on = \"x\"\n", "a.toml", {});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("a.toml: server.listen_on: unknown key"),
            std::string::npos)
      << unknown.error().message();
  auto bad = ParseServeSettings("[server]\nshutdown_grace = \"soon\"\n", "a.toml", {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("server.shutdown_grace"), std::string::npos)
      << bad.error().message();
  auto key = ParseServeSettings("[server.keys.bob]\nsha256 = \"abc\"\n", "a.toml", {});
  ASSERT_FALSE(key);
  EXPECT_NE(key.error().message().find("server.keys.bob.sha256"), std::string::npos);
  auto flag = ServeSettings{};
  auto applied = ApplyServerSetting(flag, "allow_anonymous", "yes");
  ASSERT_FALSE(applied);
  EXPECT_NE(applied.error().message().find("server.allow_anonymous"), std::string::npos);
}

TEST(ServerConfig, DeclaredDefaultsAreTheBuiltInOnes) {
  ServeSettings built_in;
  ServeSettings from_decls;
  for (const auto& d : ServerSettingDecls()) {
    if (d.default_value.empty()) continue;
    ASSERT_TRUE(ApplyServerSetting(from_decls, d.name, d.default_value)) << d.name;
  }
  EXPECT_EQ(from_decls.server.listen, built_in.server.listen);
  EXPECT_EQ(from_decls.max_queued, built_in.max_queued);
  EXPECT_EQ(from_decls.max_running, built_in.max_running);
  EXPECT_EQ(from_decls.server.io_threads, built_in.server.io_threads);
  EXPECT_EQ(from_decls.server.http.max_body, built_in.server.http.max_body);
  EXPECT_EQ(from_decls.server.caps.max_files, built_in.server.caps.max_files);
  EXPECT_EQ(from_decls.server.caps.max_code_bytes, built_in.server.caps.max_code_bytes);
  EXPECT_EQ(from_decls.server.caps.max_stdin_bytes, built_in.server.caps.max_stdin_bytes);
  EXPECT_EQ(from_decls.server.shutdown_grace, built_in.server.shutdown_grace);
  EXPECT_EQ(from_decls.server.prune_interval, built_in.server.prune_interval);
  EXPECT_EQ(from_decls.server.allow_anonymous, built_in.server.allow_anonymous);
  EXPECT_EQ(from_decls.sessions.max_sessions, built_in.sessions.max_sessions);
  EXPECT_EQ(from_decls.sessions.default_lifetime, built_in.sessions.default_lifetime);
  EXPECT_EQ(from_decls.sessions.max_lifetime, built_in.sessions.max_lifetime);
  EXPECT_EQ(from_decls.sessions.default_idle_timeout, built_in.sessions.default_idle_timeout);
}

TEST(ServerConfig, SessionSettings) {
  auto s = ParseServeSettings(
      "[server]\nmax_sessions = 3\nsession_lifetime = \"2h\"\nsession_max_lifetime = "
      "\"3h\"\nsession_idle_timeout = 60000\n",
      "a.toml", {});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->sessions.max_sessions, 3u);
  EXPECT_EQ(s->sessions.default_lifetime, std::chrono::hours(2));
  EXPECT_EQ(s->sessions.max_lifetime, std::chrono::hours(3));
  EXPECT_EQ(s->sessions.default_idle_timeout, std::chrono::minutes(1));
  EXPECT_TRUE(CheckSessionSettings(*s));
  ASSERT_TRUE(ApplyServerSetting(*s, "session_lifetime", "4h"));
  auto bad = CheckSessionSettings(*s);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().message().starts_with("server.session_lifetime: "))
      << bad.error().message();
  EXPECT_FALSE(ApplyServerSetting(*s, "session_idle_timeout", "0"));
}

TEST(ServerConfig, ListenAddresses) {
  EXPECT_EQ(ParseListen("127.0.0.1:8080")->port(), 8080);
  EXPECT_TRUE(ParseListen("[::1]:80")->address().is_loopback());
  EXPECT_EQ(ParseListen(":0")->address().to_string(), "0.0.0.0");
  EXPECT_TRUE(ParseListen("localhost:1")->address().is_loopback());
  EXPECT_FALSE(ParseListen("8080"));
  EXPECT_FALSE(ParseListen("127.0.0.1:99999"));
  auto host = ParseListen("example.com:80");
  ASSERT_FALSE(host);
  EXPECT_NE(host.error().message().find("listen"), std::string::npos);
}

TEST(ApiKeys, RateAndConcurrencyPerKey) {
  ApiKeys keys({{"a", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 2, 1}});
  std::chrono::seconds retry{0};
  EXPECT_EQ(keys.Acquire("a", retry), ApiKeys::Admit::kOk);
  EXPECT_EQ(keys.Acquire("a", retry), ApiKeys::Admit::kTooManyRunning);
  keys.Release("a");
  EXPECT_EQ(keys.Acquire("a", retry), ApiKeys::Admit::kOk);
  keys.Release("a");
  // Two per minute, both used: the third waits about half a minute for its token.
  EXPECT_EQ(keys.Acquire("a", retry), ApiKeys::Admit::kRateLimited);
  EXPECT_GE(retry.count(), 29);
  EXPECT_LE(retry.count(), 30);
  // The copy is the subject: copies share the accounting.
  ApiKeys copy = keys;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(copy.Acquire("a", retry), ApiKeys::Admit::kRateLimited);
}

}  // namespace
}  // namespace polyrun::server
