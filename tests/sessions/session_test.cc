// The mechanics of sessions through the real engine, sandbox and the Python driver: per-execution
// limits that keep the session's state, limits and deaths that cost it (a restart), cancel and
// input through descriptors, restart and close, and SessionManager's admission, expiry and
// store records.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/execution_service.h"
#include "engine/session_manager.h"
#include "store/store.h"
#include "test_engine.h"
#include "util/unique_fd.h"

namespace polyrun::engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Failure bounds only: every wait below ends as soon as the awaited thing happens.
constexpr auto kWaitBound = std::chrono::seconds(60);

std::string Describe(const ExecutionResult& r) {
  std::ostringstream s;
  s << "status=" << StatusName(r.status) << " limit=" << r.limit << " reason=\"" << r.reason
    << "\"\nstdout(" << r.stdout_text.size() << "): " << r.stdout_text.substr(0, 2000)
    << "\nstderr: " << r.stderr_text.substr(0, 2000) << "\nresult: " << r.result.dump();
  if (r.error) s << "\nerror: " << r.error->name << ": " << r.error->message;
  return s.str();
}

// Collects an execution's events. The sink runs on the session's threads with its lock held,
// so it only records and notifies; tests wait here for what they need.
class Watch {
 public:
  EventSink Sink() {
    return [this](const Event& e) {
      std::lock_guard lock(mu_);
      events_.push_back(e);
      if (e.kind == Event::Kind::kStdout) stdout_ += e.data;
      cv_.notify_all();
    };
  }
  bool WaitStdout(const std::string& text) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWaitBound, [&] {
      return stdout_.find(text) != std::string::npos || FinishedLocked();
    }) && stdout_.find(text) != std::string::npos;
  }
  // The input_request status payload, once one arrived; null if the execution ended first.
  json WaitInputRequest() {
    std::unique_lock lock(mu_);
    json found;
    cv_.wait_for(lock, kWaitBound, [&] {
      for (const auto& e : events_) {
        if (e.kind == Event::Kind::kStatus && e.payload.contains("input_request")) {
          found = e.payload["input_request"];
          return true;
        }
      }
      return FinishedLocked();
    });
    return found;
  }

 private:
  bool FinishedLocked() const {
    return !events_.empty() && events_.back().kind == Event::Kind::kFinished;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
  std::string stdout_;
};

// Polls `done()` (state the test cannot block on: the manager's list, a store record) every
// 10 ms until it holds; false when `bound` passed first.
bool Eventually(const std::function<bool()>& done, std::chrono::milliseconds bound = kWaitBound) {
  const auto deadline = Clock::now() + bound;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

class SessionTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() { sessions_test::TestEngine::Start("polyrun-session-test"); }
  static void TearDownTestSuite() { sessions_test::TestEngine::Stop(); }

 protected:
  void SetUp() override { ASSERT_TRUE(sessions_test::TestEngine::engine()); }

  SessionManager& Manager(SessionManager::Options options = {}, store::Store* store = nullptr) {
    manager_ =
        std::make_unique<SessionManager>(*sessions_test::TestEngine::engine(), store, options);
    return *manager_;
  }

  // A Python session with the given session-wide limits ("name=value", …).
  std::shared_ptr<Session> Python(
      const std::vector<std::pair<std::string, std::string>>& limits = {}) {
    if (!manager_) Manager();
    SessionRequest req;
    req.language = "python";
    for (const auto& [name, value] : limits) {
      EXPECT_TRUE(req.limits.Set(name, value)) << name;
    }
    auto s = manager_->Create(req);
    EXPECT_TRUE(s) << s.error().message();
    return s ? *s : nullptr;
  }

  static ExecutionResult Exec(Session& s, const std::string& code,
                              const std::vector<std::pair<std::string, std::string>>& limits = {},
                              const EventSink& sink = nullptr) {
    ExecutionRequest req;
    req.code = code;
    for (const auto& [name, value] : limits) {
      EXPECT_TRUE(req.limits.Set(name, value)) << name;
    }
    return s.Execute(req, sink);
  }

  // `name` is still defined in the session with this repr.
  static void ExpectValue(Session& s, const std::string& name, const std::string& repr) {
    auto r = Exec(s, name);
    ASSERT_EQ(r.status, Status::kOk) << Describe(r);
    ASSERT_TRUE(r.result.is_object()) << Describe(r);
    EXPECT_EQ(r.result["text/plain"], repr) << Describe(r);
  }
  static void ExpectUndefined(Session& s, const std::string& name) {
    auto r = Exec(s, name);
    EXPECT_EQ(r.status, Status::kRuntimeError) << Describe(r);
    ASSERT_TRUE(r.error) << Describe(r);
    EXPECT_EQ(r.error->name, "NameError") << Describe(r);
  }

  // A SQLite store in the suite's temp dir (null when it cannot be opened); it outlives the
  // test's manager (declared first).
  store::Store* Store(const std::string& name) {
    auto st = store::OpenStore(sessions_test::TestEngine::dir() + "/" + name);
    EXPECT_TRUE(st) << st.error().message();
    if (st) store_ = std::move(*st);
    return store_.get();
  }

  std::unique_ptr<store::Store> store_;
  std::unique_ptr<SessionManager> manager_;
};

