// Sessions over HTTP and WebSocket: /v1/sessions through a real Server, SessionManager and
// sandboxed Python driver on loopback (labels: root, integration).
#include <gtest/gtest.h>

#include <regex>

#include "http_client.h"
#include "server_fixture.h"

namespace polyrun::testing {
namespace {

using nlohmann::json;
namespace http = boost::beast::http;

void ExpectError(const HttpReply& r, unsigned status, const std::string& code,
                 const std::string& field) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  json j = r.Json();
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_EQ(j["error"]["code"], code) << r.body;
  EXPECT_EQ(j["error"]["field"], field) << r.body;
  ASSERT_TRUE(j["error"]["message"].is_string()) << r.body;
  if (!field.empty() && code == "invalid_request") {
    EXPECT_TRUE(j["error"]["message"].get<std::string>().starts_with(field)) << r.body;
  }
}

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override { srv_ = TestServer::Start(); }
  uint16_t port() const { return srv_->port(); }

  // A new Python session (201), its object.
  json Create(json body = json::object()) {
    HttpClient c(port());
    if (!body.contains("language")) body["language"] = "python";
    auto r = c.Post("/v1/sessions", body);
    EXPECT_EQ(r.status, 201u) << r.body;
    if (r.status != 201u) throw std::runtime_error("session not created: " + r.body);
    return r.Json();
  }
  // Runs `code` in session `id` and waits for its result (200).
  json ExecuteWith(const std::string& id, const json& body) {
    HttpClient c(port());
    auto r = c.Post("/v1/sessions/" + id + "/execute", body);
    EXPECT_EQ(r.status, 200u) << r.body;
    return r.Json();
  }
  json Execute(const std::string& id, const std::string& code) {
    return ExecuteWith(id, json{{"code", code}});
  }
  // Starts `code` without waiting and returns once its stdout has shown `marker`.
  std::string StartSpinning(const std::string& id, const std::string& marker) {
    HttpClient c(port());
    auto r = c.Post("/v1/sessions/" + id + "/execute?wait=false",
                    json{{"code", "print('" + marker + "', flush=True)\nwhile True: pass"}});
    EXPECT_EQ(r.status, 202u) << r.body;
    const std::string exec = r.Json()["id"];
    SseStream s(port(), "/v1/executions/" + exec + "/events");
    std::string out;
    while (out.find(marker) == std::string::npos) {
      std::vector<SseEvent> skipped;
      SseEvent e = s.Until("stdout", &skipped);
      out += e.Json()["data"].get<std::string>();
    }
    return exec;
  }

  std::unique_ptr<TestServer> srv_;
};

// Long enough per execution that only an interrupt ends a busy loop.
const json kLongLimits = {{"wall_time", "60s"}, {"cpu_time", "60s"}};

TEST_F(SessionTest, CreateReturnsTheSessionObject) {
  json s = Create({{"language", "py"},
                   {"labels", {{"user", "ann"}}},
                   {"limits", {{"memory", "128M"}}},
                   {"env", {{"GREETING", "hi"}}},
                   {"files", {{{"name", "data.txt"}, {"content", "abc"}}}},
                   {"lifetime", "10m"},
                   {"idle_timeout", 60000}});
  EXPECT_TRUE(std::regex_match(s["id"].get<std::string>(), std::regex("^se_[0-9a-z]{26}$"))) << s;
  EXPECT_EQ(s["language"], "python");
  EXPECT_EQ(s["version"], SharedEngine().VersionOf("python"));
  EXPECT_EQ(s["state"], "idle");
  EXPECT_EQ(s["executions"], 0);
  EXPECT_EQ(s["restarts"], 0);
  EXPECT_TRUE(s["memory_bytes"].is_number_unsigned());
  EXPECT_EQ(s["limits"]["memory"], 128u << 20);
  EXPECT_EQ(s["labels"], json({{"user", "ann"}}));
  EXPECT_TRUE(s["ended_reason"].is_null());
  EXPECT_TRUE(s["created_at"].is_string());
  EXPECT_TRUE(s["last_active_at"].is_string());

  // The files and the environment are the session's.
  json r = Execute(s["id"].get<std::string>(),
                   "import os\nprint(open('data.txt').read(), os.environ['GREETING'])");
  EXPECT_EQ(r["status"], "ok") << r;
  EXPECT_EQ(r["stdout"], "abc hi\n");

  HttpClient c(port());
  auto g = c.Get("/v1/sessions/" + s["id"].get<std::string>());
  ASSERT_EQ(g.status, 200u) << g.body;
  EXPECT_EQ(g.Json()["executions"], 1);
  EXPECT_EQ(g.Json()["labels"], json({{"user", "ann"}}));
}

