// The server in-process: a real Engine, SQLite store, ExecutionService and Server on loopback,
// driven over real HTTP, Server-Sent Events and WebSocket connections (labels: root,
// integration).
#include <gtest/gtest.h>

#include <regex>
#include <thread>

#include "http_client.h"
#include "server_fixture.h"
#include "util/digest.h"

namespace polyrun::testing {
namespace {

using nlohmann::json;
namespace http = boost::beast::http;

json Python(const std::string& code, json extra = json::object()) {
  extra["language"] = "python";
  extra["code"] = code;
  return extra;
}

// A program that runs until it is stopped (the limits keep it from timing out on its own).
json Forever() {
  return Python("while True: pass", {{"limits", {{"wall_time", "60s"}, {"cpu_time", "60s"}}}});
}

bool IsTimestamp(const json& j) {
  static const std::regex kRfc3339(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");
  return j.is_string() && std::regex_match(j.get<std::string>(), kRfc3339);
}

// The error body's code and field, asserted with the status.
void ExpectError(const HttpReply& r, unsigned status, const std::string& code,
                 const std::string& field) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  json j = r.Json();
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_EQ(j["error"]["code"], code) << r.body;
  EXPECT_EQ(j["error"]["field"], field) << r.body;
  ASSERT_TRUE(j["error"]["message"].is_string());
  // A refused request's message starts with the field it names (engine/request_json.h).
  if (!field.empty() && (code == "invalid_request" || code == "too_large")) {
    EXPECT_TRUE(j["error"]["message"].get<std::string>().starts_with(field)) << r.body;
  }
}

std::string StreamText(const std::vector<SseEvent>& events, const std::string& kind) {
  std::string text;
  for (const auto& e : events) {
    if (e.event == kind) text += e.Json()["data"].get<std::string>();
  }
  return text;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { srv_ = TestServer::Start(); }
  uint16_t port() const { return srv_->port(); }
  std::unique_ptr<TestServer> srv_;
};

// ---- POST /v1/executions ------------------------------------------------------------------------

TEST_F(ServerTest, RunAndWaitReturnsTheWholeResult) {
  HttpClient c(port());
  auto r = c.Post("/v1/executions",
                  Python("print('hello')", {{"labels", {{"artifact_id", "a-1"}, {"user", "u"}}}}));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  json j = r.Json();
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["stdout"], "hello\n");
  EXPECT_EQ(j["stderr"], "");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_TRUE(j["signal"].is_null());
  EXPECT_TRUE(j["error"].is_null());
  EXPECT_TRUE(j["limit"].is_null());
  EXPECT_TRUE(j["compile"].is_null());
  EXPECT_FALSE(j["reason"].get<std::string>().empty());
  EXPECT_EQ(j["language"], "python");
  EXPECT_EQ(j["version"], SharedEngine().VersionOf("python"));
  EXPECT_EQ(j["truncated"], json({{"stdout", false}, {"stderr", false}}));
  EXPECT_EQ(j["labels"], json({{"artifact_id", "a-1"}, {"user", "u"}}));
  ASSERT_EQ(j["outputs"].size(), 1u);
  EXPECT_EQ(j["outputs"][0]["type"], "stream");
  EXPECT_EQ(j["outputs"][0]["stream"], "stdout");
  EXPECT_EQ(j["outputs"][0]["text"], "hello\n");

  const std::string id = j["id"];
  EXPECT_TRUE(std::regex_match(id, std::regex("^ex_[0-9a-z]{26}$"))) << id;
  for (const char* k : {"wall_ms", "cpu_ms", "memory_bytes"}) {
    EXPECT_TRUE(j["usage"][k].is_number_unsigned()) << k << ": " << j["usage"];
  }
  EXPECT_GT(j["usage"]["wall_ms"].get<uint64_t>(), 0u);
  EXPECT_GT(j["usage"]["memory_bytes"].get<uint64_t>(), 0u);
  for (const char* k : {"wall_time", "cpu_time", "memory", "processes", "output", "file_size",
                        "open_files", "disk"}) {
    EXPECT_TRUE(j["limits"][k].is_number_unsigned()) << k << ": " << j["limits"];
  }
  for (const char* k : {"created_at", "started_at", "finished_at"}) {
    EXPECT_TRUE(IsTimestamp(j[k])) << k << ": " << j[k];
  }
  EXPECT_LE(j["created_at"].get<std::string>(), j["started_at"].get<std::string>());
  EXPECT_LE(j["started_at"].get<std::string>(), j["finished_at"].get<std::string>());