TEST_F(SessionTest, WallTimeStopsTheCellAndKeepsState) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 7").status, Status::kOk);
  auto r = Exec(*s, "while True: pass", {{"wall_time", "1s"}});
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "wall_time") << Describe(r);
  EXPECT_NE(r.reason.find("keeps its state"), std::string::npos) << Describe(r);
  EXPECT_GE(r.usage.wall_ms, 1000u) << Describe(r);
  EXPECT_EQ(r.limits.Get(languages::Limit::kWallTime), 1000u);
  EXPECT_EQ(s->info().restarts, 0u);
  ExpectValue(*s, "x", "7");
}

TEST_F(SessionTest, CpuTimeStopsTheCellAndKeepsState) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 'kept'").status, Status::kOk);
  auto r = Exec(*s, "while True: pass", {{"cpu_time", "500ms"}});
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "cpu_time") << Describe(r);
  EXPECT_GE(r.usage.cpu_ms, 500u) << Describe(r);
  EXPECT_EQ(s->info().restarts, 0u);
  ExpectValue(*s, "x", "'kept'");
}

TEST_F(SessionTest, PerExecutionLimitsMayOnlyBeLowered) {
  auto s = Python({{"wall_time", "2s"}});
  ASSERT_TRUE(s);
  auto r = Exec(*s, "1", {{"wall_time", "10s"}});
  EXPECT_EQ(r.status, Status::kRejected) << Describe(r);
  EXPECT_NE(r.reason.find("limits.wall_time"), std::string::npos) << Describe(r);
}

TEST_F(SessionTest, OutputLimitCapsTheOutputAndKeepsState) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 3").status, Status::kOk);
  auto r = Exec(*s, "while True:\n    print('y' * 1000, flush=True)", {{"output", "10K"}});
  EXPECT_EQ(r.status, Status::kOutputLimit) << Describe(r);
  EXPECT_EQ(r.limit, "output") << Describe(r);
  EXPECT_EQ(r.stdout_text.size() + r.stderr_text.size(), 10u * 1024) << Describe(r);
  EXPECT_EQ(s->info().restarts, 0u);
  ExpectValue(*s, "x", "3");
}

TEST_F(SessionTest, CellThatIgnoresSigintCostsARestart) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 1").status, Status::kOk);
  auto r = Exec(*s,
                "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "while True: pass",
                {{"wall_time", "500ms"}});
  EXPECT_EQ(r.status, Status::kTimeout) << Describe(r);
  EXPECT_EQ(r.limit, "wall_time") << Describe(r);
  EXPECT_NE(r.reason.find("restarted"), std::string::npos) << Describe(r);
  EXPECT_NE(r.reason.find("state is lost"), std::string::npos) << Describe(r);
  EXPECT_EQ(s->info().restarts, 1u);
  EXPECT_EQ(s->info().state, Session::State::kIdle);
  ExpectUndefined(*s, "x");
}