TEST_F(SessionTest, CreateRefusesBadRequestsNamingTheField) {
  HttpClient c(port());
  ExpectError(c.Post("/v1/sessions", json{{"language", "cobol-ish"}}), 400, "invalid_request",
              "language");
  ExpectError(c.Post("/v1/sessions", json::object()), 400, "invalid_request", "language");
  auto c_lang = c.Post("/v1/sessions", json{{"language", "c"}});
  ExpectError(c_lang, 400, "invalid_request", "language");
  EXPECT_NE(c_lang.body.find("has no session driver"), std::string::npos) << c_lang.body;
  ExpectError(
      c.Post("/v1/sessions", json{{"language", "python"}, {"limits", {{"memory", "lots"}}}}), 400,
      "invalid_request", "limits.memory");
  ExpectError(c.Post("/v1/sessions", json{{"language", "python"}, {"limits", {{"bogus", 1}}}}), 400,
              "invalid_request", "limits.bogus");
  ExpectError(c.Post("/v1/sessions", json{{"language", "python"}, {"lifetime", "forever"}}), 400,
              "invalid_request", "lifetime");
  ExpectError(c.Post("/v1/sessions", json{{"language", "python"}, {"lifetime", "25h"}}), 400,
              "invalid_request", "lifetime");
  ExpectError(c.Post("/v1/sessions", json{{"language", "python"}, {"idle_timeout", -5}}), 400,
              "invalid_request", "idle_timeout");
  ExpectError(c.Post("/v1/sessions", json{{"language", "python"}, {"exclusive", "user"}}), 400,
              "invalid_request", "exclusive");
  ExpectError(c.Post("/v1/sessions", json{{"language", "python"}, {"code", "1"}}), 400,
              "invalid_request", "code");
  ExpectError(c.Post("/v1/sessions", std::string("{not json")), 400, "invalid_request", "body");
  // Nothing was started.
  auto list = c.Get("/v1/sessions");
  ASSERT_EQ(list.status, 200u);
  EXPECT_EQ(list.Json()["sessions"], json::array());
}

TEST_F(SessionTest, StateIsKeptAcrossExecutions) {
  const std::string id = Create()["id"];
  json first = Execute(id, "x = 41");
  EXPECT_EQ(first["status"], "ok") << first;
  EXPECT_EQ(first["session_id"], id);
  EXPECT_TRUE(first["result"].is_null()) << first;
  EXPECT_EQ(first["labels"]["session_id"], id);

  json second = ExecuteWith(id, json{{"code", "x + 1"}, {"labels", {{"cell", "2"}}}});
  EXPECT_EQ(second["status"], "ok") << second;
  EXPECT_EQ(second["result"]["text/plain"], "42") << second;
  EXPECT_EQ(second["labels"], json({{"cell", "2"}, {"session_id", id}}));
  EXPECT_NE(second["id"], first["id"]);

  json third = Execute(id, "print(x * 2)");
  EXPECT_EQ(third["stdout"], "82\n");
  // The execution is an ordinary one: fetched by its id like any other.
  HttpClient c(port());
  auto g = c.Get("/v1/executions/" + third["id"].get<std::string>());
  ASSERT_EQ(g.status, 200u) << g.body;
  EXPECT_EQ(g.Json()["stdout"], "82\n");
  EXPECT_EQ(g.Json()["session_id"], id);

  auto s = c.Get("/v1/sessions/" + id);
  EXPECT_EQ(s.Json()["executions"], 3);
  EXPECT_EQ(s.Json()["state"], "idle");
}