  // The stored result is the same fold.
  auto g = c.Get("/v1/executions/" + id);
  ASSERT_EQ(g.status, 200u) << g.body;
  EXPECT_EQ(g.Json(), j);
  // One keep-alive connection carried both requests.
  EXPECT_EQ(c.connections(), 1);
}

TEST_F(ServerTest, RunWithoutWaitingThenFollowItsEvents) {
  HttpClient c(port());
  auto r = c.Post("/v1/executions?wait=false",
                  Python("import sys\nprint('out1', flush=True)\n"
                         "print('err1', file=sys.stderr, flush=True)\nprint('out2')"));
  ASSERT_EQ(r.status, 202u) << r.body;
  json accepted = r.Json();
  const std::string id = accepted["id"];
  EXPECT_EQ(r.Header("location"), "/v1/executions/" + id);
  EXPECT_EQ(accepted["status"], "queued");
  EXPECT_EQ(accepted["result"], "/v1/executions/" + id);
  EXPECT_EQ(accepted["events"], "/v1/executions/" + id + "/events");

  SseStream s(port(), accepted["events"]);
  ASSERT_EQ(s.head().status, 200u) << s.head().body;
  EXPECT_EQ(s.head().Header("content-type"), "text/event-stream");
  std::vector<SseEvent> events = s.ReadToEnd();  // the stream ends with the run
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front().event, "queued");
  EXPECT_EQ(events[1].event, "started");
  EXPECT_EQ(events.back().event, "finished");
  for (size_t i = 0; i < events.size(); ++i) {
    json e = events[i].Json();
    EXPECT_EQ(events[i].id, std::to_string(i + 1));
    EXPECT_EQ(e["seq"], i + 1);
    EXPECT_EQ(e["type"], events[i].event);
    EXPECT_EQ(e["execution_id"], id);
    if (i >= 2 && i + 1 < events.size()) {
      EXPECT_TRUE(events[i].event == "stdout" || events[i].event == "stderr") << events[i].data;
    }
  }
  EXPECT_EQ(StreamText(events, "stdout"), "out1\nout2\n");
  EXPECT_EQ(StreamText(events, "stderr"), "err1\n");
  json finished = events.back().Json()["payload"];
  EXPECT_EQ(finished["status"], "ok");

  auto g = c.Get("/v1/executions/" + id);
  ASSERT_EQ(g.status, 200u) << g.body;
  json result = g.Json();
  EXPECT_EQ(result["id"], id);
  EXPECT_EQ(result["status"], "ok");
  EXPECT_EQ(result["stdout"], "out1\nout2\n");
  EXPECT_EQ(result["stderr"], "err1\n");
  EXPECT_EQ(result["exit_code"], finished["exit_code"]);
  EXPECT_EQ(result["usage"], finished["usage"]);
  EXPECT_EQ(result["finished_at"], finished["finished_at"]);
}

TEST_F(ServerTest, RuntimeErrorPointsIntoTheUsersFile) {
  HttpClient c(port());
  auto r = c.Post("/v1/executions", Python("x = 1\n1 / 0\n"));
  ASSERT_EQ(r.status, 200u) << r.body;
  json j = r.Json();
  EXPECT_EQ(j["status"], "runtime_error");
  EXPECT_EQ(j["exit_code"], 1);
  ASSERT_TRUE(j["error"].is_object()) << r.body;
  EXPECT_EQ(j["error"]["type"], "exception");
  EXPECT_EQ(j["error"]["name"], "ZeroDivisionError");
  EXPECT_EQ(j["error"]["message"], "division by zero");
  EXPECT_EQ(j["error"]["file"], "main.py");
  EXPECT_EQ(j["error"]["line"], 2);
  ASSERT_FALSE(j["error"]["traceback"].empty());
  EXPECT_EQ(j["error"]["traceback"].back()["line"], 2);
  EXPECT_NE(j["stderr"].get<std::string>().find("ZeroDivisionError"), std::string::npos);
}