TEST_F(SessionTest, MemoryLimitKillsTheDriverAndRestarts) {
  auto s = Python({{"memory", "64M"}});
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 1").status, Status::kOk);
  auto r = Exec(*s, "big = b'x' * (200 << 20)");
  EXPECT_EQ(r.status, Status::kMemoryLimit) << Describe(r);
  EXPECT_EQ(r.limit, "memory") << Describe(r);
  EXPECT_NE(r.reason.find("restart"), std::string::npos) << Describe(r);
  EXPECT_EQ(s->info().restarts, 1u);
  ExpectUndefined(*s, "x");
  // The fresh driver works within the same limit.
  ExpectValue(*s, "sum(range(10))", "45");
}

TEST_F(SessionTest, CancelFdInterruptsAndKeepsState) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 5").status, Status::kOk);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd cancel_r(p[0]), cancel_w(p[1]);
  Watch watch;
  const EventSink sink = watch.Sink();
  ExecutionRequest req;
  req.code = "print('spinning', flush=True)\nwhile True: pass";
  req.cancel_fd = cancel_r.get();
  ExecutionResult r;
  std::thread runner([&] { r = s->Execute(req, sink); });
  const bool seen = watch.WaitStdout("spinning");
  ASSERT_EQ(::write(cancel_w.get(), "x", 1), 1);
  runner.join();
  ASSERT_TRUE(seen) << Describe(r);
  EXPECT_EQ(r.status, Status::kCancelled) << Describe(r);
  ASSERT_TRUE(r.error) << Describe(r);
  EXPECT_EQ(r.error->name, "KeyboardInterrupt");
  EXPECT_EQ(s->info().restarts, 0u);
  ExpectValue(*s, "x", "5");
}

TEST_F(SessionTest, InterruptWhenIdleIsRefused) {
  auto s = Python();
  ASSERT_TRUE(s);
  auto i = s->Interrupt();
  ASSERT_FALSE(i);
  EXPECT_EQ(i.error().code, Errc::kInvalidArgument);
}

TEST_F(SessionTest, InputComesFromTheStdinPipe) {
  auto s = Python();
  ASSERT_TRUE(s);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd in_r(p[0]), in_w(p[1]);
  Watch watch;
  const EventSink sink = watch.Sink();
  ExecutionRequest req;
  req.code = "name = input('Name? ')\nprint('hi', name)\nname2 = input()";
  req.stdin_fd = in_r.get();
  ExecutionResult r;
  std::thread runner([&] { r = s->Execute(req, sink); });
  const json request = watch.WaitInputRequest();
  if (!request.is_null()) {
    EXPECT_EQ(s->info().state, Session::State::kBusy);
    const std::string line = "Ada\n";
    EXPECT_EQ(::write(in_w.get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
  }
  in_w.reset();  // the second input() sees end of file
  runner.join();
  ASSERT_FALSE(request.is_null()) << "no input_request status event\n" << Describe(r);
  EXPECT_EQ(request["prompt"], "Name? ");
  EXPECT_EQ(request["password"], false);
  EXPECT_EQ(r.stdout_text, "hi Ada\n") << Describe(r);
  EXPECT_EQ(r.status, Status::kRuntimeError) << Describe(r);
  ASSERT_TRUE(r.error) << Describe(r);
  EXPECT_EQ(r.error->name, "EOFError") << Describe(r);
  ExpectValue(*s, "name", "'Ada'");
}

TEST_F(SessionTest, RestartLosesState) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "x = 1").status, Status::kOk);
  ASSERT_TRUE(s->Restart("the test asked"));
  const auto info = s->info();
  EXPECT_EQ(info.restarts, 1u);
  EXPECT_EQ(info.state, Session::State::kIdle);
  ExpectUndefined(*s, "x");
  ExpectValue(*s, "1 + 1", "2");
}