TEST_F(SessionTest, DisplayOutputsCarryImages) {
  // The first import of matplotlib builds its font cache: more time than the default.
  const std::string id = Create({{"limits", kLongLimits}})["id"];
  json r = Execute(id,
                   "import matplotlib.pyplot as plt\n"
                   "plt.plot([1, 2, 3], [1, 4, 9])\n"
                   "plt.show()");
  ASSERT_EQ(r["status"], "ok") << r.dump().substr(0, 2000);
  bool png = false;
  for (const auto& o : r["outputs"]) {
    if (o["type"] != "display") continue;
    ASSERT_TRUE(o["data"].is_object()) << o;
    if (o["data"].contains("image/png")) {
      // Base64 of the PNG signature.
      EXPECT_TRUE(o["data"]["image/png"].get<std::string>().starts_with("iVBORw0KGgo"));
      png = true;
    }
  }
  EXPECT_TRUE(png) << r["outputs"].dump().substr(0, 2000);
}

TEST_F(SessionTest, ErrorsPointAtTheLineInTheCell) {
  const std::string id = Create()["id"];
  json r = Execute(id, "x = 1\ny = x / 0");
  EXPECT_EQ(r["status"], "runtime_error") << r;
  EXPECT_EQ(r["error"]["name"], "ZeroDivisionError") << r;
  EXPECT_EQ(r["error"]["line"], 2) << r;
  // x was set before the error; the session goes on.
  EXPECT_EQ(Execute(id, "x")["result"]["text/plain"], "1");
}

TEST_F(SessionTest, StdinAnswersInput) {
  const std::string id = Create()["id"];
  json r = ExecuteWith(
      id, json{{"code", "a = input('A? ')\nb = input('B? ')\nprint(a + b)"}, {"stdin", "x\ny\n"}});
  EXPECT_EQ(r["status"], "ok") << r;
  EXPECT_NE(r["stdout"].get<std::string>().find("xy\n"), std::string::npos) << r;
  // No stdin: the read sees end of file.
  json eof = Execute(id, "input()");
  EXPECT_EQ(eof["status"], "runtime_error") << eof;
  EXPECT_EQ(eof["error"]["name"], "EOFError") << eof;
}

TEST_F(SessionTest, InterruptStopsABusyLoopAndKeepsTheState) {
  const std::string id = Create({{"limits", kLongLimits}})["id"];
  Execute(id, "kept = 'yes'");
  HttpClient c(port());
  ExpectError(c.Post("/v1/sessions/" + id + "/interrupt", std::string()), 409, "session_idle",
              "id");

  const std::string exec = StartSpinning(id, "spinning");
  auto busy = c.Get("/v1/sessions/" + id);
  EXPECT_EQ(busy.Json()["state"], "busy");
  auto r = c.Post("/v1/sessions/" + id + "/interrupt", std::string());
  ASSERT_EQ(r.status, 202u) << r.body;
  EXPECT_EQ(r.Json(), json({{"interrupted", true}}));
  engine::ExecutionResult done = srv_->WaitFinished(exec);
  EXPECT_EQ(done.status, engine::Status::kCancelled) << done.reason;
  EXPECT_EQ(Execute(id, "kept")["result"]["text/plain"], "'yes'");
  EXPECT_EQ(c.Get("/v1/sessions/" + id).Json()["restarts"], 0);

  // Cancelling the execution interrupts it the same way.
  const std::string exec2 = StartSpinning(id, "again");
  auto cancel = c.Post("/v1/executions/" + exec2 + "/cancel", std::string());
  ASSERT_EQ(cancel.status, 202u) << cancel.body;
  EXPECT_EQ(srv_->WaitFinished(exec2).status, engine::Status::kCancelled);
  EXPECT_EQ(Execute(id, "kept")["result"]["text/plain"], "'yes'");
  EXPECT_EQ(c.Get("/v1/sessions/" + id).Json()["restarts"], 0);
}

