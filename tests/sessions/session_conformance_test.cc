// Every languages/<id>/tests/session.toml (docs/sessions.md, "A driver's self-test"), run through
// the real engine, sandbox and driver: the steps in order in one session, then the probes.
// A language with a session.toml must be usable on this host: nothing here is skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <toml.hpp>
#include <vector>

#include "engine/engine.h"
#include "engine/session_manager.h"
#include "test_engine.h"

namespace polyrun::engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;

// How long a step may wait for its interrupt marker before the test gives up on it. Only a
// failure bound: the wait ends as soon as the marker (or the execution's end) arrives.
constexpr auto kMarkerTimeout = std::chrono::seconds(60);

struct SessionSpec {
  std::string language;
  fs::path file;
};

void PrintTo(const SessionSpec& s, std::ostream* os) {
  *os << s.file;
}

std::vector<SessionSpec> Discover() {
  std::vector<SessionSpec> out;
  for (const auto& lang : fs::directory_iterator(POLYRUN_LANGUAGES_DIR)) {
    fs::path file = lang.path() / "tests" / "session.toml";
    if (fs::is_regular_file(file)) out.push_back({lang.path().filename().string(), file});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.language < b.language; });
  return out;
}

// The `expect` of a probe as JSON, for comparing with the reply frame.
json TomlToJson(const toml::value& v) {
  if (v.is_boolean()) return v.as_boolean();
  if (v.is_integer()) return v.as_integer();
  if (v.is_floating()) return v.as_floating();
  if (v.is_string()) return v.as_string().str;
  if (v.is_array()) {
    json a = json::array();
    for (const auto& e : v.as_array()) a.push_back(TomlToJson(e));
    return a;
  }
  if (v.is_table()) {
    json o = json::object();
    for (const auto& [k, e] : v.as_table()) o[k] = TomlToJson(e);
    return o;
  }
  return nullptr;
}

std::string Describe(const ExecutionResult& r) {
  std::ostringstream s;
  s << "status=" << StatusName(r.status) << " limit=" << r.limit << " reason=\"" << r.reason
    << "\"\nstdout: " << r.stdout_text.substr(0, 4000)
    << "\nstderr: " << r.stderr_text.substr(0, 4000) << "\nresult: " << r.result.dump();
  if (r.error) {
    s << "\nerror: " << r.error->name << ": " << r.error->message << " line=" << r.error->line;
  }
  for (const auto& o : r.outputs) {
    if (!o.display.is_null()) s << "\ndisplay: " << o.display["data"].dump().substr(0, 300);
  }
  return s.str();
}

// Watches a step's stdout events for a marker. The sink runs on the session's threads with the
// session's lock held, so it only records; the test thread waits here and interrupts.
class MarkerWatch {
 public:
  explicit MarkerWatch(std::string marker) : marker_(std::move(marker)) {}
  EventSink Sink() {
    return [this](const Event& e) {
      std::lock_guard lock(mu_);
      if (e.kind == Event::Kind::kStdout) stdout_ += e.data;
      if (e.kind == Event::Kind::kFinished) finished_ = true;
      cv_.notify_all();
    };
  }
  // True once the marker was seen; false when the execution finished first or the bound passed.
  bool Wait() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kMarkerTimeout,
                 [&] { return finished_ || stdout_.find(marker_) != std::string::npos; });
    return stdout_.find(marker_) != std::string::npos;
  }

 private:
  std::string marker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string stdout_;
  bool finished_ = false;
};

const std::set<std::string> kStepKeys = {
    "code",        "status",     "stdout",     "stderr_contains", "result", "no_result",
    "result_mime", "error_name", "error_line", "display",         "input",  "interrupt_after"};
const std::set<std::string> kProbeKeys = {"type", "code", "cursor_pos", "expect"};

class SessionConformance : public ::testing::TestWithParam<SessionSpec> {
 public:
  static void SetUpTestSuite() { sessions_test::TestEngine::Start("polyrun-session-conformance"); }
  static void TearDownTestSuite() { sessions_test::TestEngine::Stop(); }
};