TEST_F(SessionTest, ClosedSessionRejectsEverything) {
  auto s = Python();
  ASSERT_TRUE(s);
  const std::string id = s->id();
  ASSERT_TRUE(manager_->Close(id, "the test is done"));
  EXPECT_EQ(s->info().state, Session::State::kDead);
  EXPECT_EQ(s->info().ended_reason, "the test is done");
  auto r = Exec(*s, "1");
  EXPECT_EQ(r.status, Status::kRejected) << Describe(r);
  EXPECT_NE(r.reason.find("has ended"), std::string::npos) << Describe(r);
  EXPECT_FALSE(s->Interrupt());
  EXPECT_FALSE(s->Restart("again"));
  EXPECT_FALSE(s->Query({{"type", "is_complete"}, {"code", "1"}}, milliseconds(1000)));
  EXPECT_EQ(manager_->Find(id), nullptr);
  EXPECT_TRUE(manager_->List().empty());
  auto again = manager_->Close(id, "twice");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kNotFound);
  // Through the manager's runner: rejected, naming the session.
  ExecutionRequest req;
  req.code = "1";
  req.session_id = id;
  auto via = manager_->Execute(req, nullptr);
  EXPECT_EQ(via.status, Status::kRejected) << Describe(via);
  EXPECT_NE(via.reason.find(id), std::string::npos) << Describe(via);
}

TEST_F(SessionTest, ManagerEnforcesMaxSessions) {
  SessionManager::Options options;
  options.max_sessions = 2;
  auto& m = Manager(options);
  auto a = Python();
  auto b = Python();
  ASSERT_TRUE(a && b);
  SessionRequest req;
  req.language = "python";
  auto c = m.Create(req);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kBusy) << c.error().message();
  ASSERT_TRUE(m.Close(a->id(), "make room"));
  auto d = m.Create(req);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(m.List().size(), 2u);
}

TEST_F(SessionTest, ManagerHoldsExclusiveLabels) {
  auto& m = Manager();
  SessionRequest req;
  req.language = "python";
  req.labels = {{"user", "ada"}};
  auto a = m.Create(req, "user");
  ASSERT_TRUE(a) << a.error().message();
  auto b = m.Create(req, "user");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, Errc::kConflict) << b.error().message();
  EXPECT_NE(b.error().message().find((*a)->id()), std::string::npos) << b.error().message();
  // Another value of the label, or no exclusivity asked for, is fine.
  SessionRequest other = req;
  other.labels["user"] = "bob";
  auto c = m.Create(other, "user");
  ASSERT_TRUE(c) << c.error().message();
  auto d = m.Create(req);
  ASSERT_TRUE(d) << d.error().message();
  // An exclusive label the session does not have is the caller's mistake.
  auto e = m.Create(req, "team");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, Errc::kInvalidArgument);
  // Free again once the holder is closed.
  ASSERT_TRUE(m.Close((*a)->id(), "free the label"));
  ASSERT_TRUE(m.Close((*d)->id(), "free the label"));
  auto f = m.Create(req, "user");
  ASSERT_TRUE(f) << f.error().message();
}

TEST_F(SessionTest, ManagerRejectsLanguagesWithoutADriver) {
  auto& m = Manager();
  SessionRequest req;
  req.language = "c";
  auto s = m.Create(req);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::kInvalidArgument);
  EXPECT_NE(s.error().message().find("language: c has no session driver"), std::string::npos)
      << s.error().message();
  req.language = "no-such-language";
  auto u = m.Create(req);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kInvalidArgument);
  EXPECT_NE(u.error().message().find("language"), std::string::npos) << u.error().message();
  EXPECT_TRUE(m.List().empty());
}

