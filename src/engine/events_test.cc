#include "engine/events.h"

#include <gtest/gtest.h>

#include "engine/result_json.h"

namespace polyrun::engine {
namespace {

using nlohmann::json;

Event Ev(Event::Kind kind, json payload = nullptr, std::string data = {}, std::string stream = {}) {
  static uint64_t seq = 0;
  Event e;
  e.execution_id = "ex_1";
  e.seq = ++seq;
  e.t_ms = seq;
  e.kind = kind;
  e.payload = std::move(payload);
  e.data = std::move(data);
  e.stream = std::move(stream);
  return e;
}

TEST(Fold, ReproducesTheResultFromItsEvents) {
  std::vector<Event> events = {
      Ev(Event::Kind::kQueued,
         {{"language", "c"}, {"labels", {{"user", "ada"}}}, {"created_at", "t0"}}),
      Ev(Event::Kind::kStarted,
         {{"started_at", "t1"}, {"limits", {{"memory", 1024}}}, {"version", "12"}}),
      Ev(Event::Kind::kCompileStarted),
      Ev(Event::Kind::kCompileOutput, nullptr, "warning: x\n", "stderr"),
      Ev(Event::Kind::kCompileFinished, {{"status", "ok"},
                                         {"exit_code", 0},
                                         {"diagnostics", json::array({{{"file", "main.c"},
                                                                       {"line", 3},
                                                                       {"column", 5},
                                                                       {"severity", "warning"},
                                                                       {"message", "x"}}})}}),
      Ev(Event::Kind::kStdout, nullptr, "hel"),
      Ev(Event::Kind::kStdout, nullptr, "lo\n"),
      Ev(Event::Kind::kStderr, nullptr, "oops\n"),
      Ev(Event::Kind::kStdout, nullptr, "again\n"),
      Ev(Event::Kind::kFinished,
         {{"status", "runtime_error"},
          {"exit_code", 2},
          {"reason", "exited with status 2"},
          {"usage", {{"wall_ms", 7}, {"cpu_ms", 3}, {"memory_bytes", 4096}}},
          {"error",
           {{"type", "exit"}, {"name", "NonZeroExit"}, {"message", "m"}, {"line", nullptr}}},
          {"finished_at", "t2"}}),
  };
  ExecutionResult r = Fold(events);
  EXPECT_EQ(r.id, "ex_1");
  EXPECT_EQ(r.language, "c");
  EXPECT_EQ(r.version, "12");
  EXPECT_EQ(r.labels.at("user"), "ada");
  EXPECT_EQ(r.status, Status::kRuntimeError);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.stdout_text, "hello\nagain\n");
  EXPECT_EQ(r.stderr_text, "oops\n");
  ASSERT_EQ(r.outputs.size(), 3u);  // consecutive chunks of one stream merge
  EXPECT_EQ(r.outputs[0].text, "hello\n");
  EXPECT_EQ(r.outputs[1].stream, "stderr");
  EXPECT_EQ(r.outputs[2].text, "again\n");
  ASSERT_TRUE(r.compile);
  EXPECT_EQ(r.compile->stderr_text, "warning: x\n");
  ASSERT_EQ(r.compile->diagnostics.size(), 1u);
  EXPECT_EQ(r.compile->diagnostics[0].line, 3);
  EXPECT_EQ(r.usage.memory_bytes, 4096u);
  EXPECT_EQ(*r.limits[languages::Limit::kMemory], 1024u);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->name, "NonZeroExit");
  EXPECT_EQ(r.finished_at, "t2");

  // Folding a prefix gives the in-flight state.
  std::vector<Event> prefix(events.begin(), events.begin() + 6);
  EXPECT_EQ(Fold(prefix).status, Status::kRunning);
  EXPECT_EQ(Fold(prefix).stdout_text, "hel");
}

TEST(ResultJson, UsesTheStableFieldNames) {
  ExecutionResult r;
  r.status = Status::kTimeout;
  r.limit = "wall_time";
  json j = ToJson(r);
  for (const char* key :
       {"id", "status", "exit_code", "signal", "stdout", "stderr", "truncated", "error", "compile",
        "usage", "limits", "labels", "outputs", "reason", "limit"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["status"], "timeout");
  EXPECT_EQ(j["limit"], "wall_time");
  EXPECT_TRUE(j["truncated"].contains("stdout"));
  EXPECT_TRUE(j["usage"].contains("wall_ms"));
  EXPECT_TRUE(j["usage"].contains("cpu_ms"));
  EXPECT_TRUE(j["usage"].contains("memory_bytes"));
  for (int i = 0; i <= static_cast<int>(Status::kInternalError); ++i) {
    auto s = static_cast<Status>(i);
    EXPECT_EQ(StatusFromName(StatusName(s)), s);
  }
}

}  // namespace
}  // namespace polyrun::engine