TEST_F(SessionTest, PerExecutionLimits) {
  const std::string id = Create({{"limits", {{"wall_time", "10s"}}}})["id"];
  Execute(id, "kept = 1");
  json r = ExecuteWith(id, json{{"code", "while True: pass"}, {"limits", {{"wall_time", "1s"}}}});
  EXPECT_EQ(r["status"], "timeout") << r;
  EXPECT_EQ(r["limit"], "wall_time") << r;
  EXPECT_EQ(r["limits"]["wall_time"], 1000);
  EXPECT_EQ(Execute(id, "kept")["result"]["text/plain"], "1");

  HttpClient c(port());
  ExpectError(c.Post("/v1/sessions/" + id + "/execute",
                     json{{"code", "1"}, {"limits", {{"wall_time", "20s"}}}}),
              400, "invalid_request", "limits.wall_time");
  ExpectError(c.Post("/v1/sessions/" + id + "/execute",
                     json{{"code", "1"}, {"limits", {{"memory", "1G"}}}}),
              400, "invalid_request", "limits.memory");
  ExpectError(c.Post("/v1/sessions/" + id + "/execute", json{{"code", ""}}), 400, "invalid_request",
              "code");
  ExpectError(c.Post("/v1/sessions/" + id + "/execute", json{{"code", "1"}, {"args", {"a"}}}), 400,
              "invalid_request", "args");
  ExpectError(c.Post("/v1/sessions/" + id + "/execute?wait=maybe", json{{"code", "1"}}), 400,
              "invalid_request", "wait");
}

TEST_F(SessionTest, RestartLosesTheState) {
  const std::string id = Create()["id"];
  Execute(id, "x = 1");
  HttpClient c(port());
  auto r = c.Post("/v1/sessions/" + id + "/restart", std::string());
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.Json()["restarts"], 1);
  EXPECT_EQ(r.Json()["state"], "idle");
  json after = Execute(id, "x");
  EXPECT_EQ(after["status"], "runtime_error") << after;
  EXPECT_EQ(after["error"]["name"], "NameError") << after;
}

TEST_F(SessionTest, DeleteEndsTheSession) {
  const std::string id = Create({{"labels", {{"k", "v"}}}})["id"];
  HttpClient c(port());
  auto d = c.Request(http::verb::delete_, "/v1/sessions/" + id);
  ASSERT_EQ(d.status, 200u) << d.body;
  EXPECT_EQ(d.Json()["state"], "dead");
  EXPECT_EQ(d.Json()["labels"], json({{"k", "v"}}));
  EXPECT_TRUE(d.Json()["ended_reason"].is_string());
  // Still known, as ended; gone from the list; no more work.
  auto g = c.Get("/v1/sessions/" + id);
  ASSERT_EQ(g.status, 200u) << g.body;
  EXPECT_EQ(g.Json()["state"], "dead");
  EXPECT_EQ(g.Json()["ended_reason"], d.Json()["ended_reason"]);
  EXPECT_EQ(c.Get("/v1/sessions").Json()["sessions"], json::array());
  ExpectError(c.Get("/v1/sessions/se_never"), 404, "not_found", "id");
  ExpectError(c.Post("/v1/sessions/" + id + "/execute", json{{"code", "1"}}), 404, "not_found",
              "id");
  ExpectError(c.Request(http::verb::delete_, "/v1/sessions/" + id), 404, "not_found", "id");
  ExpectError(c.Post("/v1/sessions/" + id + "/restart", std::string()), 404, "not_found", "id");
  ExpectError(c.Get("/v1/sessions/" + id + "/execute"), 405, "method_not_allowed", "method");
  ExpectError(c.Post("/v1/sessions/" + id + "/dance", std::string()), 404, "not_found", "path");
}