TEST_F(SessionTest, IdleSessionsExpire) {
  store::Store* opened = Store("idle.db");
  ASSERT_NE(opened, nullptr);
  store::Store& store = *opened;
  auto& m = Manager({}, &store);
  SessionRequest req;
  req.language = "python";
  req.idle_timeout = milliseconds(300);
  auto s = m.Create(req);
  ASSERT_TRUE(s) << s.error().message();
  const std::string id = (*s)->id();
  // Busy is not idle: a cell that runs for longer than the idle timeout keeps the session.
  ASSERT_EQ(Exec(**s, "import time\ntime.sleep(1)").status, Status::kOk);
  EXPECT_EQ(m.List().size(), 1u) << "reaped while busy";
  // Idle from here: reaped soon after 300 ms (the bound is generous, not 60 s of overshoot).
  const auto idle_since = Clock::now();
  ASSERT_TRUE(Eventually([&] { return m.List().empty(); }, std::chrono::seconds(10)))
      << "the idle session was not reaped within 10 s of going idle";
  EXPECT_GE(Clock::now() - idle_since, milliseconds(250));
  const auto info = (*s)->info();
  EXPECT_EQ(info.state, Session::State::kDead);
  EXPECT_NE(info.ended_reason.find("idle"), std::string::npos) << info.ended_reason;
  EXPECT_GE(Clock::now() - info.last_active, milliseconds(300));
  // The record says so; it is written after the session leaves the list.
  std::optional<store::ExecutionRecord> rec;
  ASSERT_TRUE(Eventually([&] {
    auto got = store.Get(id);
    if (got && *got && !(**got).finished_at.empty()) rec = **got;
    return rec.has_value();
  }));
  EXPECT_EQ(rec->status, "timeout");
  EXPECT_NE(rec->result.find("idle"), std::string::npos) << rec->result;
}

TEST_F(SessionTest, StoreRecordsTheSessionAndItsExecutions) {
  store::Store* opened = Store("records.db");
  ASSERT_NE(opened, nullptr);
  store::Store& store = *opened;
  auto& m = Manager({}, &store);
  SessionRequest req;
  req.language = "python";
  req.labels = {{"notebook", "n1"}};
  auto created = m.Create(req);
  ASSERT_TRUE(created) << created.error().message();
  auto s = *created;
  const std::string id = s->id();
  EXPECT_TRUE(id.starts_with("se_")) << id;

  auto live = store.Get(id);
  ASSERT_TRUE(live && *live);
  EXPECT_EQ((**live).status, "running");
  EXPECT_EQ((**live).language, "python");
  EXPECT_EQ((**live).labels.at("notebook"), "n1");

  // An execution through the ExecutionService, as the server runs it: stored, with session_id.
  ExecutionService service(
      [&](const ExecutionRequest& r, const EventSink& sink) { return m.Execute(r, sink); }, store,
      {});
  ExecutionRequest er;
  er.code = "v = 6 * 7\nv";
  er.session_id = id;
  er.labels = {{"session_id", id}};
  auto admitted = service.Submit(er, {});
  ASSERT_TRUE(admitted) << admitted.error().message();
  ASSERT_EQ(admitted->refusal, ExecutionService::Refusal::kNone);
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  auto sub = service.Subscribe(admitted->id, 0, [&](const Event& e) {
    std::lock_guard lock(mu);
    if (e.kind == Event::Kind::kFinished) finished = true;
    cv.notify_all();
  });
  ASSERT_TRUE(sub) << sub.error().message();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWaitBound, [&] { return finished; }));
  }
  auto exec = service.Get(admitted->id);
  ASSERT_TRUE(exec && *exec);
  EXPECT_EQ((**exec).status, Status::kOk) << Describe(**exec);
  EXPECT_EQ((**exec).session_id, id);
  EXPECT_EQ((**exec).result["text/plain"], "42");
  auto events = store.Events(admitted->id, -1);
  ASSERT_TRUE(events && !events->empty());
  EXPECT_EQ(events->front().kind, "queued");
  EXPECT_EQ(json::parse(events->front().payload).value("session_id", ""), id);
  store::HistoryQuery by_session;
  by_session.labels = {{"session_id", id}};
  auto history = store.List(by_session);
  ASSERT_TRUE(history);
  ASSERT_EQ(history->items.size(), 1u);
  EXPECT_EQ(history->items[0].id, admitted->id);
  service.Shutdown(milliseconds(10000));

  // A restart is a status event of the session's record; closing finishes it.
  ASSERT_TRUE(s->Restart("the test asked"));
  ASSERT_TRUE(m.Close(id, "the test is over"));
  auto rec = store.Get(id);
  ASSERT_TRUE(rec && *rec);
  EXPECT_EQ((**rec).status, "ok");
  EXPECT_FALSE((**rec).finished_at.empty());
  auto se_events = store.Events(id, -1);
  ASSERT_TRUE(se_events);
  std::vector<std::string> kinds;
  json restarted;
  for (const auto& e : *se_events) {
    kinds.push_back(e.kind);
    if (e.kind == "status") restarted = json::parse(e.payload);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"queued", "started", "status", "finished"}));
  EXPECT_EQ(restarted.value("session", ""), "restarted") << restarted.dump();
  EXPECT_EQ(restarted.value("reason", ""), "the test asked") << restarted.dump();
  EXPECT_NE(se_events->back().payload.find("the test is over"), std::string::npos);
}