TEST_F(ServerTest, CompileErrorCarriesDiagnostics) {
  HttpClient c(port());
  auto r = c.Post("/v1/executions",
                  json{{"language", "c"}, {"code", "int main(void) {\n  return x;\n}\n"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  json j = r.Json();
  EXPECT_EQ(j["status"], "compile_error");
  EXPECT_TRUE(j["exit_code"].is_null());
  EXPECT_EQ(j["stdout"], "");
  ASSERT_TRUE(j["compile"].is_object()) << r.body;
  EXPECT_EQ(j["compile"]["status"], "compile_error");
  bool found = false;
  for (const auto& d : j["compile"]["diagnostics"]) {
    if (d["severity"] == "error" && d["file"] == "main.c" && d["line"] == 2) found = true;
  }
  EXPECT_TRUE(found) << j["compile"]["diagnostics"];
  ASSERT_TRUE(j["error"].is_object());
  EXPECT_EQ(j["error"]["type"], "compile");
  EXPECT_EQ(j["error"]["line"], 2);
  EXPECT_NE(j["compile"]["stderr"].get<std::string>().find("main.c:2"), std::string::npos);
}

TEST_F(ServerTest, WallTimeLimitEndsAnEndlessLoop) {
  HttpClient c(port());
  auto r =
      c.Post("/v1/executions", Python("while True: pass", {{"limits", {{"wall_time", "300ms"}}}}));
  ASSERT_EQ(r.status, 200u) << r.body;
  json j = r.Json();
  EXPECT_EQ(j["status"], "timeout");
  EXPECT_EQ(j["limit"], "wall_time");
  EXPECT_EQ(j["limits"]["wall_time"], 300);
  EXPECT_EQ(j["signal"], 9);
  EXPECT_GE(j["usage"]["wall_ms"].get<uint64_t>(), 250u);
  EXPECT_LT(j["usage"]["wall_ms"].get<uint64_t>(), 5000u);
}

TEST_F(ServerTest, BadRequestsAreRefusedNamingTheField) {
  HttpClient c(port());
  ExpectError(c.Post("/v1/executions", std::string(R"({"language": "python", "code": )")), 400,
              "invalid_request", "body");
  ExpectError(c.Post("/v1/executions", Python("print(1)", {{"colour", "red"}})), 400,
              "invalid_request", "colour");
  ExpectError(c.Post("/v1/executions", json{{"language", "klingon"}, {"code", "x"}}), 400,
              "invalid_request", "language");
  ExpectError(c.Post("/v1/executions?wait=maybe", Python("print(1)")), 400, "invalid_request",
              "wait");
  ExpectError(c.Post("/v1/executions", json{{"language", "python"}}), 400, "invalid_request",
              "code");
  ExpectError(c.Post("/v1/executions",
                     Python("print(1)", {{"files", {{{"name", "a.py"}, {"content", "1"}}}}})),
              400, "invalid_request", "code");
  ExpectError(c.Post("/v1/executions", Python("print(1)", {{"limits", {{"wall_tme", "1s"}}}})), 400,
              "invalid_request", "limits.wall_tme");
  ExpectError(c.Post("/v1/executions", Python("print(1)", {{"limits", {{"wall_time", "fast"}}}})),
              400, "invalid_request", "limits.wall_time");
  ExpectError(c.Post("/v1/executions", Python("print(1)", {{"labels", {{"k", 1}}}})), 400,
              "invalid_request", "labels.k");
  ExpectError(c.Post("/v1/executions", std::string("[1, 2]")), 400, "invalid_request", "");
  // Nothing refused was recorded.
  auto h = c.Get("/v1/executions");
  ASSERT_EQ(h.status, 200u) << h.body;
  EXPECT_TRUE(h.Json()["items"].empty()) << h.body;
}

TEST(ServerCapsTest, OversizedRequestsAreRefusedWith413) {
  auto options = LocalOptions();
  options.caps.max_files = 2;
  options.caps.max_stdin_bytes = 16;
  options.http.max_body = 4096;
  auto srv = TestServer::Start(options);
  HttpClient c(srv->port());
  auto files = [](int n) {
    json f = json::array();
    f.push_back({{"name", "main.py"}, {"content", "import util\nprint(util.X)"}});
    for (int i = 1; i < n; ++i) {
      f.push_back({{"name", i == 1 ? "util.py" : "extra" + std::to_string(i) + ".py"},
                   {"content", "X = 42"}});
    }
    return json{{"language", "python"}, {"files", f}};
  };
  ExpectError(c.Post("/v1/executions", files(3)), 413, "too_large", "files");
  auto two = c.Post("/v1/executions", files(2));
  ASSERT_EQ(two.status, 200u) << two.body;
  EXPECT_EQ(two.Json()["stdout"], "42\n");

  ExpectError(c.Post("/v1/executions", Python("print(input())", {{"stdin", std::string(17, 'x')}})),
              413, "too_large", "stdin");
  auto sixteen =
      c.Post("/v1/executions", Python("print(input())", {{"stdin", std::string(16, 'x')}}));
  ASSERT_EQ(sixteen.status, 200u) << sixteen.body;
  EXPECT_EQ(sixteen.Json()["stdout"], std::string(16, 'x') + "\n");

  // Over http.max_body: refused by the transport before the body is read.
  auto big = c.Post("/v1/executions", Python("print(1)  # " + std::string(5000, 'x')));
  ExpectError(big, 413, "too_large", "body");
  // The server is unharmed (the client reconnects: that answer closed the connection).
  auto after = c.Post("/v1/executions", Python("print(7)"));
  ASSERT_EQ(after.status, 200u) << after.body;
  EXPECT_EQ(after.Json()["stdout"], "7\n");
}

// ---- GET /v1/executions/{id}, events, cancel ----------------------------------------------------

TEST_F(ServerTest, UnknownExecutionsAre404) {
  HttpClient c(port());
  ExpectError(c.Get("/v1/executions/ex_00000000000000000000000000"), 404, "not_found", "id");
  SseStream s(port(), "/v1/executions/ex_00000000000000000000000000/events");
  ExpectError(s.head(), 404, "not_found", "id");
  ExpectError(c.Post("/v1/executions/ex_00000000000000000000000000/cancel", std::string()), 404,
              "not_found", "id");
}

TEST_F(ServerTest, EventStreamsReplayAfterAGivenEvent) {
  HttpClient c(port());
  auto r = c.Post("/v1/executions", Python("for i in range(3):\n    print(i, flush=True)\n"));
  ASSERT_EQ(r.status, 200u) << r.body;
  const std::string id = r.Json()["id"];
  const std::string events = "/v1/executions/" + id + "/events";

  // The stream of a finished run replays everything and ends.
  std::vector<SseEvent> all = SseStream(port(), events).ReadToEnd();
  ASSERT_GE(all.size(), 4u);
  ASSERT_EQ(all.back().event, "finished");
  const size_t n = all.size();

  for (size_t after : {size_t{0}, size_t{1}, size_t{2}, n - 1, n}) {
    SCOPED_TRACE("after " + std::to_string(after));
    std::vector<SseEvent> by_query =
        SseStream(port(), events + "?after=" + std::to_string(after)).ReadToEnd();
    std::vector<SseEvent> by_header =
        SseStream(port(), events, {{"Last-Event-ID", std::to_string(after)}}).ReadToEnd();
    ASSERT_EQ(by_query.size(), n - after);
    ASSERT_EQ(by_header.size(), n - after);
    for (size_t i = 0; i < by_query.size(); ++i) {
      EXPECT_EQ(by_query[i].id, std::to_string(after + i + 1));
      EXPECT_EQ(by_query[i].data, all[after + i].data);
      EXPECT_EQ(by_header[i].data, all[after + i].data);
    }
  }
  SseStream bad(port(), events + "?after=two");
  ExpectError(bad.head(), 400, "invalid_request", "after");
}

TEST_F(ServerTest, CancelARunningExecution) {
  HttpClient c(port());
  auto r = c.Post("/v1/executions?wait=false", Forever());
  ASSERT_EQ(r.status, 202u) << r.body;
  const std::string id = r.Json()["id"];
  SseStream s(port(), "/v1/executions/" + id + "/events");
  s.Until("started");

  auto cancel = c.Post("/v1/executions/" + id + "/cancel", std::string());
  ASSERT_EQ(cancel.status, 202u) << cancel.body;
  EXPECT_EQ(cancel.Json(), json({{"id", id}, {"status", "cancelling"}}));

  SseEvent finished = s.Until("finished");
  EXPECT_EQ(finished.Json()["payload"]["status"], "cancelled");
  EXPECT_FALSE(s.Next().has_value());  // the stream ended with the run

  auto g = c.Get("/v1/executions/" + id);
  ASSERT_EQ(g.status, 200u);
  EXPECT_EQ(g.Json()["status"], "cancelled");
  EXPECT_FALSE(g.Json()["reason"].get<std::string>().empty());

  ExpectError(c.Post("/v1/executions/" + id + "/cancel", std::string()), 409, "already_finished",
              "id");
}

// ---- history ------------------------------------------------------------------------------------

TEST_F(ServerTest, HistoryFiltersAndPaginatesNewestFirst) {
  HttpClient c(port());
  // A label value with a space, sent percent-encoded.
  const std::string artifact = "art one";
  const std::string encoded = "art%20one";
  auto run = [&](json body, const std::string& artifact_id) {
    body["labels"] = {{"artifact_id", artifact_id}};
    auto r = c.Post("/v1/executions", body);
    EXPECT_EQ(r.status, 200u) << r.body;
    return r.Json()["id"].get<std::string>();
  };
  const std::string a1 = run(Python("print(1)"), artifact);
  const std::string a2 = run(Python("1/0"), artifact);
  const std::string a3 = run(Python("print(3)"), artifact);
  run(Python("print(4)"), "another");
  const std::string a5 = run(Python("print(5)"), artifact);
  const std::string a6 = run(json{{"language", "bash"}, {"code", "echo 6"}}, artifact);
  const std::string a7 = run(Python("print(7)"), artifact);

  std::vector<std::string> seen;
  std::string before;
  int pages = 0;
  for (;;) {
    std::string target =
        "/v1/executions?label.artifact_id=" + encoded + "&language=python&status=ok&limit=2";
    if (!before.empty()) target += "&before=" + before;
    auto page = c.Get(target);
    ASSERT_EQ(page.status, 200u) << page.body;
    json j = page.Json();
    ++pages;
    ASSERT_LE(j["items"].size(), 2u);
    for (const auto& item : j["items"]) {
      EXPECT_EQ(item["status"], "ok");
      EXPECT_EQ(item["language"], "python");
      EXPECT_EQ(item["labels"]["artifact_id"], artifact);
      seen.push_back(item["id"]);
    }
    if (j["next_before"].is_null()) break;
    before = j["next_before"];
    ASSERT_LT(pages, 10) << "pagination does not end";
  }
  EXPECT_GE(pages, 2);
  EXPECT_EQ(seen, (std::vector<std::string>{a7, a5, a3, a1}));

  auto all = c.Get("/v1/executions?label.artifact_id=" + encoded + "&limit=1000");
  ASSERT_EQ(all.status, 200u) << all.body;
  std::vector<std::string> ids;
  const json all_items = all.Json()["items"];
  for (const auto& item : all_items) ids.push_back(item["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{a7, a6, a5, a3, a2, a1}));
  EXPECT_TRUE(all.Json()["next_before"].is_null());

  auto errors = c.Get("/v1/executions?status=runtime_error");
  ASSERT_EQ(errors.status, 200u);
  ASSERT_EQ(errors.Json()["items"].size(), 1u);
  EXPECT_EQ(errors.Json()["items"][0]["id"], a2);

  ExpectError(c.Get("/v1/executions?status=great"), 400, "invalid_request", "status");
  ExpectError(c.Get("/v1/executions?limit=0"), 400, "invalid_request", "limit");
  ExpectError(c.Get("/v1/executions?limit=1001"), 400, "invalid_request", "limit");
  ExpectError(c.Get("/v1/executions?limit=ten"), 400, "invalid_request", "limit");
  ExpectError(c.Get("/v1/executions?colour=red"), 400, "invalid_request", "colour");
}

// ---- languages, check, health, metrics, routing -------------------------------------------------

TEST_F(ServerTest, LanguagesCheckHealthAndMetrics) {
  HttpClient c(port());
  auto langs = c.Get("/v1/languages");
  ASSERT_EQ(langs.status, 200u) << langs.body;
  json python;
  for (const auto& l : langs.Json()) {
    if (l["id"] == "python") python = l;
  }
  ASSERT_TRUE(python.is_object()) << langs.body;
  EXPECT_EQ(python["usable"], true);
  EXPECT_EQ(python["version"], SharedEngine().VersionOf("python"));
  EXPECT_TRUE(python["problem"].is_null());
  EXPECT_FALSE(python["name"].get<std::string>().empty());
  EXPECT_EQ(python["compiled"], false);

  auto check =
      c.Post("/v1/check", json{{"language", "python"}, {"code", "x = 1\ndef f(:\n  pass\n"}});
  ASSERT_EQ(check.status, 200u) << check.body;
  json file = check.Json()["files"][0];
  EXPECT_EQ(file["language"], "python");
  EXPECT_EQ(file["file"], "main.py");
  ASSERT_FALSE(file["syntax_errors"].empty()) << check.body;
  EXPECT_EQ(file["syntax_errors"][0]["line"], 2);
  auto clean = c.Post("/v1/check", json{{"language", "python"}, {"code", "import os\nprint(1)\n"}});
  ASSERT_EQ(clean.status, 200u) << clean.body;
  EXPECT_TRUE(clean.Json()["files"][0]["syntax_errors"].empty()) << clean.body;
  ExpectError(c.Post("/v1/check", std::string("[1]")), 400, "invalid_request", "body");
  ExpectError(c.Post("/v1/check", std::string("{")), 400, "invalid_request", "body");
  ExpectError(c.Post("/v1/check", json{{"code", 5}}), 400, "invalid_request", "code");
  ExpectError(c.Post("/v1/check", json{{"code", "x = 1"}}), 400, "invalid_request", "language");
  ExpectError(c.Post("/v1/check", json::object()), 400, "invalid_request", "code");

  auto health = c.Get("/healthz");
  ASSERT_EQ(health.status, 200u);
  EXPECT_EQ(health.Json(),
            json({{"status", "ok"}, {"store", "sqlite"}, {"queued", 0}, {"running", 0}}));

  auto run = c.Post("/v1/executions", Python("print(1)"));
  ASSERT_EQ(run.status, 200u) << run.body;
  // The run is counted by the time its answer arrives.
  auto metrics = c.Get("/metrics");
  ASSERT_EQ(metrics.status, 200u);
  EXPECT_TRUE(metrics.Header("content-type").starts_with("text/plain"));
  const std::string& m = metrics.body;
  EXPECT_NE(m.find("polyrun_executions_total{language=\"python\",status=\"ok\"} 1\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("\npolyrun_queue_depth 0\n"), std::string::npos) << m;
  // Not necessarily 0 yet: the worker leaves the count after the answer went out.
  EXPECT_NE(m.find("\npolyrun_running "), std::string::npos) << m;
  EXPECT_NE(
      m.find(
          "polyrun_http_request_duration_seconds_bucket{route=\"/v1/executions\",le=\"+Inf\"} 1\n"),
      std::string::npos)
      << m;
  EXPECT_NE(m.find("polyrun_http_requests_total{code=\"200\",route=\"/v1/executions\"} 1\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("polyrun_execution_duration_seconds_count{language=\"python\"} 1\n"),
            std::string::npos)
      << m;

  ExpectError(c.Get("/v2/nothing"), 404, "not_found", "path");
  ExpectError(c.Get("/"), 404, "not_found", "path");
  ExpectError(c.Request(http::verb::delete_, "/v1/executions"), 405, "method_not_allowed",
              "method");
  ExpectError(c.Get("/v1/check"), 405, "method_not_allowed", "method");
  ExpectError(c.Post("/metrics", std::string()), 405, "method_not_allowed", "method");
  ExpectError(c.Get("/v1/executions/" + run.Json()["id"].get<std::string>() + "/cancel"), 405,
              "method_not_allowed", "method");
}

// ---- API keys -----------------------------------------------------------------------------------

TEST(ServerKeysTest, KeysAuthenticateLimitAndAudit) {
  const std::string secret_a = "s3cret-key-of-team-a";
  const std::string secret_b = "another-key-of-team-b";
  auto options = LocalOptions();
  options.keys = server::ApiKeys({
      {"team-a", Sha256().AddRaw(secret_a).HexDigest(), 2, 1},
      {"team-b", Sha256().AddRaw(secret_b).HexDigest(), 0, 1},
  });
  auto srv = TestServer::Start(options);
  HttpClient c(srv->port());
  const Headers bearer_a = {{"Authorization", "Bearer " + secret_a}};
  const Headers x_api_a = {{"X-API-Key", secret_a}};
  const Headers bearer_b = {{"Authorization", "Bearer " + secret_b}};

  auto none = c.Post("/v1/executions", Python("print(1)"));
  ExpectError(none, 401, "unauthorized", "Authorization");
  EXPECT_EQ(none.Header("www-authenticate"), "Bearer");
  ExpectError(c.Post("/v1/executions", Python("print(1)"), {{"Authorization", "Bearer nope"}}), 401,
              "unauthorized", "Authorization");
  ExpectError(c.Post("/v1/executions", Python("print(1)"), {{"X-API-Key", "nope"}}), 401,
              "unauthorized", "Authorization");
  ExpectError(c.Post("/v1/executions", Python("print(1)"), {{"Authorization", secret_a}}), 401,
              "unauthorized", "Authorization");
  ExpectError(c.Get("/v1/languages"), 401, "unauthorized", "Authorization");
  EXPECT_EQ(c.Get("/healthz").status, 200u);  // health is for load balancers: no key
  WsClient ws(srv->port());
  ASSERT_TRUE(ws.refused());
  EXPECT_EQ(ws.refusal().status, 401u) << ws.refusal().body;

  auto first = c.Post("/v1/executions", Python("print('a')"), bearer_a);
  ASSERT_EQ(first.status, 200u) << first.body;
  EXPECT_EQ(first.Json()["status"], "ok");
  // team-a may run one at a time; the first has finished by the time its answer is here.
  auto second = c.Post("/v1/executions", Python("print('b')"), x_api_a);
  ASSERT_EQ(second.status, 200u) << second.body;
  EXPECT_EQ(second.Json()["status"], "ok");
  auto third = c.Post("/v1/executions", Python("print('c')"), bearer_a);
  ExpectError(third, 429, "rate_limited", "");
  const std::string retry = third.Header("retry-after");
  ASSERT_FALSE(retry.empty());
  EXPECT_GT(std::stoi(retry), 0);

  // team-b: no rate, one run at a time.
  auto long_run = c.Post("/v1/executions?wait=false", Forever(), bearer_b);
  ASSERT_EQ(long_run.status, 202u) << long_run.body;
  const std::string long_id = long_run.Json()["id"];
  auto busy = c.Post("/v1/executions", Python("print(1)"), bearer_b);
  ExpectError(busy, 429, "too_many_running", "");
  EXPECT_FALSE(busy.Header("retry-after").empty());
  ASSERT_EQ(c.Post("/v1/executions/" + long_id + "/cancel", std::string(), bearer_b).status, 202u);
  EXPECT_EQ(srv->WaitFinished(long_id).status, engine::Status::kCancelled);
  auto again = c.Post("/v1/executions", Python("print(2)"), bearer_b);
  ASSERT_EQ(again.status, 200u) << again.body;

  // The audit: every run records the key that submitted it.
  auto audit = c.Get("/v1/executions?api_key=team-a", bearer_a);
  ASSERT_EQ(audit.status, 200u) << audit.body;
  std::vector<std::string> ids;
  const json audit_items = audit.Json()["items"];
  for (const auto& item : audit_items) ids.push_back(item["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{second.Json()["id"], first.Json()["id"]}));
  auto audit_b = c.Get("/v1/executions?api_key=team-b", bearer_b);
  ASSERT_EQ(audit_b.status, 200u);
  EXPECT_EQ(audit_b.Json()["items"].size(), 2u);
  auto nobody = c.Get("/v1/executions?api_key=team-c", bearer_a);
  ASSERT_EQ(nobody.status, 200u);
  EXPECT_TRUE(nobody.Json()["items"].empty());
}

TEST(ServerKeysTest, PublicAddressWithoutKeysIsRefused) {
  auto options = LocalOptions();
  options.listen = "0.0.0.0:0";
  try {
    TestServer::Start(options);
    ADD_FAILURE() << "a server on 0.0.0.0 without keys started";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("allow_anonymous"), std::string::npos) << e.what();
  }
  options.allow_anonymous = true;
  EXPECT_NO_THROW(TestServer::Start(options));
  options.allow_anonymous = false;
  options.keys = server::ApiKeys({{"k", Sha256().AddRaw("k").HexDigest(), 0, 0}});
  EXPECT_NO_THROW(TestServer::Start(options));
}

// ---- admission and shutdown ---------------------------------------------------------------------

TEST(ServerAdmissionTest, FullQueueRefusesThenShutdownCancels) {
  auto options = LocalOptions();
  options.shutdown_grace = std::chrono::milliseconds(300);
  engine::ExecutionService::Options service;
  service.max_running = 1;
  service.max_queued = 1;
  auto srv = TestServer::Start(options, service);
  HttpClient c(srv->port());

  auto running = c.Post("/v1/executions?wait=false", Forever());
  ASSERT_EQ(running.status, 202u) << running.body;
  const std::string running_id = running.Json()["id"];
  SseStream s(srv->port(), "/v1/executions/" + running_id + "/events");
  s.Until("started");  // it left the queue

  // The queued one comes over the WebSocket: `accepted` says it is in the queue.
  WsClient ws(srv->port());
  ws.Send(json{{"type", "run"}, {"language", "python"}, {"code", "print(1)"}});
  const std::string queued_id = ws.Until("accepted")["id"];
  EXPECT_EQ(c.Get("/healthz").Json()["queued"], 1);
  EXPECT_EQ(c.Get("/healthz").Json()["running"], 1);

  auto refused = c.Post("/v1/executions", Python("print(2)"));
  ExpectError(refused, 429, "queue_full", "");
  EXPECT_EQ(refused.Header("retry-after"), "1");
  EXPECT_NE(c.Get("/metrics").body.find("polyrun_admission_refused_total{reason=\"queue_full\"} 1"),
            std::string::npos);

  // Stop() runs beside the clients, which go on reading as real ones would (the WebSocket's
  // close handshake needs its client).
  const auto stop_start = std::chrono::steady_clock::now();
  std::jthread stopper([&] { srv->Stop(); });  // joined even when a check throws
  // Both ended cancelled, and their followers were told so before the server went away.
  EXPECT_EQ(s.Until("finished").Json()["payload"]["status"], "cancelled");
  EXPECT_FALSE(s.Next().has_value());
  json result = ws.Until("result")["result"];
  EXPECT_EQ(result["id"], queued_id);
  EXPECT_EQ(result["status"], "cancelled");
  EXPECT_FALSE(ws.Next().has_value());
  EXPECT_EQ(ws.close_code(), 1001);  // going away
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_start, std::chrono::seconds(30));

  auto stored = srv->store().Get(running_id);
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->status, "cancelled");
  EXPECT_EQ(json::parse((*stored)->result)["status"], "cancelled");
  auto stored_queued = srv->store().Get(queued_id);
  ASSERT_TRUE(stored_queued && *stored_queued);
  EXPECT_EQ((*stored_queued)->status, "cancelled");
  auto unfinished = srv->store().Unfinished();
  ASSERT_TRUE(unfinished);
  EXPECT_TRUE(unfinished->empty());
}

// ---- WebSocket /v1/ws ---------------------------------------------------------------------------

TEST_F(ServerTest, WebSocketRunsInteractively) {
  WsClient ws(port());
  ASSERT_FALSE(ws.refused()) << ws.refusal().body;
  // Nothing runs yet.
  ws.Send(json{{"type", "stdin"}, {"data", "x"}});
  EXPECT_EQ(ws.Until("error")["error"]["code"], "not_running");

  ws.Send(json{{"type", "run"}, {"language", "python"}, {"code", "print(input()[::-1])"}});
  json accepted = ws.Until("accepted");
  const std::string id = accepted["id"];
  EXPECT_FALSE(id.empty());
  json started = ws.Until("started");
  EXPECT_EQ(started["execution_id"], id);

  // Mistakes while it runs are answered and leave the run and the connection as they were.
  ws.Send(json{{"type", "run"}, {"language", "python"}, {"code", "print(1)"}});
  json busy = ws.Until("error");
  EXPECT_EQ(busy["error"]["code"], "run_in_progress");
  ws.Send(json{{"type", "signal"}, {"signal", "SIGUSR1"}});
  json bad_signal = ws.Until("error");
  EXPECT_EQ(bad_signal["error"]["code"], "invalid_signal");
  EXPECT_EQ(bad_signal["error"]["field"], "signal");
  ws.Send(std::string("this is not JSON {"));
  EXPECT_EQ(ws.Until("error")["error"]["code"], "invalid_message");
  ws.Send(json{{"type", "dance"}});
  json unknown = ws.Until("error");
  EXPECT_EQ(unknown["error"]["code"], "invalid_message");
  EXPECT_EQ(unknown["error"]["field"], "type");
  ws.Send(json{{"type", "stdin"}, {"data", 5}});
  EXPECT_EQ(ws.Until("error")["error"]["field"], "data");

  ws.Send(json{{"type", "stdin"}, {"data", "hello\n"}});
  std::vector<json> before;
  json finished = ws.Until("finished", &before);
  std::string out;
  for (const auto& m : before) {
    ASSERT_EQ(m["type"], "stdout") << m;
    EXPECT_EQ(m["execution_id"], id);
    out += m["data"].get<std::string>();
  }
  EXPECT_EQ(out, "olleh\n");
  EXPECT_EQ(finished["payload"]["status"], "ok");
  json result = ws.Until("result");
  EXPECT_EQ(result["result"]["id"], id);
  EXPECT_EQ(result["result"]["status"], "ok");
  EXPECT_EQ(result["result"]["stdout"], "olleh\n");

  // The connection takes the next run; a bad one is refused naming its field.
  ws.Send(json{{"type", "run"}, {"language", "python"}});
  json refused = ws.Until("error");
  EXPECT_EQ(refused["error"]["code"], "invalid_request");
  EXPECT_EQ(refused["error"]["field"], "code");
  ws.Send(json{{"type", "run"}, {"language", "python"}, {"code", "1"}, {"interactive", "yes"}});
  EXPECT_EQ(ws.Until("error")["error"]["field"], "interactive");
  ws.Send(json{{"type", "run"},
               {"language", "python"},
               {"code", "print(input() * 2)"},
               {"stdin", "ab\n"},
               {"interactive", false}});
  json second = ws.Until("result");
  EXPECT_EQ(second["result"]["stdout"], "abab\n");
  EXPECT_NE(second["result"]["id"], id);
  ws.Close();
}

TEST_F(ServerTest, WebSocketCancelAndSignalEndARun) {
  WsClient ws(port());
  for (const json& stop :
       {json{{"type", "cancel"}}, json{{"type", "signal"}, {"signal", "SIGTERM"}}}) {
    SCOPED_TRACE(stop.dump());
    json run = Forever();
    run["type"] = "run";
    ws.Send(run);
    const std::string id = ws.Until("accepted")["id"];
    ws.Until("started");
    ws.Send(stop);
    json result = ws.Until("result");
    EXPECT_EQ(result["result"]["id"], id);
    EXPECT_EQ(result["result"]["status"], "cancelled");
  }
  ws.Close();
}

TEST_F(ServerTest, WebSocketClosingCancelsItsRun) {
  json run = Forever();
  run["type"] = "run";
  for (bool handshake : {true, false}) {
    SCOPED_TRACE(handshake ? "close handshake" : "connection dropped");
    WsClient ws(port());
    ws.Send(run);
    const std::string id = ws.Until("accepted")["id"];
    ws.Until("started");
    if (handshake) {
      ws.Close();
    } else {
      ws.Drop();
    }
    engine::ExecutionResult result = srv_->WaitFinished(id);
    EXPECT_EQ(result.status, engine::Status::kCancelled);
    auto stored = srv_->store().Get(id);
    ASSERT_TRUE(stored && *stored);
    EXPECT_EQ((*stored)->status, "cancelled");
  }
}

}  // namespace
}  // namespace polyrun::testing