TEST_F(SessionTest, ListShowsTheLiveSessions) {
  const std::string a = Create()["id"];
  const std::string b = Create({{"language", "bash"}})["id"];
  HttpClient c(port());
  auto l = c.Get("/v1/sessions");
  ASSERT_EQ(l.status, 200u) << l.body;
  std::vector<std::string> ids;
  const json listed = l.Json();
  for (const auto& s : listed["sessions"]) ids.push_back(s["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{a, b}));
  ASSERT_EQ(c.Request(http::verb::delete_, "/v1/sessions/" + a).status, 200u);
  l = c.Get("/v1/sessions");
  ASSERT_EQ(l.Json()["sessions"].size(), 1u) << l.body;
  EXPECT_EQ(l.Json()["sessions"][0]["id"], b);
  EXPECT_EQ(l.Json()["sessions"][0]["language"], "bash");
}

TEST_F(SessionTest, AnExclusiveLabelIsHeldByOneSession) {
  json body = {{"labels", {{"artifact_id", "a-1"}}}, {"exclusive", "artifact_id"}};
  const std::string first = Create(body)["id"];
  HttpClient c(port());
  body["language"] = "python";
  auto conflict = c.Post("/v1/sessions", body);
  ExpectError(conflict, 409, "session_conflict", "exclusive");
  EXPECT_NE(conflict.body.find(first), std::string::npos) << conflict.body;
  Create({{"labels", {{"artifact_id", "a-2"}}}, {"exclusive", "artifact_id"}});
  // Once the holder is gone, the label is free again.
  ASSERT_EQ(c.Request(http::verb::delete_, "/v1/sessions/" + first).status, 200u);
  EXPECT_EQ(c.Post("/v1/sessions", body).status, 201u);
}

TEST(SessionLimits, TheMaximumIsEnforcedWith503) {
  engine::SessionManager::Options so;
  so.max_sessions = 1;
  auto srv = TestServer::Start(LocalOptions(), {}, so);
  HttpClient c(srv->port());
  auto first = c.Post("/v1/sessions", json{{"language", "python"}});
  ASSERT_EQ(first.status, 201u) << first.body;
  auto second = c.Post("/v1/sessions", json{{"language", "python"}});
  ExpectError(second, 503, "too_many_sessions", "");
  EXPECT_FALSE(second.Header("retry-after").empty());
  ASSERT_EQ(c.Request(http::verb::delete_, "/v1/sessions/" + first.Json()["id"].get<std::string>())
                .status,
            200u);
  EXPECT_EQ(c.Post("/v1/sessions", json{{"language", "python"}}).status, 201u);
}

TEST_F(SessionTest, HistoryShowsTheSessionAndItsExecutions) {
  const std::string id = Create({{"labels", {{"user", "ann"}}}})["id"];
  const std::string e1 = Execute(id, "1")["id"];
  const std::string e2 = Execute(id, "2")["id"];
  HttpClient c(port());
  auto h = c.Get("/v1/executions?label.session_id=" + id);
  ASSERT_EQ(h.status, 200u) << h.body;
  std::vector<std::string> ids;
  const json page = h.Json();
  for (const auto& i : page["items"]) ids.push_back(i["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{e2, e1}));  // newest first

  // The session's own record, found by its labels; finished once it is deleted.
  auto rec = c.Get("/v1/executions?label.user=ann");
  ASSERT_EQ(rec.Json()["items"].size(), 1u) << rec.body;
  EXPECT_EQ(rec.Json()["items"][0]["id"], id);
  ASSERT_EQ(c.Request(http::verb::delete_, "/v1/sessions/" + id).status, 200u);
  rec = c.Get("/v1/executions?label.user=ann");
  ASSERT_EQ(rec.Json()["items"].size(), 1u) << rec.body;
  EXPECT_EQ(rec.Json()["items"][0]["status"], "ok") << rec.body;
}

TEST_F(SessionTest, CompletionQueries) {
  const std::string id = Create({{"limits", kLongLimits}})["id"];
  HttpClient c(port());
  auto comp =
      c.Post("/v1/sessions/" + id + "/complete", json{{"code", "impor"}, {"cursor_pos", 5}});
  ASSERT_EQ(comp.status, 200u) << comp.body;
  json m = comp.Json()["matches"];
  EXPECT_NE(std::find(m.begin(), m.end(), json("import")), m.end()) << comp.body;
  EXPECT_EQ(comp.Json()["cursor_end"], 5);
  EXPECT_TRUE(comp.Json()["cursor_start"].is_number());

  auto ic = c.Post("/v1/sessions/" + id + "/is_complete", json{{"code", "for i in range(3):"}});
  ASSERT_EQ(ic.status, 200u) << ic.body;
  EXPECT_EQ(ic.Json()["status"], "incomplete");
  EXPECT_TRUE(ic.Json()["indent"].is_string());

  auto in = c.Post("/v1/sessions/" + id + "/inspect", json{{"code", "len"}, {"cursor_pos", 3}});
  ASSERT_EQ(in.status, 200u) << in.body;
  EXPECT_EQ(in.Json()["found"], true);
  EXPECT_TRUE(in.Json()["data"].contains("text/plain")) << in.body;

  ExpectError(c.Post("/v1/sessions/" + id + "/complete", json{{"code", "ab"}, {"cursor_pos", 9}}),
              400, "invalid_request", "cursor_pos");
  ExpectError(c.Post("/v1/sessions/" + id + "/is_complete", json{{"cursor_pos", 1}}), 400,
              "invalid_request", "cursor_pos");
  ExpectError(c.Post("/v1/sessions/" + id + "/inspect", json::object()), 400, "invalid_request",
              "code");

  // A session busy past the query's wait.
  const std::string exec = StartSpinning(id, "busy");
  ExpectError(c.Post("/v1/sessions/" + id + "/complete", json{{"code", "x"}}), 409, "session_busy",
              "id");
  ASSERT_EQ(c.Post("/v1/executions/" + exec + "/cancel", std::string()).status, 202u);
  srv_->WaitFinished(exec);
}

TEST_F(SessionTest, ExecutionsEndpointTakesASessionId) {
  const std::string id = Create()["id"];
  HttpClient c(port());
  auto r = c.Post("/v1/executions", json{{"session_id", id}, {"code", "y = 7\ny * 6"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.Json()["result"]["text/plain"], "42");
  EXPECT_EQ(r.Json()["labels"]["session_id"], id);
  ExpectError(c.Post("/v1/executions", json{{"session_id", "se_nope"}, {"code", "1"}}), 404,
              "not_found", "session_id");
  ExpectError(
      c.Post("/v1/executions", json{{"session_id", id}, {"language", "ruby"}, {"code", "1"}}), 400,
      "invalid_request", "language");
}

TEST_F(SessionTest, WebSocketRunsInASessionAndAnswersInput) {
  const std::string id = Create({{"limits", kLongLimits}})["id"];
  WsClient ws(port());
  ASSERT_FALSE(ws.refused()) << ws.refusal().body;
  ws.Send(json{{"type", "run"}, {"session_id", "se_unknown"}, {"code", "1"}});
  json refused = ws.Until("error");
  EXPECT_EQ(refused["error"]["code"], "not_found");
  EXPECT_EQ(refused["error"]["field"], "session_id");

  ws.Send(json{
      {"type", "run"}, {"session_id", id}, {"code", "name = input('Name? ')\nprint('hi', name)"}});
  const std::string exec = ws.Until("accepted")["id"];
  // The input request arrives as a status event; the answer goes over the socket.
  json status;
  do {
    status = ws.Until("status");
  } while (!status["payload"].contains("input_request"));
  EXPECT_EQ(status["execution_id"], exec);
  EXPECT_EQ(status["payload"]["input_request"]["prompt"], "Name? ");
  ws.Send(json{{"type", "stdin"}, {"data", "Ada\n"}});
  json result = ws.Until("result")["result"];
  EXPECT_EQ(result["status"], "ok") << result;
  EXPECT_EQ(result["session_id"], id);
  EXPECT_NE(result["stdout"].get<std::string>().find("hi Ada\n"), std::string::npos) << result;

  // The next run on the same connection sees the state; cancel interrupts.
  ws.Send(json{
      {"type", "run"}, {"session_id", id}, {"code", "print(name, flush=True)\nwhile True: pass"}});
  std::string out;  // output arrives in chunks cut anywhere
  while (out.find('\n') == std::string::npos) out += ws.Until("stdout")["data"].get<std::string>();
  EXPECT_EQ(out, "Ada\n");
  ws.Send(json{{"type", "cancel"}});
  EXPECT_EQ(ws.Until("result")["result"]["status"], "cancelled");
  ws.Close();
  EXPECT_EQ(Execute(id, "name")["result"]["text/plain"], "'Ada'");
}

}  // namespace
}  // namespace polyrun::testing