// Checks one step's result against every key the step gives.
void ExpectStep(const toml::value& step, const ExecutionResult& r, const std::string& where) {
  const std::string context = where + "\n" + Describe(r);
  const std::string want_status = toml::find_or<std::string>(step, "status", "ok");
  const Status expected = want_status == "ok"            ? Status::kOk
                          : want_status == "error"       ? Status::kRuntimeError
                          : want_status == "interrupted" ? Status::kCancelled
                                                         : Status::kInternalError;
  ASSERT_NE(expected, Status::kInternalError) << where << ": unknown status " << want_status;
  EXPECT_EQ(StatusName(r.status), StatusName(expected)) << context;
  if (step.contains("stdout")) {
    EXPECT_EQ(r.stdout_text, toml::find<std::string>(step, "stdout")) << context;
  }
  if (step.contains("stderr_contains")) {
    const auto want = toml::find<std::string>(step, "stderr_contains");
    EXPECT_NE(r.stderr_text.find(want), std::string::npos) << "stderr lacks \"" << want << "\"\n"
                                                           << context;
  }
  if (step.contains("result")) {
    ASSERT_TRUE(r.result.is_object() && r.result.contains("text/plain")) << context;
    EXPECT_EQ(r.result["text/plain"], toml::find<std::string>(step, "result")) << context;
  }
  if (toml::find_or<bool>(step, "no_result", false)) {
    EXPECT_TRUE(r.result.is_null()) << context;
  }
  if (step.contains("result_mime")) {
    ASSERT_TRUE(r.result.is_object()) << context;
    for (const auto& mime : toml::find<std::vector<std::string>>(step, "result_mime")) {
      EXPECT_TRUE(r.result.contains(mime)) << "the result lacks " << mime << "\n" << context;
    }
  }
  if (step.contains("error_name")) {
    ASSERT_TRUE(r.error.has_value()) << context;
    EXPECT_EQ(r.error->name, toml::find<std::string>(step, "error_name")) << context;
  }
  if (step.contains("error_line")) {
    ASSERT_TRUE(r.error.has_value()) << context;
    EXPECT_EQ(r.error->line, toml::find<int>(step, "error_line")) << context;
  }
  if (step.contains("display")) {
    std::set<std::string> shown;
    for (const auto& o : r.outputs) {
      if (o.display.is_null()) continue;
      EXPECT_TRUE(o.stream.empty()) << context;
      for (const auto& [mime, _] : o.display["data"].items()) shown.insert(mime);
    }
    for (const auto& mime : toml::find<std::vector<std::string>>(step, "display")) {
      EXPECT_TRUE(shown.contains(mime)) << "no display carried " << mime << "\n" << context;
    }
  }
}

// Checks a probe's reply frame against its `expect` table.
void ExpectProbe(const toml::value& expect, const json& reply, const std::string& where) {
  const std::string context = where + "\nreply: " + reply.dump();
  for (const auto& [key, value] : expect.as_table()) {
    if (key == "matches_include") {
      ASSERT_TRUE(reply.contains("matches") && reply["matches"].is_array()) << context;
      const std::string want = value.as_string().str;
      const auto& m = reply["matches"];
      EXPECT_TRUE(std::find(m.begin(), m.end(), json(want)) != m.end())
          << "matches lack \"" << want << "\"\n"
          << context;
    } else {
      ASSERT_TRUE(reply.contains(key)) << "no \"" << key << "\"\n" << context;
      EXPECT_EQ(reply[key], TomlToJson(value)) << key << "\n" << context;
    }
  }
}