TEST_F(SessionTest, TwoSessionsRunAtOnceWithoutInterfering) {
  auto a = Python();
  auto b = Python();
  ASSERT_TRUE(a && b);
  // Each cell writes its own marker, then waits for input: both are mid-execution at once
  // before either is answered.
  const std::string cell =
      "who = '{}'\nopen('/tmp/who', 'w').write(who)\nopen('/work/who', 'w').write(who)\n"
      "input()\nprint(who, open('/tmp/who').read(), open('/work/who').read())";
  auto run = [&](Session& s, const std::string& who, Watch& watch, int stdin_fd,
                 ExecutionResult& out) {
    ExecutionRequest req;
    req.code = cell;
    req.code.replace(req.code.find("{}"), 2, who);
    req.stdin_fd = stdin_fd;
    out = s.Execute(req, watch.Sink());
  };
  int pa[2], pb[2];
  ASSERT_EQ(::pipe2(pa, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(pb, O_CLOEXEC), 0);
  UniqueFd ar(pa[0]), aw(pa[1]), br(pb[0]), bw(pb[1]);
  Watch wa, wb;
  ExecutionResult ra, rb;
  std::thread ta([&] { run(*a, "A", wa, ar.get(), ra); });
  std::thread tb([&] { run(*b, "B", wb, br.get(), rb); });
  const bool both = !wa.WaitInputRequest().is_null() && !wb.WaitInputRequest().is_null();
  if (both) {
    EXPECT_EQ(a->info().state, Session::State::kBusy);
    EXPECT_EQ(b->info().state, Session::State::kBusy);
  }
  aw.reset();
  bw.reset();
  ta.join();
  tb.join();
  ASSERT_TRUE(both) << Describe(ra) << "\n" << Describe(rb);
  EXPECT_EQ(ra.status, Status::kRuntimeError) << Describe(ra);  // EOFError: stdin closed
  ASSERT_TRUE(ra.error);
  EXPECT_EQ(ra.error->name, "EOFError");
  // The print after input() did not run; the files and the variables are each session's own.
  ExpectValue(*a, "who, open('/tmp/who').read(), open('/work/who').read()", "('A', 'A', 'A')");
  ExpectValue(*b, "who, open('/tmp/who').read(), open('/work/who').read()", "('B', 'B', 'B')");
  EXPECT_NE(ra.id, rb.id);
  EXPECT_EQ(ra.session_id, a->id());
  EXPECT_EQ(rb.session_id, b->id());
}

TEST_F(SessionTest, QueriesAnswerWhileIdle) {
  auto s = Python();
  ASSERT_TRUE(s);
  ASSERT_EQ(Exec(*s, "def greet(): pass").status, Status::kOk);
  auto reply =
      s->Query({{"type", "complete"}, {"code", "gre"}, {"cursor_pos", 3}}, milliseconds(30000));
  ASSERT_TRUE(reply) << reply.error().message();
  EXPECT_EQ((*reply)["type"], "complete_reply");
  EXPECT_FALSE(reply->contains("id"));
  const auto& m = (*reply)["matches"];
  EXPECT_TRUE(std::find(m.begin(), m.end(), json("greet")) != m.end()) << reply->dump();
  // Queries do not count as executions.
  EXPECT_EQ(s->info().executions, 1u);
}

}  // namespace
}  // namespace polyrun::engine