TEST_P(SessionConformance, Passes) {
  const SessionSpec& spec = GetParam();
  const toml::value doc = toml::parse(spec.file.string());
  const auto steps = toml::find_or<toml::array>(doc, "step", {});
  const auto probes = toml::find_or<toml::array>(doc, "probe", {});
  ASSERT_FALSE(steps.empty()) << spec.file << " has no [[step]]";

  SessionManager manager(*sessions_test::TestEngine::engine(), nullptr, {});
  SessionRequest req;
  req.language = spec.language;
  // Generous per-execution clocks: the first import of a big library (pandas, matplotlib) in
  // a loaded CI machine is slow, and no step here is about time.
  ASSERT_TRUE(req.limits.Set("wall_time", "60s"));
  ASSERT_TRUE(req.limits.Set("cpu_time", "60s"));
  auto created = manager.Create(req);
  ASSERT_TRUE(created) << spec.language << ": " << created.error().message();
  std::shared_ptr<Session> session = *created;
  EXPECT_EQ(session->language(), spec.language);

  for (size_t i = 0; i < steps.size(); ++i) {
    const toml::value& step = steps[i];
    const std::string code = toml::find<std::string>(step, "code");
    const std::string where = spec.file.string() + " step " + std::to_string(i + 1) + ":\n" + code;
    for (const auto& [key, _] : step.as_table()) {
      EXPECT_TRUE(kStepKeys.contains(key)) << where << ": unknown key " << key;
    }
    ExecutionRequest er;
    er.code = code;
    for (const auto& line : toml::find_or<std::vector<std::string>>(step, "input", {})) {
      er.stdin_data += line + "\n";
    }
    ExecutionResult r;
    if (step.contains("interrupt_after")) {
      MarkerWatch watch(toml::find<std::string>(step, "interrupt_after"));
      const EventSink sink = watch.Sink();
      std::thread runner([&] { r = session->Execute(er, sink); });
      const bool seen = watch.Wait();
      // Interrupt even when the marker never came, so a hung step cannot hang the suite.
      auto interrupted = session->Interrupt();
      runner.join();
      ASSERT_TRUE(seen) << where << "\nthe marker never appeared on stdout\n" << Describe(r);
      EXPECT_TRUE(interrupted) << interrupted.error().message();
    } else {
      r = session->Execute(er, nullptr);
    }
    EXPECT_EQ(r.session_id, session->id()) << where;
    ExpectStep(step, r, where);
    ASSERT_EQ(session->info().restarts, 0u)
        << where << "\nthe session restarted: every later step would see lost state\n"
        << Describe(r);
    if (::testing::Test::HasFatalFailure()) return;
  }

  for (size_t i = 0; i < probes.size(); ++i) {
    const toml::value& probe = probes[i];
    const std::string where = spec.file.string() + " probe " + std::to_string(i + 1) + " (" +
                              toml::find<std::string>(probe, "type") +
                              "): " + toml::find<std::string>(probe, "code");
    for (const auto& [key, _] : probe.as_table()) {
      EXPECT_TRUE(kProbeKeys.contains(key)) << where << ": unknown key " << key;
    }
    json command = {{"type", toml::find<std::string>(probe, "type")},
                    {"code", toml::find<std::string>(probe, "code")}};
    if (probe.contains("cursor_pos")) command["cursor_pos"] = toml::find<int>(probe, "cursor_pos");
    auto reply = session->Query(command, milliseconds(30000));
    ASSERT_TRUE(reply) << where << ": " << reply.error().message();
    EXPECT_EQ(reply->value("type", ""), command["type"].get<std::string>() + "_reply") << where;
    ExpectProbe(toml::find(probe, "expect"), *reply, where);
  }

  const Session::Info info = session->info();
  EXPECT_EQ(info.restarts, 0u);
  EXPECT_EQ(info.executions, steps.size());
  EXPECT_EQ(info.state, Session::State::kIdle);
  ASSERT_TRUE(manager.Close(session->id(), "the test is over"));
  EXPECT_EQ(session->info().state, Session::State::kDead);
}

INSTANTIATE_TEST_SUITE_P(Languages, SessionConformance, ::testing::ValuesIn(Discover()),
                         [](const ::testing::TestParamInfo<SessionSpec>& param_info) {
                           return param_info.param.language;
                         });

}  // namespace
}  // namespace polyrun::engine
